// The page's chrome: the status banners (offline, printer) and the idle timer.
//
// Banners follow the agent's `sync` and `printer` events (and GET /health once at start
// and after the event stream reconnects). They hold no citizen data, so the wipe leaves them.
//
// The idle timer. Theory of operation:
// - It is armed by the citizen's first touch or key (or a card/slip read) and disarmed by
//   the wipe; an untouched home screen never counts down.
// - Any touch or key restarts it. The agent keeps its own idle clock for the session; the
//   page tells it about activity with POST /session/activity at most every 10 s (a trailing
//   call carries the last touch), and counts its own deadline from the last activity it
//   told the agent about, so both clocks end together.
// - `idle_warning_s` before `idle_timeout_s` (GET /kiosk) an overlay asks whether the
//   citizen is still there, with a countdown; "Tôi vẫn đang dùng" restarts both clocks.
// - While a request to the agent is in flight the clock stands still (a slow filing is not
//   the citizen's idleness): the time spent waiting is added to the deadline, and after a
//   long wait the agent is told again, so its clock never ends before the page's.
// - At zero, or when the agent says the session ended for idleness (`session` event,
//   active false, reason idle), wipe("idle") (core.js) clears the screen, the citizen's
//   memory, the page's storage and the agent's session.
import { api, events, hooks, wipe } from "./core.js";
import { kioskSettings } from "./screens/office.js";

export const OFFLINE_VI = "Máy đang mất mạng. Hồ sơ vẫn được lưu và sẽ tự gửi đi. Ông/Bà không cần làm gì thêm.";
export const PRINTER_VI = {
  paper_out: "Máy in hết giấy: cán bộ sẽ đến. Ông/Bà vẫn có thể nộp hồ sơ; mã hồ sơ sẽ hiện trên màn hình.",
  cover_open: "Nắp máy in đang mở: cán bộ sẽ đến. Ông/Bà vẫn có thể nộp hồ sơ; mã hồ sơ sẽ hiện trên màn hình.",
  unplugged: "Máy in chưa kết nối: cán bộ sẽ đến. Ông/Bà vẫn có thể nộp hồ sơ; mã hồ sơ sẽ hiện trên màn hình.",
};
const PRINTER_OTHER_VI = "Máy in đang gặp sự cố: cán bộ sẽ đến. Ông/Bà vẫn có thể nộp hồ sơ; mã hồ sơ sẽ hiện trên màn hình.";
// states in which the slip prints, or no printer is configured at all: no banner
const PRINTER_FINE = new Set(["ok", "paper_near_end", "absent"]);

export const ASK_VI = "Ông/Bà còn đang sử dụng máy không?";
export const KEEP_VI = "Tôi vẫn đang dùng";

export const DEFAULT_TIMEOUT_S = 120;
export const DEFAULT_WARNING_S = 30;
export const ACTIVITY_EVERY_MS = 10000;
const TICK_MS = 250;

// -- banners ------------------------------------------------------------------------------
const state = { online: true, printer: "ok" };

function banner(kind, text) {
  const node = document.createElement("p");
  node.className = `banner banner-${kind}`;
  node.dataset.banner = kind;
  node.textContent = text;
  return node;
}

function renderBanners() {
  const box = document.getElementById("banners");
  if (!box) return;
  const nodes = [];
  if (!state.online) nodes.push(banner("offline", OFFLINE_VI));
  if (!PRINTER_FINE.has(state.printer)) nodes.push(banner("printer", PRINTER_VI[state.printer] || PRINTER_OTHER_VI));
  box.replaceChildren(...nodes);
}

function onSync(data) {
  if (data && typeof data.online === "boolean") state.online = data.online;
  renderBanners();
}

function onPrinter(data) {
  if (data && typeof data.state === "string") state.printer = data.state;
  renderBanners();
}

async function readHealth() {
  try {
    const h = await api.get("/health");
    onSync(h);
    onPrinter(h.printer);
  } catch (e) {
    /* the agent is starting; the event stream brings the state when it connects */
  }
}

// -- requests in flight (the idle clock stands still meanwhile) ---------------------------
let inFlight = 0;

function countRequests() {
  const real = window.fetch.bind(window);
  window.fetch = async (...args) => {
    inFlight += 1;
    try {
      return await real(...args);
    } finally {
      inFlight -= 1;
    }
  };
}

// -- the idle timer -----------------------------------------------------------------------
const idle = {
  armed: false,
  wiping: false,
  timeoutMs: DEFAULT_TIMEOUT_S * 1000,
  warningMs: DEFAULT_WARNING_S * 1000,
  touchedAt: 0,   // the citizen's last touch (page clock)
  toldAt: 0,      // the last activity the agent was told about
  trailing: null, // timer of the pending trailing POST /session/activity
  everyMs: ACTIVITY_EVERY_MS, // how often the agent is told at most (see readSettings)
  overlay: null,  // {node, count}
};

function deadline() {
  return idle.toldAt + idle.timeoutMs;
}

async function tellAgent() {
  idle.trailing = null;
  idle.toldAt = idle.touchedAt;
  try {
    await api.post("/session/activity");
  } catch (e) {
    /* an agent without the endpoint keeps its own clock */
  }
}

