// The on-screen keyboard: Vietnamese text (Telex or VNI through vn-input.js), a numeric
// pad for numbers and phones, and plain keys for codes.
//
// Theory of operation. One panel serves the whole page. attachKeyboard(input, mode) marks
// a field; focusing (or tapping) it opens the panel for that field, as the last child of
// <body>, so the page's scrolling area gets shorter instead of being covered, and the field
// is scrolled into view above it. Every key acts on that field, whether or not the browser
// kept the focus there: the field's value is rebuilt from the engine's state {text, raw},
// the caret goes to the end, and the field gets a real `input` event (forms see changes).
// Typing on a physical keyboard (or Playwright's fill/type) goes straight into the field;
// the `input` event that follows resets the engine's state to what the field holds.
//
// The mark and tone buttons (â ă ê ô ơ ư đ; sắc huyền hỏi ngã nặng) are for people who do
// not know Telex or VNI: each feeds the engine the matching key (Telex "aa", "w", "s"...;
// VNI "6", "7", "1"...) for the word being typed, at the end of its keys or, when that
// does not give the letter asked for, right after the vowel it belongs to ("toi" + ô gives
// "tôi"). When the word has no such vowel the letter itself is typed ("ng" + ư gives
// "ngư"). pressMark() and pressTone() are pure and tested under Node.
//
// Nothing here runs on a timer: no key repeat, no closing while the citizen types. The
// panel closes on "Xong", when its field leaves the page, and on the idle wipe.

import { api } from "./core.js";
import { BACKSPACE, compose, typeKeys } from "./vn-input.js";

export const MODES = ["text", "numeric", "phone", "plain"];
/** The API's limit on a phone number (edge_agent/api/app.py: phone max_length 20). */
export const PHONE_MAX = 20;

const TONE_MARKS = ["", "\u0301", "\u0300", "\u0309", "\u0303", "\u0323"];
const TELEX_TONE_KEYS = ["z", "s", "f", "r", "x", "j"];
const VNI_TONE_KEYS = ["0", "1", "2", "3", "4", "5"];

/** The mark buttons: the letter they give, its plain letter, and the engine's key. */
export const MARK_KEYS = {
  "â": { base: "a", telex: "a", vni: "6" },
  "ă": { base: "a", telex: "w", vni: "8" },
  "ê": { base: "e", telex: "e", vni: "6" },
  "ô": { base: "o", telex: "o", vni: "6" },
  "ơ": { base: "o", telex: "w", vni: "7" },
  "ư": { base: "u", telex: "w", vni: "7" },
  "đ": { base: "d", telex: "d", vni: "9" },
};

/** The tone buttons, in the engine's order (1 sắc .. 5 nặng). */
export const TONE_NAMES = ["", "sắc", "huyền", "hỏi", "ngã", "nặng"];

// -- pure helpers (no DOM) ------------------------------------------------------------------

function withoutTones(s) {
  return s.normalize("NFD").replace(/[\u0300\u0301\u0303\u0309\u0323]/g, "").normalize("NFC");
}

function plainLetters(s) {
  return s.normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/đ/g, "d").replace(/Đ/g, "D");
}

function toneOf(word) {
  const d = word.normalize("NFD");
  for (let t = 1; t < TONE_MARKS.length; t += 1) if (d.includes(TONE_MARKS[t])) return t;
  return 0;
}

function count(s, ch) {
  let n = 0;
  for (const c of withoutTones(s).toLowerCase()) if (c === ch) n += 1;
  return n;
}

/** The trailing word of `text` (letters only). */
export function lastWord(text) {
  const m = /\p{L}+$/u.exec(text);
  return m ? m[0] : "";
}

