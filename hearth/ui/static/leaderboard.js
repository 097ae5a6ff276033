// The Leaderboard page: stored `hearth eval` runs (GET /api/evals) as a sortable table of
// models by task with their average, a chart of the averages (or of the first task with
// scores when no model has all tasks), and every run with its status.

import { getJSON } from './api.js';
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
  let sort = { key: 'average', down: true };

  function value(row, key) {
    if (key === 'model') return row.model;
    if (key === 'average') return row.average;
    return row.scores[key];
  }

  function drawBoard() {
    clear(board);
    if (!data.leaderboard.length) { board.append(h('p', { class: 'muted' }, 'No complete runs yet: run `hearth eval MODEL` first.')); return; }
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

  try {
    data = await getJSON('/api/evals');
    drawChart();
    drawBoard();
    drawRuns();
  } catch (error) {
    status(note, error.message, 'error');
  }
}