function activity() {
  if (idle.wiping) return;
  const now = Date.now();
  idle.touchedAt = now;
  if (!idle.armed) {
    idle.armed = true;
    idle.toldAt = now;
    tellAgent();
    return;
  }
  if (idle.overlay) return; // only the overlay's own button answers the question
  const since = now - idle.toldAt;
  if (since >= idle.everyMs) tellAgent();
  else if (!idle.trailing) idle.trailing = setTimeout(tellAgent, idle.everyMs - since);
}

function showWarning() {
  const overlay = document.getElementById("overlay");
  const count = document.createElement("p");
  count.className = "idle-count";
  count.id = "idle-count";
  const keep = document.createElement("button");
  keep.type = "button";
  keep.className = "primary idle-keep";
  keep.dataset.action = "keep-using";
  keep.textContent = KEEP_VI;
  keep.addEventListener("click", keepUsing);
  const question = document.createElement("h2");
  question.id = "idle-question";
  question.textContent = ASK_VI;
  const note = document.createElement("p");
  note.textContent = "Nếu không, máy sẽ xoá thông tin của Ông/Bà để bảo vệ Ông/Bà.";
  const dialog = document.createElement("div");
  dialog.className = "dialog idle-dialog";
  dialog.setAttribute("role", "alertdialog");
  dialog.setAttribute("aria-modal", "true");
  dialog.setAttribute("aria-labelledby", "idle-question");
  dialog.setAttribute("aria-describedby", "idle-count");
  dialog.append(question, count, note, keep);
  overlay.replaceChildren(dialog);
  overlay.hidden = false;
  idle.overlay = { node: overlay, count };
  keep.focus();
}

function hideWarning() {
  if (!idle.overlay) return;
  idle.overlay.node.hidden = true;
  idle.overlay.node.replaceChildren();
  idle.overlay = null;
}

function keepUsing() {
  hideWarning();
  idle.touchedAt = Date.now();
  if (idle.trailing) clearTimeout(idle.trailing);
  tellAgent();
}

async function idleWipe() {
  if (idle.wiping) return;
  idle.wiping = true;
  try {
    await wipe("idle");
  } finally {
    idle.wiping = false;
  }
}

function onWiped() {
  hideWarning();
  if (idle.trailing) clearTimeout(idle.trailing);
  idle.trailing = null;
  idle.armed = false;
}

let lastTick = Date.now();
let heldMs = 0; // how long the clock has stood still for the requests in flight now

function tick() {
  const now = Date.now();
  const step = now - lastTick;
  lastTick = now;
  if (!idle.armed || idle.wiping) return;
  if (inFlight > 0) {
    idle.toldAt += step; // the clock stands still
    heldMs += step;
    return;
  }
  if (heldMs > 1000) {
    // the page's deadline moved on while the agent's did not: tell it, keeping ours
    api.post("/session/activity").catch(() => {});
  }
  heldMs = 0;
  const left = deadline() - now;
  if (left <= 0) {
    idleWipe();
    return;
  }
  if (left <= idle.warningMs) {
    if (!idle.overlay) showWarning();
    const s = Math.ceil(left / 1000);
    idle.overlay.count.textContent = `Máy sẽ về trang đầu sau ${s} giây.`;
  } else if (idle.overlay) {
    hideWarning();
  }
}

function onSession(data) {
  // the agent ended the session for idleness; "ended" is the screen's own "Kết thúc"
  if (data && data.active === false && data.reason === "idle" && idle.armed) idleWipe();
  // another citizen's card was read: nothing of the one before may stay on the screen; the
  // new citizen's session stays, and the filing start shows their card
  if (data && data.active === false && data.reason === "replaced") {
    wipe("replaced", { keepAgentSession: true, next: "filing-start" });
  }
}

async function readSettings() {
  const s = await kioskSettings();
  if (Number(s.idle_timeout_s) > 0) idle.timeoutMs = Number(s.idle_timeout_s) * 1000;
  if (Number(s.idle_warning_s) > 0) idle.warningMs = Number(s.idle_warning_s) * 1000;
  // a warning as long as the whole timeout would leave no time to use the screen
  idle.warningMs = Math.min(idle.warningMs, idle.timeoutMs / 2);
  // the deadline counts from the last activity told to the agent, which lags the last
  // touch by up to everyMs: keep that well inside the time before the warning
  idle.everyMs = Math.min(ACTIVITY_EVERY_MS, (idle.timeoutMs - idle.warningMs) / 4);
}

export function startChrome() {
  countRequests();
  hooks.onWipe.push(onWiped);
  events.on("sync", onSync);
  events.on("printer", onPrinter);
  events.on("session", onSession);
  events.on("stream", (s) => { if (s && s.connected) readHealth(); });
  // a card or a slip read is the citizen at work, like a touch
  for (const kind of ["identity", "tracking", "support"]) events.on(kind, activity);
  for (const type of ["pointerdown", "keydown", "touchstart"]) {
    document.addEventListener(type, activity, { capture: true, passive: true });
  }
  readHealth();
  readSettings();
  setInterval(tick, TICK_MS);
}

