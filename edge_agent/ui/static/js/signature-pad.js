// The signature pad: the citizen signs with a finger, a pen or the mouse; toSignature()
// gives the local API's handwritten signature,
//   {"type": "handwritten", "width", "height", "strokes": [[[x, y, t_ms], ...], ...]}
// (POST /api/v1/filings; edge_agent/signature.py HandwrittenSignature.from_strokes).
//
// Theory of operation. StrokeRecorder (pure, tested under Node) keeps the strokes in CSS
// pixels of the canvas: whole numbers, clamped inside width x height, t_ms counted from
// the first touch. It drops points closer than MIN_STEP_PX to the last one kept, and stops
// taking points at the limits (MAX_STROKES strokes, MAX_STROKE_POINTS a stroke,
// MAX_POINTS in all: well inside what the agent accepts and its body limit); then `full`
// is true and the pad says so. Pointer events feed it: one pointer at a time (a palm
// resting on the screen does not draw), touch-action none on the canvas.

/** edge_agent/signature.py MAX_STROKES (the API allows 200; the signature itself 64). */
export const MAX_STROKES = 64;
/** The API's limit on the points of one stroke. */
export const MAX_STROKE_POINTS = 2000;
/** All points together: about 60 KB of JSON, under the agent's 256 KiB body limit. */
export const MAX_POINTS = 4000;
/** edge_agent/signature.py MAX_T_MS: ten minutes after the first touch. */
export const MAX_T_MS = 600000;
/** edge_agent/signature.py: canvas sides 16..2000 px. */
export const MIN_SIDE = 16;
export const MAX_SIDE = 2000;
export const MIN_STEP_PX = 2;

const INSTRUCTION_VI = "Xin mời Ông/Bà ký tên vào khung dưới đây bằng ngón tay.";
const FULL_VI = "Khung ký đã đầy. Nếu chữ ký chưa đúng, xin mời chạm «Ký lại».";

function side(value, name) {
  if (!Number.isInteger(value) || value < MIN_SIDE || value > MAX_SIDE) {
    throw new TypeError(`signature pad: ${name} ${value} must be a whole number ${MIN_SIDE}..${MAX_SIDE}`);
  }
  return value;
}

export class StrokeRecorder {
  constructor({ width, height }) {
    this.width = side(width, "width");
    this.height = side(height, "height");
    this.clear();
  }

  clear() {
    this.strokes = [];
    this.total = 0;
    this.t0 = null;
    this.drawing = false;
    this.full = false;
  }

  point(x, y, t) {
    if (this.t0 === null) this.t0 = t;
    const clamp = (v, hi) => Math.min(hi, Math.max(0, Math.round(Number.isFinite(v) ? v : 0)));
    const ms = Math.min(MAX_T_MS, Math.max(0, Math.round(t - this.t0)));
    return [clamp(x, this.width), clamp(y, this.height), ms];
  }

  /** A new stroke at (x, y); false when the pad is full. */
  start(x, y, t) {
    if (this.strokes.length >= MAX_STROKES || this.total >= MAX_POINTS) {
      this.full = true;
      this.drawing = false;
      return false;
    }
    this.strokes.push([this.point(x, y, t)]);
    this.total += 1;
    this.drawing = true;
    return true;
  }

  /** The stroke goes on to (x, y); returns the point kept, or null (too close, full). */
  move(x, y, t) {
    if (!this.drawing) return null;
    const stroke = this.strokes[this.strokes.length - 1];
    if (stroke.length >= MAX_STROKE_POINTS || this.total >= MAX_POINTS) {
      this.full = true;
      return null;
    }
    const p = this.point(x, y, t);
    const last = stroke[stroke.length - 1];
    if (Math.hypot(p[0] - last[0], p[1] - last[1]) < MIN_STEP_PX) return null;
    if (p[2] < last[2]) p[2] = last[2];
    stroke.push(p);
    this.total += 1;
    return p;
  }

  end() {
    this.drawing = false;
  }

  /** Fewer than two points is no signature (the agent refuses it too). */
  isEmpty() {
    return this.total < 2;
  }

  /** The API's shape, or null when nothing is signed yet. */
  toSignature() {
    if (this.isEmpty()) return null;
    return {
      type: "handwritten",
      width: this.width,
      height: this.height,
      strokes: this.strokes.map((s) => s.map((p) => [p[0], p[1], p[2]])),
    };
  }
}