/** Keys that type `word` in `method` (marks after their letter, tone last), or null. */
export function wordKeys(word, method, options) {
  let keys = "";
  let tone = 0;
  for (const ch of word.normalize("NFC")) {
    const d = ch.normalize("NFD");
    const upper = ch !== ch.toLowerCase();
    const base = ch === "đ" || ch === "Đ" ? "d" : d[0].toLowerCase();
    if (!/^[a-z]$/.test(base)) return null;
    const letter = upper ? base.toUpperCase() : base;
    keys += letter;
    if (ch === "đ" || ch === "Đ") keys += method === "vni" ? "9" : letter;
    for (const mark of d.slice(1)) {
      const t = TONE_MARKS.indexOf(mark);
      if (t > 0) tone = t;
      else if (mark === "\u0302") keys += method === "vni" ? "6" : letter;
      else if (mark === "\u0306") keys += method === "vni" ? "8" : "w";
      else if (mark === "\u031b") keys += method === "vni" ? "7" : "w";
      else return null;
    }
  }
  if (tone) keys += (method === "vni" ? VNI_TONE_KEYS : TELEX_TONE_KEYS)[tone];
  // Only keys the engine really turns back into this word.
  const back = typeKeys(keys, options);
  return back.text === word.normalize("NFC") && back.raw === keys ? keys : null;
}

// The word being typed as {prefix, word, raw}: from the engine's state, or rebuilt from the
// field's text after a physical keyboard or a backspace left no keys.
function currentWord(state, options) {
  if (state.raw) {
    const shown = typeKeys(state.raw, options).text;
    if (state.text.endsWith(shown) && lastWord(state.text) === shown) {
      return { prefix: state.text.slice(0, state.text.length - shown.length), word: shown, raw: state.raw };
    }
  }
  const word = lastWord(state.text);
  const raw = word ? wordKeys(word, options.method, options) : "";
  if (raw === null) return { prefix: state.text, word: "", raw: "" };
  return { prefix: state.text.slice(0, state.text.length - word.length), word, raw };
}

function wordFrom(prefix, raw, options) {
  const typed = typeKeys(raw, options);
  if (typed.raw !== raw) return null; // a key ended the word: not one word any more
  return { text: prefix + typed.text, raw };
}

/**
 * The mark button `mark` (one of MARK_KEYS) on the word being typed.
 * Returns {state, applied}; `applied` is false (state unchanged) when nothing fits.
 */
export function pressMark(state, mark, options, upper = false) {
  const spec = MARK_KEYS[mark];
  if (!spec) throw new TypeError(`keyboard: no mark button ${JSON.stringify(mark)}`);
  const o = { method: "telex", style: "new", ...options, mode: "text" };
  const key = o.method === "vni" ? spec.vni : spec.telex;
  const { prefix, word, raw } = currentWord(state, o);
  const before = count(word, mark);
  const candidates = [];
  if (raw) {
    candidates.push([raw + key, false]);
    for (let i = raw.length - 1; i >= 0; i -= 1) {
      if (raw[i].toLowerCase() === spec.base) candidates.push([raw.slice(0, i + 1) + key + raw.slice(i + 1), false]);
    }
  }
  const letter = upper ? spec.base.toUpperCase() : spec.base;
  candidates.push([raw + letter + (o.method === "vni" ? spec.vni : mark === "ă" || mark === "ơ" || mark === "ư" ? "w" : letter), true]);
  for (const [keys, adds] of candidates) {
    const next = wordFrom(prefix, keys, o);
    if (!next) continue;
    const shown = next.text.slice(prefix.length);
    const sameLetters = plainLetters(shown).toLowerCase() === plainLetters(word + (adds ? spec.base : "")).toLowerCase();
    if (sameLetters && count(shown, mark) > before) return { state: next, applied: true };
  }
  return { state, applied: false };
}

/**
 * The tone button `tone` (1 sắc .. 5 nặng) on the word being typed; the same tone again
 * takes it off. Returns {state, applied}; false when the word has no vowel for it.
 */
export function pressTone(state, tone, options) {
  if (!Number.isInteger(tone) || tone < 1 || tone > 5) throw new TypeError(`keyboard: tone ${tone} is not 1..5`);
  const o = { method: "telex", style: "new", ...options, mode: "text" };
  const keys = o.method === "vni" ? VNI_TONE_KEYS : TELEX_TONE_KEYS;
  const { prefix, word, raw } = currentWord(state, o);
  if (!raw) return { state, applied: false };
  const want = toneOf(word) === tone ? 0 : tone;
  const next = wordFrom(prefix, raw + keys[want], o);
  if (!next) return { state, applied: false };
  const shown = next.text.slice(prefix.length);
  if (toneOf(shown) !== want || withoutTones(shown) !== withoutTones(word)) return { state, applied: false };
  return { state: next, applied: true };
}

