// The Leaderboard page: stored `hearth eval` runs (GET /api/evals) as a sortable table of
// models by task with their average, a chart of the averages (or of the first task with
// scores when no model has all tasks), and every run with its status. "Run an evaluation"
// starts one on the server (POST /api/evals: one at a time) and follows its progress
// (GET /api/evals/jobs/ID) until it ends, then reloads the table.

import { getJSON, request } from './api.js';
import { clear, fmtNum, h, status } from './dom.js';
import { barChart } from './charts.js';
import { table } from './usage.js';

export async function mount(view) {
  const note = h('p', { class: 'status', role: 'status' });
  const chart = h('div');
  const board = h('div');
  const runs = h('div');
  view.append(h('h1', {}, 'Leaderboard'),
    h('p', { class: 'muted' }, 'Scores in percent from the runs stored by `hearth eval`; * marks settings other than the Open LLM Leaderboard’s.'),
    note, chart, board, h('h2', {}, 'Runs'), runs);
  let data;

  // --- starting a run ---------------------------------------------------------------------
  const model = h('select', { id: 'eval-model' });
  const taskBoxes = h('div', { class: 'params', role: 'group', 'aria-label': 'Tasks' });
  const limit = h('input', { id: 'eval-limit', type: 'number', min: '1', value: '20' });
  const quant = h('select', { id: 'eval-quant' }, ['none', 'auto', 'int8', 'int4'].map((q) => h('option', { value: q }, q)));
  const start = h('button', { type: 'button' }, 'Start evaluation');
  const bar = h('progress', { max: '1', value: '0', 'aria-label': 'Evaluation progress' });
  const barText = h('span', { class: 'muted', role: 'status' });
  const jobNote = h('p', { class: 'status' });
  const form = h('details', { class: 'settings' }, h('summary', {}, 'Run an evaluation'),
    h('p', { class: 'muted' }, 'Scores a stored model on this server with its evaluation data ($HEARTH_EVAL_DATA or $HEARTH_HOME/eval-data); the CPU is busy while it runs.'),
    h('div', { class: 'params' },
      h('label', { for: 'eval-model' }, 'Model', model),
      h('label', { for: 'eval-limit' }, 'Items per task', limit),
      h('label', { for: 'eval-quant' }, 'Weights', quant)),
    taskBoxes,
    h('div', { class: 'row' }, start, bar, barText), jobNote);
  note.after(form);

  function showJob(job) {
    const total = job.items_total || 0;
    bar.max = String(total || 1);
    bar.value = String(job.items_done);
    const where = Object.entries(job.progress).map(([t, p]) => `${t} ${p.done} / ${p.total}`).join(', ');
    barText.textContent = `${job.model}: ${job.status}${where ? ` — ${where}` : ''}`;
    if (job.status === 'failed') status(jobNote, job.error || 'the evaluation failed', 'error');
  }

  async function follow(id) {
    start.disabled = true;
    try {
      for (;;) {
        const job = await getJSON(`/api/evals/jobs/${id}`);
        showJob(job);
        if (job.status !== 'running') break;
        await new Promise((resolve) => { setTimeout(resolve, 1000); });
      }
      await load();
    } catch (error) {
      status(jobNote, error.message, 'error');
    } finally {
      start.disabled = false;
    }
  }

  start.addEventListener('click', async () => {
    status(jobNote, '');
    const tasks = [...taskBoxes.querySelectorAll('input:checked')].map((i) => i.value);
    if (!model.value || !tasks.length) { status(jobNote, 'choose a model and at least one task', 'error'); return; }
    const body = { model: model.value, tasks: tasks.join(','), quant: quant.value };
    if (limit.value) body.limit = Number(limit.value);
    try {
      const job = await (await request('/api/evals', { method: 'POST', body })).json();
      showJob(job);
      await follow(job.id);
    } catch (error) {
      status(jobNote, error.message, 'error');
    }
  });

  async function fillForm() {
    const lib = await getJSON('/api/library');
    clear(model);
    for (const m of lib.models) model.append(h('option', { value: m.name }, m.name));
    if (!lib.models.length) model.append(h('option', { value: '' }, 'no models: pull one in Library'));
    clear(taskBoxes);
    data.tasks.forEach((t, i) => {
      const box = h('input', { type: 'checkbox', id: `eval-task-${t}`, value: t });
      box.checked = i === 0;
      taskBoxes.append(h('label', { for: `eval-task-${t}`, class: 'check' }, box, t));
    });
  }
  let sort = { key: 'average', down: true };

  function value(row, key) {
    if (key === 'model') return row.model;
    if (key === 'average') return row.average;
    return row.scores[key];
  }

  function drawBoard() {
    clear(board);
    if (!data.leaderboard.length) { board.append(h('p', { class: 'muted' }, 'No complete runs yet: run one above, or `hearth eval MODEL`.')); return; }
    const rows = [...data.leaderboard].sort((x, y) => {
      const a = value(x, sort.key); const b = value(y, sort.key);
      const noA = a === null || a === undefined; const noB = b === null || b === undefined;
      if (noA || noB) return noA - noB; // missing scores last; the server's order among them
      const order = typeof a === 'string' ? a.localeCompare(b) : a - b;
      return sort.down ? -order : order;
    });
    const columns = ['model', ...data.tasks, 'average'];
    const head = h('tr', {}, columns.map((key) => {
      const button = h('button', { type: 'button' }, key === 'model' ? 'Model' : key === 'average' ? 'Average' : key);
      button.addEventListener('click', () => {
        sort = { key, down: sort.key === key ? !sort.down : key !== 'model' };
        drawBoard();
      });
      const sorted = sort.key === key ? (sort.down ? 'descending' : 'ascending') : 'none';
      return h('th', { scope: 'col', 'aria-sort': sorted, class: key === 'model' ? '' : 'num' }, button);
    }));
    const body = rows.map((r) => h('tr', {},
      h('td', { title: r.differences.join('; ') }, `${r.model}${r.quant !== 'none' ? ` (${r.quant})` : ''}${r.leaderboard_settings ? '' : ' *'}`),
      data.tasks.map((t) => h('td', { class: 'num' }, r.scores[t] === null ? '' : fmtNum(r.scores[t], 2))),
      h('td', { class: 'num' }, r.average === null ? '' : fmtNum(r.average, 2))));
    board.append(h('table', { 'aria-label': 'Leaderboard' }, h('thead', {}, head), h('tbody', {}, body)));
  }

  function drawChart() {
    clear(chart);
    const withAverage = data.leaderboard.filter((r) => r.average !== null);
    const task = data.tasks.find((t) => data.leaderboard.some((r) => r.scores[t] !== null));
    const items = withAverage.length
      ? withAverage.map((r) => ({ label: r.model, value: r.average }))
      : data.leaderboard.filter((r) => r.scores[task] !== null).map((r) => ({ label: r.model, value: r.scores[task] }));
    if (!items.length) return;
    const title = withAverage.length ? 'Average score (%)' : `${task} score (%)`;
    chart.append(h('h2', {}, title), barChart(items, { title, unit: '%', format: (v) => fmtNum(v, 1) }));
  }

  function drawRuns() {
    clear(runs);
    runs.append(table(['Run', 'Model', 'Task', 'Shots', 'Limit', 'Status', 'Items', 'Score', 'Duration (s)', 'Started'],
      [...data.runs].reverse().map((r) => [String(r.id), r.model, r.task, String(r.num_fewshot), r.limit ?? 'all', r.status,
        `${r.num_scored} / ${r.num_items}`, r.value === null ? '' : `${r.metric} ${fmtNum(100 * r.value, 2)}`,
        fmtNum(r.duration_s, 1), new Date(r.started_at).toLocaleString()])));
  }

  async function load() {
    data = await getJSON('/api/evals');
    drawChart();
    drawBoard();
    drawRuns();
  }

  try {
    await load();
    await fillForm();
    const running = (data.jobs || []).find((j) => j.status === 'running');
    if (running) { form.open = true; showJob(running); follow(running.id); }
  } catch (error) {
    status(note, error.message, 'error');
  }
}