/**
 * A signature pad of `width` x `height` CSS px: {node, isEmpty(), clear(), toSignature()}.
 * `node` holds the instruction, the canvas and the "Ký lại" button; it fires
 * "aps:signature-change" (bubbling) after every stroke and every clear.
 */
export function createSignaturePad({ width = 600, height = 240 } = {}) {
  const rec = new StrokeRecorder({ width, height });
  const node = document.createElement("div");
  node.className = "sig";
  const instruction = document.createElement("p");
  instruction.className = "sig-instruction";
  instruction.id = `sig-instruction-${Math.random().toString(36).slice(2, 8)}`;
  instruction.textContent = INSTRUCTION_VI;
  const canvas = document.createElement("canvas");
  canvas.className = "sig-canvas";
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", "Khung ký tên của Ông/Bà");
  canvas.setAttribute("aria-describedby", instruction.id);
  const ratio = Math.max(1, Math.min(3, globalThis.devicePixelRatio || 1));
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.width = `${width}px`; // CSSOM, allowed by the page's style-src 'self'
  canvas.style.height = `${height}px`;
  const status = document.createElement("p");
  status.className = "sig-status";
  status.setAttribute("role", "status");
  const again = document.createElement("button");
  again.type = "button";
  again.className = "sig-clear";
  again.textContent = "Ký lại";
  again.setAttribute("aria-label", "Xoá chữ ký để ký lại");
  const actions = document.createElement("div");
  actions.className = "sig-actions";
  actions.append(again);
  node.append(instruction, canvas, status, actions);

  const g = canvas.getContext("2d");
  function resetCanvas() {
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    g.lineWidth = 3;
    g.lineCap = "round";
    g.lineJoin = "round";
    g.strokeStyle = "#111111";
    g.fillStyle = "#111111";
  }
  resetCanvas();

  function changed() {
    status.textContent = rec.full ? FULL_VI : "";
    node.classList.toggle("sig-signed", !rec.isEmpty());
    node.dispatchEvent(new CustomEvent("aps:signature-change", { bubbles: true, detail: { empty: rec.isEmpty() } }));
  }

  let pointer = null; // the one pointer drawing now
  function where(e) {
    const r = canvas.getBoundingClientRect();
    const sx = r.width ? width / r.width : 1;
    const sy = r.height ? height / r.height : 1;
    return [(e.clientX - r.left) * sx, (e.clientY - r.top) * sy];
  }
  function line(a, b) {
    g.beginPath();
    g.moveTo(a[0], a[1]);
    g.lineTo(b[0], b[1]);
    g.stroke();
  }
  // No gestures from a stroke: without this Chromium still makes a scroll and a fling of
  // it (touch-action none or not), and a tap that comes while the fling runs is swallowed
  // (a "Ký lại" or "Nộp hồ sơ" tapped right after signing would do nothing).
  const noGesture = (e) => { if (e.cancelable) e.preventDefault(); };
  canvas.addEventListener("touchstart", noGesture, { passive: false });
  canvas.addEventListener("touchmove", noGesture, { passive: false });
  canvas.addEventListener("pointerdown", (e) => {
    if (pointer !== null || (e.pointerType === "mouse" && e.button !== 0)) return;
    e.preventDefault();
    const [x, y] = where(e);
    if (!rec.start(x, y, e.timeStamp)) { changed(); return; }
    pointer = e.pointerId;
    try { canvas.setPointerCapture(e.pointerId); } catch (err) { /* synthetic pointer */ }
    const p = rec.strokes[rec.strokes.length - 1][0];
    g.beginPath();
    g.arc(p[0], p[1], 1.5, 0, 2 * Math.PI);
    g.fill();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (e.pointerId !== pointer) return;
    e.preventDefault();
    const events = typeof e.getCoalescedEvents === "function" ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) {
      const stroke = rec.strokes[rec.strokes.length - 1];
      const last = stroke[stroke.length - 1];
      const [x, y] = where(ev);
      const p = rec.move(x, y, ev.timeStamp || e.timeStamp);
      if (p) line(last, p);
    }
  });
  const finish = (e) => {
    if (e.pointerId !== pointer) return;
    pointer = null;
    rec.end();
    changed();
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
  canvas.addEventListener("lostpointercapture", finish);

  function clear() {
    pointer = null;
    rec.clear();
    resetCanvas();
    changed();
  }
  again.addEventListener("click", clear);

  return {
    node,
    isEmpty: () => rec.isEmpty(),
    clear,
    toSignature: () => rec.toSignature(),
  };
}
