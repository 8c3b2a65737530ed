// The screen's core: the API client, the screen registry and router, the event stream,
// and the citizen's memory that the idle wipe clears. Plain ES module, no build step.
//
// A screen is a module that calls register({name, title, render}). render(ctx, params)
// returns a DOM node (or a Promise of one); ctx gives:
//   ctx.api.get/post/del(path, ...)  path under /api/v1; JSON back, or throws ApiError
//   ctx.el(tag, attrs, ...children)  builds DOM (attrs: class, text, on:{event: fn}, any attribute)
//   ctx.go(name, params) / ctx.back() / ctx.home()
//   ctx.on(kind, fn)                 an event-stream event while this screen is shown
//   ctx.citizen                      the citizen's memory (wiped by wipe())
//   ctx.keyboard(input, mode)        attach the on-screen keyboard (mode: text, numeric, phone, plain)
//   ctx.fieldError(node, err)        show an ApiError's Vietnamese message in node
// Nothing citizen-related may be kept anywhere but ctx.citizen and the DOM of the screen:
// wipe() clears both, the page's storage and the agent's session.

export const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, field, message, messageVi) {
    super(message);
    this.status = status;
    this.field = field;
    this.messageVi = messageVi;
  }
}

const NETWORK_VI = "Máy đang bận, xin mời Ông/Bà thử lại sau ít phút.";

async function request(method, path, body, params) {
  let url = API + path;
  if (params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const s = q.toString();
    if (s) url += "?" + s;
  }
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (e) {
    throw new ApiError(0, "", String(e), NETWORK_VI);
  }
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json() : await response.blob();
  if (!response.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(response.status, e.field || "", e.message || response.statusText, e.message_vi || NETWORK_VI);
  }
  return data;
}

export const api = {
  get: (path, params) => request("GET", path, undefined, params),
  post: (path, body) => request("POST", path, body === undefined ? {} : body),
  del: (path) => request("DELETE", path),
};

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  if (tag === "button" && !node.hasAttribute("type")) node.type = "button";
  return node;
}

// -- the citizen's memory, and the wipe ------------------------------------------------
export let citizen = {};
export const hooks = {
  keyboard: null,   // (input, mode) => void, set by the keyboard module
  speak: null,      // (text) => void, set by the read-aloud module
  onWipe: [],       // functions run by wipe() (close the keyboard, stop speech, timers)
};

// keepAgentSession: another citizen's card replaced the session at the agent; the page
// forgets the previous citizen but must not end the new one's session. next: the screen after.
export async function wipe(reason, { keepAgentSession = false, next = "home" } = {}) {
  for (const fn of hooks.onWipe) {
    try { fn(reason); } catch (e) { console.error("wipe hook", e); }
  }
  citizen = {};
  try { sessionStorage.clear(); localStorage.clear(); } catch (e) { /* storage disabled */ }
  document.documentElement.classList.remove("bigtext");
  history.length = 0;
  leave(); // the wiped screen's event listeners go with it
  current = null;
  screenNode().replaceChildren();
  if (!keepAgentSession) {
    try { await api.del("/session"); } catch (e) { /* the agent's own idle timeout still clears it */ }
  }
  await go(next, {}, { replace: true });
}

// -- screens -----------------------------------------------------------------------------
const screens = new Map();
const history = [];
let current = null; // {name, params, offs}

export function register(screen) {
  if (!screen || !screen.name || typeof screen.render !== "function") {
    throw new TypeError("register: a screen needs a name and a render(ctx, params) function");
  }
  screens.set(screen.name, screen);
}

function screenNode() {
  return document.getElementById("screen");
}

function leave() {
  if (!current) return;
  for (const off of current.offs) off();
  const s = screens.get(current.name);
  if (s && s.leave) s.leave();
}

export async function go(name, params = {}, { replace = false } = {}) {
  const screen = screens.get(name);
  if (!screen) throw new TypeError(`go: no screen named "${name}"`);
  leave();
  if (current && !replace) history.push({ name: current.name, params: current.params });
  current = { name, params, offs: [] };
  const mine = current;
  const ctx = makeContext(mine);
  const title = typeof screen.title === "function" ? screen.title(params) : screen.title;
  document.getElementById("screen-title").textContent = title || "Máy tiếp nhận hồ sơ tự động";
  document.body.dataset.screen = name;
  let node;
  try {
    node = await screen.render(ctx, params);
  } catch (err) {
    node = errorNode(err);
  }
  if (current !== mine) return; // another go() happened meanwhile
  screenNode().replaceChildren(node);
  screenNode().scrollTop = 0;
  screenNode().focus({ preventScroll: true });
  document.dispatchEvent(new CustomEvent("aps:screen", { detail: { name } }));
}

export function back() {
  const prev = history.pop();
  if (!prev) return go("home", {}, { replace: true });
  if (current) current = null; // do not push the screen we leave
  return go(prev.name, prev.params, { replace: true });
}

export function home() {
  history.length = 0;
  return go("home", {}, { replace: true });
}

export function currentScreen() {
  return current ? current.name : null;
}

function errorNode(err) {
  const text = err instanceof ApiError ? err.messageVi : NETWORK_VI;
  if (!(err instanceof ApiError)) console.error(err);
  return el("div", { class: "error-screen" },
    el("p", { class: "error", role: "alert", text }),
    el("div", { class: "actions" }, el("button", { class: "primary", text: "Về trang đầu", on: { click: () => home() } })));
}

function makeContext(mine) {
  // a screen that is no longer shown (left, or wiped while its request was in flight)
  // must not navigate: its answer would bring the citizen's screen back after a wipe
  const live = () => current === mine;
  return {
    api, el,
    go: (...args) => (live() ? go(...args) : Promise.resolve()),
    back: () => (live() ? back() : Promise.resolve()),
    home: () => (live() ? home() : Promise.resolve()),
    get citizen() { return citizen; },
    on(kind, fn) {
      const off = events.on(kind, fn);
      mine.offs.push(off);
      return off;
    },
    keyboard(input, mode = "text") {
      input.dataset.keyboard = mode;
      if (hooks.keyboard) hooks.keyboard(input, mode);
    },
    fieldError(node, err) {
      node.textContent = err instanceof ApiError ? err.messageVi : NETWORK_VI;
      node.classList.add("error");
      node.setAttribute("role", "alert");
    },
  };
}

// -- the agent's event stream -------------------------------------------------------------
const listeners = new Map(); // kind -> Set(fn)
let source = null;
const KINDS = ["identity", "tracking", "support", "card_error", "scan_rejected", "error", "sync", "printer",
  "session", "downlink"];

export const events = {
  on(kind, fn) {
    if (!listeners.has(kind)) listeners.set(kind, new Set());
    listeners.get(kind).add(fn);
    return () => listeners.get(kind).delete(fn);
  },
  emit(kind, data) {
    // a copy: a listener that navigates removes itself and the next screen's render may add
    // its own at once, which iterating the live Set would call too, in an endless loop
    for (const fn of [...(listeners.get(kind) || [])]) {
      try { fn(data); } catch (e) { console.error("event listener", kind, e); }
    }
  },
  connect(extraKinds = []) {
    if (source) source.close();
    source = new EventSource(API + "/events");
    for (const kind of new Set([...KINDS, ...extraKinds])) {
      source.addEventListener(kind, (m) => {
        let data = null;
        try { data = JSON.parse(m.data); } catch (e) { return; }
        events.emit(kind, data);
      });
    }
    source.onerror = () => events.emit("stream", { connected: false });
    source.onopen = () => events.emit("stream", { connected: true });
  },
};
