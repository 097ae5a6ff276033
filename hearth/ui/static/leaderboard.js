import { h } from './dom.js';

export async function mount(view) {
  view.append(h('h1', {}, 'Leaderboard'), h('p', { class: 'muted' }, 'Coming soon.'));
}
