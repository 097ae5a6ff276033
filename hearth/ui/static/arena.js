// The Arena page: a blind side-by-side battle on /api/arena (two answers streamed at once,
// the models' names hidden), the vote ("A is better", "B is better", "Tie", "Both are
// bad"), the names revealed after it, and the arena leaderboard with its intervals.

import { getJSON, readSSE, request } from './api.js';
import { clear, fmtNum, h, status } from './dom.js';
import { render } from './markdown.js';
import { intervalChart } from './charts.js';
import { table } from './usage.js';

const VOTES = [['a', 'A is better'], ['b', 'B is better'], ['tie', 'Tie'], ['both_bad', 'Both are bad']];

export async function mount(view) {
  const prompt = h('textarea', { id: 'arena-prompt', rows: 3, placeholder: 'Ask both models the same thing (Enter starts, Esc stops)' });
  const start = h('button', { type: 'button', class: 'primary' }, 'Start battle');
  const note = h('p', { class: 'status', role: 'status' });
  const side = (letter) => {
    const heading = h('h2', {}, `Model ${letter}`);
    const body = h('div', { class: 'body' });
    return { heading, body, text: '', node: h('section', { class: 'side-answer', 'aria-label': `Model ${letter}` }, heading, body) };
  };
  const a = side('A');
  const b = side('B');
  const buttons = VOTES.map(([value, label]) => {
    const button = h('button', { type: 'button', disabled: true }, label);
    button.addEventListener('click', () => vote(value));
    return button;
  });
  const board = h('div');
  view.append(h('h1', {}, 'Arena'),
    h('label', { for: 'arena-prompt' }, 'Prompt'), prompt, h('div', { class: 'row' }, start), note,
    h('div', { class: 'arena' }, a.node, b.node),
    h('div', { class: 'votes', role: 'group', 'aria-label': 'Vote' }, buttons),
    h('h2', {}, 'Arena leaderboard'), board);

  let battleId = null;
  let controller = null;

  async function battle() {
    const text = prompt.value.trim();
    if (!text || controller) return;
    battleId = null;
    for (const s of [a, b]) { s.text = ''; clear(s.body); s.heading.textContent = `Model ${s === a ? 'A' : 'B'}`; }
    buttons.forEach((x) => { x.disabled = true; });
    controller = new AbortController();
    start.disabled = true;
    status(note, 'Both models are answering…');
    try {
      const response = await request('/api/arena/battles', { method: 'POST', body: { prompt: text }, signal: controller.signal });
      for await (const { event, data } of readSSE(response)) {
        if (event === 'battle') battleId = data.battle_id;
        else if (event === 'a' || event === 'b') {
          const s = event === 'a' ? a : b;
          s.text += data.text;
          clear(s.body).append(render(s.text));
        } else if (event === 'error') throw new Error(data.error.message);
        else if (event === 'done') {
          buttons.forEach((x) => { x.disabled = false; });
          status(note, 'Which answer is better? The names are shown after your vote.');
          buttons[0].focus();
        }
      }
    } catch (error) {
      status(note, error.name === 'AbortError' ? 'Stopped.' : `The battle failed: ${error.message}`, error.name === 'AbortError' ? '' : 'error');
    } finally {
      controller = null;
      start.disabled = false;
    }
  }

  async function vote(winner) {
    if (!battleId) return;
    buttons.forEach((x) => { x.disabled = true; });
    try {
      const result = await getJSON(`/api/arena/battles/${encodeURIComponent(battleId)}/vote`, { method: 'POST', body: { winner } });
      a.heading.textContent = `Model A: ${result.model_a}`;
      b.heading.textContent = `Model B: ${result.model_b}`;
      const said = `Vote recorded: ${VOTES.find(([v]) => v === winner)[1]}.`;
      // a battle whose answers named a model was not blind: kept, never rated (FastChat's rule)
      status(note, result.rated === false && result.leak
        ? `${said} Not rated: an answer named a model ("${result.leak}"), so the battle was not blind.`
        : said);
      loadBoard();
    } catch (error) {
      status(note, error.message, 'error');
    }
  }

  async function loadBoard() {
    try {
      const rows = await getJSON('/api/arena/leaderboard');
      clear(board);
      if (!rows.length) { board.append(h('p', { class: 'muted' }, 'No votes yet.')); return; }
      board.append(intervalChart(rows.map((r) => ({ label: r.model, value: r.rating, low: r.ci_low ?? undefined, high: r.ci_high ?? undefined })),
        { title: 'Arena ratings with 95% intervals' }));
      board.append(table(['Rank', 'Model', 'Rating', '95% interval', 'Battles', 'Wins', 'Losses', 'Ties', 'Both bad'],
        rows.map((r) => [String(r.rank ?? '-'), r.model, fmtNum(r.rating, 0),
          r.ci_low === null ? '-' : `${fmtNum(r.ci_low, 0)} – ${fmtNum(r.ci_high, 0)}`,
          String(r.battles), String(r.wins), String(r.losses), String(r.ties), String(r.both_bad)])));
    } catch (error) {
      clear(board).append(h('p', { class: 'status error' }, error.status === 404 ? 'This server has no arena API.' : error.message));
    }
  }

  start.addEventListener('click', battle);
  prompt.addEventListener('keydown', (e) => { if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); battle(); } });
  const onKey = (e) => { if (e.key === 'Escape' && controller) controller.abort(); };
  document.addEventListener('keydown', onKey);
  await loadBoard();
  return () => { controller?.abort(); document.removeEventListener('keydown', onKey); };
}
