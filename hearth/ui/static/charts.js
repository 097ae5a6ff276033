// Small inline-SVG charts drawn from numbers (no library, nothing fetched).

import { svg } from './dom.js';

// Vertical bars: items [{label, value}], with the value printed above each bar.
export function barChart(items, { title = '', unit = '', height = 200, format = (v) => String(v) } = {}) {
  const width = Math.max(320, items.length * 56 + 60);
  const top = 20; const bottom = 40; const left = 40;
  const max = Math.max(...items.map((i) => i.value), 0) || 1;
  const slot = (width - left - 10) / Math.max(items.length, 1);
  const chart = svg('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': title });
  chart.append(svg('title', { text: title }));
  chart.append(svg('line', { class: 'axis', x1: left, y1: height - bottom, x2: width - 10, y2: height - bottom }));
  chart.append(svg('text', { x: 2, y: top - 6, text: unit }));
  items.forEach((item, i) => {
    const h = ((height - top - bottom) * item.value) / max;
    const x = left + i * slot + slot * 0.15;
    const y = height - bottom - h;
    chart.append(svg('rect', { class: 'bar', x, y, width: slot * 0.7, height: Math.max(h, 0.5) },
      svg('title', { text: `${item.label}: ${format(item.value)}` })));
    chart.append(svg('text', { x: x + slot * 0.35, y: y - 4, 'text-anchor': 'middle', text: format(item.value) }));
    const label = item.label.length > 14 ? `${item.label.slice(0, 13)}…` : item.label;
    chart.append(svg('text', { x: x + slot * 0.35, y: height - bottom + 16, 'text-anchor': 'middle', text: label }));
  });
  return chart;
}

// Horizontal points with intervals: items [{label, value, low, high}] (ratings, scores).
export function intervalChart(items, { title = '', width = 640 } = {}) {
  const row = 26; const left = 170; const right = 60;
  const height = items.length * row + 30;
  const lows = items.map((i) => i.low ?? i.value);
  const highs = items.map((i) => i.high ?? i.value);
  let min = Math.min(...lows); let max = Math.max(...highs);
  if (!(max > min)) { min -= 1; max += 1; }
  const pad = (max - min) * 0.05;
  min -= pad; max += pad;
  const x = (v) => left + ((v - min) / (max - min)) * (width - left - right);
  const chart = svg('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': title });
  chart.append(svg('title', { text: title }));
  items.forEach((item, i) => {
    const y = 20 + i * row;
    chart.append(svg('text', { x: 4, y: y + 4, text: item.label.length > 24 ? `${item.label.slice(0, 23)}…` : item.label }));
    chart.append(svg('line', { class: 'axis', x1: left, y1: y, x2: width - right, y2: y }));
    if (item.low !== undefined && item.high !== undefined) {
      chart.append(svg('line', { class: 'ci', x1: x(item.low), y1: y, x2: x(item.high), y2: y }));
    }
    chart.append(svg('circle', { class: 'bar', cx: x(item.value), cy: y, r: 5 }));
    chart.append(svg('text', { x: width - right + 6, y: y + 4, text: item.value.toFixed(Math.abs(item.value) < 10 ? 3 : 0) }));
  });
  return chart;
}