// -- the panel ------------------------------------------------------------------------------

const LETTER_ROWS = ["qwertyuiop", "asdfghjkl", "zxcvbnm"];
const DIGITS = "1234567890";

let typing = { method: "telex", style: "new" };
let typingLoaded = null;
const attached = new WeakMap(); // input -> mode
let panel = null;
let target = null; // the field the keys act on
let mode = "text";
let state = { text: "", raw: "" };
let shift = "off"; // "off" | "once" | "lock"
let dispatching = false;

/** Override the typing method ({method: "telex"|"vni", style: "new"|"old"}). */
export function setTypingOptions(options) {
  const method = options && options.method === "vni" ? "vni" : "telex";
  const style = options && options.style === "old" ? "old" : "new";
  typing = { method, style };
  typingLoaded = Promise.resolve(typing);
  if (panel && !panel.hidden) render();
  return typing;
}

/** The office's typing method from GET /api/v1/kiosk (`typing.method/style`), once. */
export function loadTypingOptions() {
  if (!typingLoaded) {
    typingLoaded = api.get("/kiosk").then(
      (k) => (k && k.typing ? setTypingOptions(k.typing) : typing),
      () => typing, // no such endpoint (yet), or the agent is busy: Telex, new style
    );
  }
  return typingLoaded;
}

export function typingOptions() {
  return { ...typing };
}

function engineOptions() {
  const m = mode === "text" ? "text" : mode === "plain" ? "plain" : "numeric";
  return { method: typing.method, style: typing.style, mode: m };
}

function maxLength(input) {
  const limit = input.maxLength > 0 ? input.maxLength : Infinity;
  return mode === "phone" ? Math.min(limit, PHONE_MAX) : limit;
}

function autoShift() {
  if (shift === "lock" || mode !== "text" || !target) return;
  const how = target.getAttribute("autocapitalize") || "";
  const text = target.value;
  const start = text === "" || /\s$/.test(text);
  const sentence = text === "" || /[.!?]\s+$/.test(text);
  const on = (how === "words" && start) || (how === "sentences" && sentence) || how === "characters";
  shift = on ? "once" : "off";
}

function setValue(next, inputType, data) {
  if (!target) return;
  const limit = maxLength(target);
  if ([...next.text].length > limit && next.text.length > target.value.length) {
    hint(mode === "phone" ? "Số điện thoại đã đủ số." : mode === "numeric" ? "Ô này đã đủ số." : "Ô này đã đủ chữ.");
    return;
  }
  state = next;
  target.value = next.text;
  const end = target.value.length;
  try { target.setSelectionRange(end, end); } catch (e) { /* number inputs have no caret */ }
  dispatching = true;
  try {
    target.dispatchEvent(new InputEvent("input", { bubbles: true, inputType, data }));
  } finally {
    dispatching = false;
  }
}

function hint(text) {
  if (!panel) return;
  const node = panel.querySelector(".kb-hint");
  node.textContent = text || "";
  node.hidden = !text;
}

// The field may have been changed by the screen itself (a prefill, a reset): start from it.
function syncState() {
  if (target && state.text !== target.value) state = { text: target.value, raw: "" };
}

function typeKey(key) {
  if (!target) return;
  syncState();
  hint("");
  const upper = key.length === 1 && /[a-z]/.test(key) && shift !== "off";
  const k = upper ? key.toUpperCase() : key;
  setValue(compose(state, k, engineOptions()), "insertText", k);
  if (shift === "once" && /[a-z]/i.test(key)) shift = "off";
  autoShift();
  refreshKeys();
}

function backspace() {
  if (!target) return;
  syncState();
  hint("");
  if (!target.value) return;
  setValue(compose(state, BACKSPACE, engineOptions()), "deleteContentBackward", null);
  autoShift();
  refreshKeys();
}

