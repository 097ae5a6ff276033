// The Usage page: the server's usage ledger (GET /api/usage) — totals, output tokens and
// energy per day, requests per model, the most recent requests, and what the same tokens
// would have cost on hosted APIs under the dated, sourced price table.

import { getJSON } from './api.js';
import { clear, fmtNum, h, status } from './dom.js';
import { barChart } from './charts.js';

export async function mount(view) {
  const since = h('select', { id: 'usage-since' },
    h('option', { value: '24h' }, 'Last 24 hours'), h('option', { value: '7d', selected: true }, 'Last 7 days'),
    h('option', { value: '30d' }, 'Last 30 days'), h('option', { value: '' }, 'All time'));
  const body = h('div');
  const note = h('p', { class: 'status', role: 'status' });
  view.append(h('h1', {}, 'Usage'), h('div', { class: 'row' }, h('label', { for: 'usage-since' }, 'Period'), since), note, body);

  async function load() {
    const q = since.value ? `&since=${since.value}` : '';
    try {
      const [days, models] = await Promise.all([
        getJSON(`/api/usage?by=day&recent=100${q}`), getJSON(`/api/usage?by=model&recent=0${q}`),
      ]);
      draw(days, models);
      status(note, '');
    } catch (error) {
      status(note, error.message, 'error');
    }
  }

  function draw(days, models) {
    clear(body);
    const t = days.totals;
    const costs = Object.values(t.hosted_cost_usd);
    const tile = (value, label) => h('div', { class: 'tile' }, h('div', { class: 'value' }, value), h('div', { class: 'label' }, label));
    body.append(h('div', { class: 'tiles' },
      tile(fmtNum(t.requests), 'requests'),
      tile(fmtNum(t.prompt_tokens), 'prompt tokens'),
      tile(fmtNum(t.output_tokens), 'output tokens'),
      tile(t.mean_ttft_s === null ? '-' : `${fmtNum(t.mean_ttft_s, 2)} s`, 'mean time to first token'),
      tile(`${fmtNum(t.cpu_s, 1)} s`, 'CPU time'),
      tile(`${fmtNum(t.energy_wh, 3)} Wh`, `energy (at ${days.cpu_watts} W full load)`),
      tile(costs.length ? `$${fmtNum(Math.min(...costs), 4)}–${fmtNum(Math.max(...costs), 4)}` : '-', 'same tokens on hosted APIs')));
    body.append(h('h2', {}, 'Output tokens per day'),
      barChart(days.groups.map((g) => ({ label: g.group, value: g.output_tokens })), { title: 'Output tokens per day', unit: 'tokens', format: (v) => fmtNum(v) }));
    body.append(h('h2', {}, 'Requests per model'),
      barChart(models.groups.map((g) => ({ label: g.group, value: g.requests })), { title: 'Requests per model', unit: 'requests', format: (v) => fmtNum(v) }));
    body.append(h('h2', {}, 'Per model'), table(
      ['Model', 'Requests', 'Prompt tokens', 'Output tokens', 'Mean TTFT (s)', 'CPU (s)', 'Energy (Wh)'],
      models.groups.map((g) => [g.group, fmtNum(g.requests), fmtNum(g.prompt_tokens), fmtNum(g.output_tokens),
        g.mean_ttft_s === null ? '-' : fmtNum(g.mean_ttft_s, 3), fmtNum(g.cpu_s, 1), fmtNum(g.energy_wh, 4)])));
    body.append(h('h2', {}, 'Recent requests'), table(
      ['Time', 'Key', 'Model', 'Path', 'Status', 'Prompt', 'Output', 'TTFT (s)', 'Duration (s)', 'CPU (s)'],
      [...days.recent].reverse().map((r) => [new Date(r.time).toLocaleString(), r.key || '-', r.model, r.path, String(r.status),
        fmtNum(r.prompt_tokens), fmtNum(r.output_tokens), r.ttft_s === null ? '-' : fmtNum(r.ttft_s, 3),
        fmtNum(r.duration_s, 2), fmtNum(r.cpu_s, 2)])));
    body.append(h('h2', {}, 'Hosted-API prices used'), table(
      ['Provider', 'Model', '$ / M input', '$ / M output', 'Cost of these tokens', 'Source', 'As of'],
      days.prices.map((p) => [p.provider, p.model, fmtNum(p.input_per_mtok, 2), fmtNum(p.output_per_mtok, 2),
        `$${fmtNum(t.hosted_cost_usd[p.model], 4)}`, p.source, p.as_of])));
  }

  since.addEventListener('change', load);
  await load();
}

export function table(columns, rows) {
  return h('table', {},
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((cell) => h('td', {}, cell))))));
}
