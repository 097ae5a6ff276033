// Talks to the server's API the way any client does: JSON bodies and, when the server has
// API keys, `Authorization: Bearer KEY`. Never a form post and never a cookie, so another
// site cannot make the browser send a request that counts (the server also checks Origin).
// The key lives in sessionStorage: it is gone when the tab closes.

const KEY_NAME = 'hearth.apiKey';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_NAME) || '';
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_NAME, key);
  else sessionStorage.removeItem(KEY_NAME);
}

let askForKey = () => {};
export function onKeyNeeded(fn) { askForKey = fn; }

export function headers(extra = {}) {
  const h = { 'Content-Type': 'application/json', ...extra };
  const key = apiKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    const detail = body.error?.message || body.error || body.detail || body.message;
    if (detail) message = typeof detail === 'string' ? detail : JSON.stringify(detail);
  } catch { /* not JSON */ }
  return new ApiError(response.status, message);
}

// fetch with the key; throws ApiError (401 opens the key dialog). Returns the Response.
export async function request(path, { method = 'GET', body, signal } = {}) {
  const response = await fetch(path, {
    method,
    headers: headers(),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    credentials: 'omit',
    cache: 'no-store',
  });
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401) askForKey(error.message);
    throw error;
  }
  return response;
}

export async function getJSON(path, options) {
  const response = await request(path, options);
  return response.status === 204 ? null : response.json();
}

// Server-sent events (`event:` + `data:` lines) from a streamed response, as {event, data}.
export async function* readSSE(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let event = 'message';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, end).replace(/\r$/, '');
      buffer = buffer.slice(end + 1);
      if (line.startsWith('event:')) {
        event = line.slice(6).trim();
      } else if (line.startsWith('data:')) {
        const data = line.slice(5).trim();
        if (data === '[DONE]') return;
        yield { event, data: JSON.parse(data) };
      } else if (line === '') {
        event = 'message';
      }
    }
  }
}

// Newline-delimited JSON objects from a streamed response (Ollama's /api/pull).
export async function* readNDJSON(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 1);
      if (line) yield JSON.parse(line);
    }
  }
  if (buffer.trim()) yield JSON.parse(buffer);
}

// Save a download (an export) fetched with the key.
export async function download(path, filename) {
  const response = await request(path);
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