function mark(letter) {
  if (!target) return;
  syncState();
  const r = pressMark(state, letter, typing, shift !== "off");
  if (!r.applied) { hint(`Chưa thêm được «${letter}». Xin mời Ông/Bà chạm «⌫ Xoá» rồi gõ lại chữ đó.`); return; }
  hint("");
  setValue(r.state, "insertText", letter);
  if (shift === "once") shift = "off";
  autoShift();
  refreshKeys();
}

function tone(t) {
  if (!target) return;
  syncState();
  const r = pressTone(state, t, typing);
  if (!r.applied) { hint("Xin mời Ông/Bà gõ chữ trước, rồi chạm vào dấu."); return; }
  hint("");
  setValue(r.state, "insertReplacementText", null);
}

function done() {
  const field = target;
  closeKeyboard();
  if (!field) return;
  field.blur();
  field.dispatchEvent(new Event("change", { bubbles: true }));
  field.dispatchEvent(new CustomEvent("aps:keyboard-done", { bubbles: true }));
}

function key(label, attrs, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.tabIndex = -1;
  b.className = "kb-key" + (attrs.class ? " " + attrs.class : "");
  if (typeof label === "string") b.textContent = label;
  else b.append(...label);
  for (const [k, v] of Object.entries(attrs)) if (k !== "class") b.setAttribute(k, v);
  b.addEventListener("click", (e) => { e.preventDefault(); action(); refocus(); });
  return b;
}

function row(cls, keys) {
  const r = document.createElement("div");
  r.className = "kb-row" + (cls ? " " + cls : "");
  r.append(...keys);
  return r;
}

function charKeys(chars) {
  return [...chars].map((c) => key(c, { "data-key": c, class: /[a-z]/.test(c) ? "kb-letter" : "" }, () => typeKey(c)));
}

function shiftKey() {
  return key("⇧ Chữ hoa", { "data-action": "shift", "aria-pressed": "false", class: "kb-wide" }, () => {
    shift = shift === "off" ? "once" : shift === "once" ? "lock" : "off";
    refreshKeys();
  });
}

function bottomRow(extra) {
  return row("kb-bottom", [
    shiftKey(),
    ...charKeys(extra),
    key("Dấu cách", { "data-key": " ", "data-action": "space", class: "kb-space" }, () => typeKey(" ")),
    key("⌫ Xoá", { "data-action": "backspace", "aria-label": "Xoá chữ cuối", class: "kb-wide" }, backspace),
    key("Xong", { "data-action": "done", class: "kb-wide kb-done" }, done),
  ]);
}

function markRow() {
  const marks = Object.keys(MARK_KEYS).map((m) =>
    key(m, { "data-mark": m, "aria-label": `chữ ${m}`, class: "kb-mark" }, () => mark(m)));
  const tones = TONE_NAMES.slice(1).map((name, i) => {
    const glyph = document.createElement("span");
    glyph.className = "kb-glyph";
    glyph.setAttribute("aria-hidden", "true"); // the key's name is its visible word, "sắc"
    glyph.textContent = ("a" + TONE_MARKS[i + 1]).normalize("NFC");
    const text = document.createElement("span");
    text.textContent = name;
    return key([glyph, text], { "data-tone": String(i + 1), class: "kb-tone" }, () => tone(i + 1));
  });
  return row("kb-marks", [...marks, ...tones]);
}

function render() {
  const body = panel.querySelector(".kb-keys");
  const rows = [];
  if (mode === "numeric" || mode === "phone") {
    rows.push(row("kb-pad", [
      ...charKeys("123456789"),
      key("⌫ Xoá", { "data-action": "backspace", "aria-label": "Xoá số cuối" }, backspace),
      ...charKeys("0"),
      key("Xong", { "data-action": "done", class: "kb-done" }, done),
    ]));
  } else {
    if (mode === "text") rows.push(markRow());
    rows.push(row("", charKeys(DIGITS + (mode === "text" ? "-/" : "-_"))));
    for (const letters of LETTER_ROWS) rows.push(row("", charKeys(letters)));
    rows.push(bottomRow(mode === "text" ? ",." : ".@/"));
  }
  body.replaceChildren(...rows);
  panel.dataset.mode = mode;
  panel.dataset.method = typing.method;
  refreshKeys();
}

