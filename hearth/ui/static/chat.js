// The Chat page: conversations stored on the server (list, search, rename, delete,
// export), a model picker, system prompt and sampling parameters, streamed answers from
// /v1/chat/completions rendered as safe Markdown, Stop / Regenerate / Edit / Copy, a
// context gauge, and per answer its tokens, time to first token and tokens per second.

import { download, getJSON, readSSE, request } from './api.js';
import { clear, fmtNum, h, status } from './dom.js';
import { render } from './markdown.js';

const PARAM_DEFAULTS = { temperature: 0.7, top_p: 0.95, max_tokens: 512, seed: '', json: false };

export async function mount(view) {
  const s = {
    conversation: null, // {id, title, model, system, params, messages}
    models: [],
    controller: null,
  };

  // --- layout ----------------------------------------------------------------------------
  const search = h('input', { type: 'search', placeholder: 'Search', 'aria-label': 'Search conversations' });
  const list = h('ul', { class: 'conv-list', 'aria-label': 'Conversations' });
  const newChat = h('button', { type: 'button' }, 'New chat');
  const side = h('aside', { class: 'side' }, newChat, search, list);

  const model = h('select', { id: 'model' });
  const system = h('textarea', { id: 'system', rows: 3, placeholder: 'You are a helpful assistant.' });
  const num = (id, label, value, attrs) => {
    const input = h('input', { id, type: 'number', value: String(value), ...attrs });
    return [input, h('label', { for: id }, label, input)];
  };
  const [temperature, tLabel] = num('temperature', 'Temperature', PARAM_DEFAULTS.temperature, { min: 0, max: 2, step: 0.05 });
  const [topP, pLabel] = num('top-p', 'Top-p', PARAM_DEFAULTS.top_p, { min: 0, max: 1, step: 0.05 });
  const [maxTokens, mLabel] = num('max-tokens', 'Max tokens', PARAM_DEFAULTS.max_tokens, { min: 1, step: 1 });
  const [seed, sLabel] = num('seed', 'Seed', '', { step: 1, placeholder: 'random' });
  const jsonMode = h('input', { id: 'json-mode', type: 'checkbox' });
  const settings = h('details', { class: 'settings' },
    h('summary', {}, 'System prompt and parameters'),
    h('label', { for: 'system' }, 'System prompt'), system,
    h('div', { class: 'params' }, tLabel, pLabel, mLabel, sLabel,
      h('label', { for: 'json-mode', class: 'check' }, jsonMode, 'JSON mode')));
  const gauge = h('meter', { id: 'context', min: 0, max: 1, value: 0 });
  const gaugeText = h('span', { class: 'muted' }, '');
  const title = h('h1', { class: 'conv-title' }, 'New chat');
  const rename = h('button', { type: 'button', class: 'quiet' }, 'Rename');
  const remove = h('button', { type: 'button', class: 'quiet' }, 'Delete');
  const exportJson = h('button', { type: 'button', class: 'quiet' }, 'Export JSON');
  const exportMd = h('button', { type: 'button', class: 'quiet' }, 'Export Markdown');
  const head = h('div', { class: 'chat-head' },
    title, h('div', { class: 'row' }, rename, remove, exportJson, exportMd));
  const toolbar = h('div', { class: 'toolbar' },
    h('label', { for: 'model' }, 'Model'), model,
    h('label', { for: 'context', class: 'gauge' }, 'Context', gauge, gaugeText));
  const messages = h('section', { class: 'messages', 'aria-label': 'Messages', 'aria-live': 'polite' });
  const box = h('textarea', { id: 'message', rows: 3, placeholder: 'Message (Enter sends, Shift+Enter new line, Esc stops)' });
  const send = h('button', { type: 'button', class: 'primary' }, 'Send');
  const stop = h('button', { type: 'button', hidden: true }, 'Stop');
  const note = h('p', { class: 'status', role: 'status' });
  const composer = h('div', { class: 'composer' },
    h('label', { for: 'message', class: 'sr-only' }, 'Message'), box, h('div', { class: 'row' }, send, stop));
  const main = h('div', { class: 'chat' }, head, toolbar, settings, messages, note, composer);
  view.append(h('div', { class: 'chat-page' }, side, main));

  // --- models ----------------------------------------------------------------------------
  async function loadModels() {
    const lib = await getJSON('/api/library');
    s.models = lib.models;
    const chosen = model.value;
    clear(model);
    for (const m of lib.models) {
      model.append(h('option', { value: m.name }, `${m.name}${m.loaded ? ' (loaded)' : ''}`));
    }
    if (!lib.models.length) model.append(h('option', { value: '' }, 'no models: pull one in Library'));
    if (chosen && lib.models.some((m) => m.name === chosen)) model.value = chosen;
  }
  const contextOf = (name) => {
    const m = s.models.find((x) => x.name === name);
    return m ? m.serving_context_length || m.context_length || 0 : 0;
  };

  function updateGauge(used) {
    const max = contextOf(model.value);
    gauge.max = max || 1;
    gauge.value = Math.min(used, max || used);
    gaugeText.textContent = max ? `${fmtNum(used)} / ${fmtNum(max)} tokens` : `${fmtNum(used)} tokens`;
  }

  // --- conversations ---------------------------------------------------------------------
  async function loadList() {
    const q = search.value.trim();
    const found = await getJSON(`/api/conversations${q ? `?q=${encodeURIComponent(q)}` : ''}`);
    clear(list);
    for (const c of found.conversations) {
      const open = h('button', { type: 'button', class: 'conv', 'aria-current': c.id === s.conversation?.id ? 'true' : null }, c.title);
      open.addEventListener('click', () => openConversation(c.id));
      list.append(h('li', {}, open));
    }
    if (!found.conversations.length) list.append(h('li', { class: 'muted' }, q ? 'Nothing found' : 'No conversations yet'));
  }

  function params() {
    return {
      temperature: Number(temperature.value), top_p: Number(topP.value),
      max_tokens: Number(maxTokens.value), seed: seed.value === '' ? null : Number(seed.value),
      json: jsonMode.checked,
    };
  }

  function showParams(p) {
    const v = { ...PARAM_DEFAULTS, ...p };
    temperature.value = v.temperature; topP.value = v.top_p; maxTokens.value = v.max_tokens;
    seed.value = v.seed ?? ''; jsonMode.checked = !!v.json;
  }

  async function openConversation(id) {
    if (s.controller) return;
    s.conversation = await getJSON(`/api/conversations/${encodeURIComponent(id)}`);
    title.textContent = s.conversation.title;
    system.value = s.conversation.system;
    showParams(s.conversation.params);
    if (s.conversation.model && [...model.options].some((o) => o.value === s.conversation.model)) {
      model.value = s.conversation.model;
    }
    history.replaceState(null, "", `#/chat/${id}`);
    drawMessages();
    loadList();
  }

  function startNew() {
    if (s.controller) return;
    s.conversation = null;
    title.textContent = 'New chat';
    history.replaceState(null, '', '#/chat');
    drawMessages();
    loadList();
    box.focus();
  }

  async function save() {
    const c = s.conversation;
    const body = { title: c.title, model: model.value, system: system.value, params: params(), messages: c.messages };
    if (!c.id) {
      const made = await getJSON('/api/conversations', { method: 'POST', body });
      c.id = made.id;
      history.replaceState(null, '', `#/chat/${made.id}`);
    } else {
      await getJSON(`/api/conversations/${encodeURIComponent(c.id)}`, { method: 'PUT', body });
    }
    loadList();
  }

  // --- messages --------------------------------------------------------------------------
  function statsLine(st) {
    if (!st) return null;
    const parts = [`${fmtNum(st.output_tokens)} tokens`];
    if (st.ttft_s !== null && st.ttft_s !== undefined) parts.push(`TTFT ${fmtNum(st.ttft_s, 2)} s`);
    if (st.tokens_per_s) parts.push(`${fmtNum(st.tokens_per_s, 1)} tokens/s`);
    if (st.stopped) parts.push('stopped');
    return h('p', { class: 'stats muted' }, parts.join(' · '));
  }

  function messageNode(m, index) {
    const body = h('div', { class: 'body' });
    if (m.role === 'assistant') body.append(render(m.content));
    else body.append(h('p', { class: 'plain' }, m.content));
    const copy = h('button', { type: 'button', class: 'quiet small' }, 'Copy');
    copy.addEventListener('click', () => navigator.clipboard?.writeText(m.content));
    const actions = h('div', { class: 'row actions' }, copy);
    const last = index === s.conversation.messages.length - 1;
    if (m.role === 'user') {
      const edit = h('button', { type: 'button', class: 'quiet small' }, 'Edit');
      edit.addEventListener('click', () => editFrom(index));
      actions.append(edit);
    } else if (last) {
      const again = h('button', { type: 'button', class: 'quiet small' }, 'Regenerate');
      again.addEventListener('click', regenerate);
      actions.append(again);
    }
    return h('article', { class: `msg ${m.role}`, 'aria-label': m.role === 'user' ? 'You' : 'Assistant' },
      h('div', { class: 'who' }, m.role === 'user' ? 'You' : 'Assistant'), body, statsLine(m.stats), actions);
  }

  function drawMessages() {
    clear(messages);
    const all = s.conversation?.messages || [];
    all.forEach((m, i) => messages.append(messageNode(m, i)));
    const lastStats = [...all].reverse().find((m) => m.stats)?.stats;
    updateGauge(lastStats ? (lastStats.prompt_tokens || 0) + (lastStats.output_tokens || 0) : 0);
    messages.scrollTop = messages.scrollHeight;
  }

  function streaming(on) {
    send.hidden = on; stop.hidden = !on; box.readOnly = on;
    if (on) stop.focus(); else box.focus();
  }

  async function answer() {
    const c = s.conversation;
    const wire = [];
    if (system.value.trim()) wire.push({ role: 'system', content: system.value });
    for (const m of c.messages) wire.push({ role: m.role, content: m.content });
    const p = params();
    const body = {
      model: model.value, messages: wire, stream: true, stream_options: { include_usage: true },
      temperature: p.temperature, top_p: p.top_p, max_tokens: p.max_tokens,
    };
    if (p.seed !== null) body.seed = p.seed;
    if (p.json) body.response_format = { type: 'json_object' };
    const reply = { role: 'assistant', content: '', stats: null };
    c.messages.push(reply);
    const node = messageNode(reply, c.messages.length - 1);
    messages.append(node);
    const target = node.querySelector('.body');
    s.controller = new AbortController();
    streaming(true);
    status(note, 'Answering…');
    const started = performance.now();
    let first = null;
    let usage = null;
    let chunks = 0;
    let pending = false;
    const paint = () => {
      pending = false;
      clear(target).append(render(reply.content));
      messages.scrollTop = messages.scrollHeight;
    };
    let stopped = false;
    try {
      const response = await request('/v1/chat/completions', { method: 'POST', body, signal: s.controller.signal });
      for await (const { data } of readSSE(response)) {
        if (data.error) throw new Error(data.error.message || 'the answer failed');
        if (data.usage) usage = data.usage;
        const delta = data.choices?.[0]?.delta?.content;
        if (delta) {
          if (first === null) first = performance.now();
          chunks += 1;
          reply.content += delta;
          if (!pending) { pending = true; requestAnimationFrame(paint); }
        }
      }
      status(note, '');
    } catch (error) {
      if (error.name === 'AbortError') { stopped = true; status(note, 'Stopped.'); }
      else status(note, `The answer failed: ${error.message}`, 'error');
    } finally {
      const ended = performance.now();
      const output = usage ? usage.completion_tokens : chunks;
      const decodeS = first === null ? 0 : (ended - first) / 1000;
      reply.stats = {
        output_tokens: output,
        prompt_tokens: usage ? usage.prompt_tokens : null,
        ttft_s: first === null ? null : (first - started) / 1000,
        tokens_per_s: decodeS > 0 && output > 1 ? (output - 1) / decodeS : null,
        stopped,
      };
      s.controller = null;
      streaming(false);
      paint();
    }
    await loadModels().catch(() => {}); // now loaded: the gauge shows the context it was given
    drawMessages();
    await save();
  }

  async function sendMessage() {
    const text = box.value;
    if (!text.trim() || s.controller) return;
    if (!model.value) { status(note, 'Pull a model first (Library).', 'error'); return; }
    if (!s.conversation) {
      s.conversation = { id: null, title: text.trim().split('\n')[0].slice(0, 60), messages: [] };
      title.textContent = s.conversation.title;
    }
    s.conversation.messages.push({ role: 'user', content: text });
    box.value = '';
    drawMessages();
    await answer();
  }

  async function regenerate() {
    const c = s.conversation;
    if (s.controller || !c || c.messages.at(-1)?.role !== 'assistant') return;
    c.messages.pop();
    drawMessages();
    await answer();
  }

  function editFrom(index) {
    if (s.controller) return;
    const c = s.conversation;
    box.value = c.messages[index].content;
    c.messages = c.messages.slice(0, index);
    drawMessages();
    status(note, 'Edit the message and send it again; the answers after it were removed.');
    box.focus();
  }

  // --- events ----------------------------------------------------------------------------
  send.addEventListener('click', sendMessage);
  stop.addEventListener('click', () => s.controller?.abort());
  box.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); sendMessage(); }
  });
  const onKey = (e) => { if (e.key === 'Escape' && s.controller) { e.preventDefault(); s.controller.abort(); } };
  document.addEventListener('keydown', onKey);
  newChat.addEventListener('click', startNew);
  let searchTimer = 0;
  search.addEventListener('input', () => { clearTimeout(searchTimer); searchTimer = setTimeout(loadList, 200); });
  model.addEventListener('change', () => drawMessages());
  rename.addEventListener('click', async () => {
    if (!s.conversation?.id) return;
    const name = prompt('New name', s.conversation.title);
    if (!name) return;
    s.conversation.title = name.slice(0, 200);
    title.textContent = s.conversation.title;
    await save();
  });
  remove.addEventListener('click', async () => {
    if (!s.conversation?.id || !confirm(`Delete “${s.conversation.title}”?`)) return;
    await request(`/api/conversations/${encodeURIComponent(s.conversation.id)}`, { method: 'DELETE' });
    startNew();
  });
  exportJson.addEventListener('click', () => s.conversation?.id
    && download(`/api/conversations/${s.conversation.id}/export?format=json`, `conversation-${s.conversation.id}.json`));
  exportMd.addEventListener('click', () => s.conversation?.id
    && download(`/api/conversations/${s.conversation.id}/export?format=md`, `conversation-${s.conversation.id}.md`));

  try {
    await loadModels();
    await loadList();
    const id = (location.hash.match(/^#\/chat\/(\w+)/) || [])[1];
    if (id) await openConversation(id);
    else drawMessages();
  } catch (error) {
    status(note, error.message, 'error');
  }
  box.focus();
  return () => { s.controller?.abort(); document.removeEventListener('keydown', onKey); };
}
