// A safe Markdown subset rendered straight to DOM nodes: paragraphs, headings, lists, block
// quotes, rules, fenced code (with light highlighting), inline code, bold, italic and links.
// Text only ever becomes text nodes, so `<script>` in an answer shows as those characters.
// Links work only for http(s) and mailto and open in a new tab without a referrer; images
// are never loaded (an image is shown as a link the reader may follow or not), so an answer
// cannot make the browser fetch anything.

import { h } from './dom.js';

const SAFE_URL = /^(https?:|mailto:)/i;

function safeLink(text, url, image = false) {
  const label = image ? `image: ${text || url}` : text;
  if (!SAFE_URL.test(url.trim())) return document.createTextNode(image ? `[${label}]` : text);
  return h('a', { href: url.trim(), target: '_blank', rel: 'noopener noreferrer nofollow', class: image ? 'image-link' : '' }, label);
}

// inline spans, left to right; the first match wins at each position
const INLINE = /(`+)([\s\S]*?[^`])\1(?!`)|(!?)\[([^\]\n]*)\]\(([^)\s]*)(?:\s+"[^"]*")?\)|\*\*([^*\n]+)\*\*|(?<![\w])__([^_\n]+)__(?![\w])|\*([^*\n]+)\*|(?<![\w])_([^_\n]+)_(?![\w])/g;

export function inline(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    if (m[1]) out.push(h('code', {}, m[2].trim()));
    else if (m[4] !== undefined || m[5] !== undefined) out.push(safeLink(m[4], m[5], m[3] === '!'));
    else if (m[6] || m[7]) out.push(h('strong', {}, inline(m[6] || m[7])));
    else out.push(h('em', {}, inline(m[8] || m[9])));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

const KEYWORDS = new Set(('as async await break case catch class const continue def del elif else except export ' +
  'false finally fn for from func function if impl import in interface let match mut new nil None null pass ' +
  'pub raise return self static struct switch this throw true True False try type typeof use var void while with yield').split(' '));
const TOKENS = /(#[^\n]*|\/\/[^\n]*|\/\*[\s\S]*?\*\/)|("(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`)|\b(\d+(?:\.\d+)?)\b|\b([A-Za-z_]\w*)\b/g;

// code as spans of classes tok-comment / tok-string / tok-number / tok-keyword
export function highlight(code, lang) {
  const out = [];
  let last = 0;
  const hashComments = !/^(js|javascript|ts|typescript|c|cpp|java|go|rust|css)$/i.test(lang || '');
  for (const m of code.matchAll(TOKENS)) {
    let cls = null;
    if (m[1] && (hashComments || !m[1].startsWith('#'))) cls = 'tok-comment';
    else if (m[2]) cls = 'tok-string';
    else if (m[3]) cls = 'tok-number';
    else if (m[4] && KEYWORDS.has(m[4])) cls = 'tok-keyword';
    if (!cls) continue;
    if (m.index > last) out.push(code.slice(last, m.index));
    out.push(h('span', { class: cls }, m[0]));
    last = m.index + m[0].length;
  }
  if (last < code.length) out.push(code.slice(last));
  return out;
}

function codeBlock(code, lang) {
  const copy = h('button', { type: 'button', class: 'quiet small', 'aria-label': 'Copy code' }, 'Copy code');
  copy.addEventListener('click', () => navigator.clipboard?.writeText(code));
  return h('div', { class: 'code' },
    h('div', { class: 'code-bar' }, h('span', {}, lang || 'text'), copy),
    h('pre', {}, h('code', {}, highlight(code, lang))));
}

// Markdown text -> a DocumentFragment. An unclosed fence (an answer still streaming) is code.
export function render(text) {
  const frag = document.createDocumentFragment();
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  let para = [];
  const flush = () => {
    if (para.length) frag.append(h('p', {}, inline(para.join('\n'))));
    para = [];
  };
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```+|~~~+)\s*([\w+#.-]*)/);
    if (fence) {
      flush();
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i += 1;
      frag.append(codeBlock(body.join('\n'), fence[2]));
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) {
      flush();
      frag.append(h(`h${Math.min(heading[1].length + 2, 6)}`, {}, inline(heading[2])));
      i += 1;
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      flush();
      frag.append(h('hr'));
      i += 1;
      continue;
    }
    const item = line.match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
    if (item) {
      flush();
      const ordered = /\d/.test(item[1]);
      const list = h(ordered ? 'ol' : 'ul');
      while (i < lines.length) {
        const m = lines[i].match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
        if (!m || /\d/.test(m[1]) !== ordered) break;
        list.append(h('li', {}, inline(m[2])));
        i += 1;
      }
      frag.append(list);
      continue;
    }
    if (/^\s*>/.test(line)) {
      flush();
      const quoted = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s*>\s?/, ''));
      frag.append(h('blockquote', {}, render(quoted.join('\n'))));
      continue;
    }
    if (!line.trim()) flush();
    else para.push(line);
    i += 1;
  }
  flush();
  return frag;
}