function refreshKeys() {
  if (!panel) return;
  const upper = shift !== "off";
  for (const b of panel.querySelectorAll(".kb-letter")) {
    b.textContent = upper ? b.dataset.key.toUpperCase() : b.dataset.key;
  }
  const s = panel.querySelector('[data-action="shift"]');
  if (s) {
    s.setAttribute("aria-pressed", String(upper));
    s.textContent = shift === "lock" ? "⇪ Chữ hoa" : "⇧ Chữ hoa";
    s.classList.toggle("kb-on", upper);
  }
}

function ensurePanel() {
  if (panel) return panel;
  panel = document.createElement("div");
  panel.className = "kb";
  panel.id = "keyboard";
  panel.setAttribute("role", "group");
  panel.setAttribute("aria-label", "Bàn phím");
  panel.hidden = true;
  const note = document.createElement("p");
  note.className = "kb-hint";
  note.setAttribute("role", "status");
  note.hidden = true;
  const keys = document.createElement("div");
  keys.className = "kb-keys";
  panel.append(note, keys);
  // keep the focus (and the caret) in the field while keys are pressed
  panel.addEventListener("mousedown", (e) => e.preventDefault());
  panel.addEventListener("pointerdown", (e) => { if (e.pointerType === "mouse") e.preventDefault(); });
  document.body.append(panel);
  return panel;
}

function refocus() {
  if (target && target.isConnected && document.activeElement !== target) target.focus({ preventScroll: true });
}

function openFor(input) {
  const m = attached.get(input);
  if (!m) return;
  const again = target === input && panel && !panel.hidden;
  target = input;
  if (!again || mode !== m) {
    mode = m;
    shift = "off";
    state = { text: input.value, raw: "" };
    ensurePanel();
    render();
    hint("");
  }
  panel.hidden = false;
  document.body.classList.add("kb-open");
  autoShift();
  refreshKeys();
  const end = input.value.length;
  try { input.setSelectionRange(end, end); } catch (e) { /* no caret */ }
  input.scrollIntoView({ block: "nearest" });
  loadTypingOptions().then(() => { if (panel && !panel.hidden && panel.dataset.method !== typing.method) render(); });
}

function onForeignInput(e) {
  if (dispatching || e.target !== target) return;
  state = { text: e.target.value, raw: "" }; // typed on a physical keyboard, or filled
}

/** Give `input` the on-screen keyboard of `mode` ("text", "numeric", "phone", "plain"). */
export function attachKeyboard(input, m = "text") {
  if (!input || typeof input.focus !== "function") throw new TypeError("attachKeyboard: give an input or textarea");
  if (!MODES.includes(m)) throw new TypeError(`attachKeyboard: mode ${JSON.stringify(m)}; use ${MODES.join(", ")}`);
  const first = !attached.has(input);
  attached.set(input, m);
  input.dataset.keyboard = m;
  input.setAttribute("inputmode", "none"); // no system keyboard on top of ours
  input.setAttribute("autocomplete", "off");
  input.setAttribute("spellcheck", "false");
  if (first) {
    input.addEventListener("focus", () => openFor(input));
    input.addEventListener("click", () => openFor(input));
    input.addEventListener("input", onForeignInput);
  }
  if (document.activeElement === input) openFor(input);
  loadTypingOptions();
  return input;
}

/** Hide the keyboard and forget its field (the field keeps its value). */
export function closeKeyboard() {
  target = null;
  state = { text: "", raw: "" };
  shift = "off";
  if (!panel) return;
  panel.hidden = true;
  hint("");
  document.body.classList.remove("kb-open");
}

/** Close the keyboard when its field is gone (the screen changed). */
export function closeIfDetached() {
  if (target && !target.isConnected) closeKeyboard();
}

export function keyboardTarget() {
  return target;
}
