// The page's shell: the navigation (hash routes, so reload keeps the page), the API-key
// dialog, and mounting one page module at a time into <main>.

import { apiKey, onKeyNeeded, setApiKey } from './api.js';
import { clear, h } from './dom.js';

const PAGES = {
  chat: () => import('./chat.js'),
  library: () => import('./library.js'),
  arena: () => import('./arena.js'),
  leaderboard: () => import('./leaderboard.js'),
  usage: () => import('./usage.js'),
};

let current = null; // the mounted page's cleanup

async function route() {
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1] || 'chat';
  const page = PAGES[name] ? name : 'chat';
  for (const link of document.querySelectorAll('nav a')) {
    if (link.getAttribute('href') === `#/${page}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (current) current();
  current = null;
  const view = clear(document.getElementById('view'));
  document.title = `${page[0].toUpperCase()}${page.slice(1)} · hearth`;
  try {
    const module = await PAGES[page]();
    current = (await module.mount(view)) || null;
  } catch (error) {
    view.append(h('p', { class: 'status error', role: 'alert' }, `Could not open this page: ${error.message}`));
  }
}

function keyDialog() {
  const dialog = document.getElementById('key-dialog');
  const input = document.getElementById('key-input');
  const reason = document.getElementById('key-reason');
  const open = (message) => {
    if (message) reason.textContent = `This server needs an API key; ask its operator for one. The server said: ${message}`;
    input.value = apiKey();
    if (!dialog.open) dialog.showModal();
    input.focus();
  };
  onKeyNeeded(open);
  document.getElementById('key-button').addEventListener('click', () => open(''));
  document.getElementById('key-form').addEventListener('submit', () => {
    setApiKey(input.value.trim());
    route();
  });
  document.getElementById('key-forget').addEventListener('click', () => {
    setApiKey('');
    input.value = '';
    dialog.close();
    route();
  });
}

keyDialog();
window.addEventListener('hashchange', route);
route();
