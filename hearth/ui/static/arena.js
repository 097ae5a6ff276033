import { h } from './dom.js';

export async function mount(view) {
  view.append(h('h1', {}, 'Arena'), h('p', { class: 'muted' }, 'Coming soon.'));
}
