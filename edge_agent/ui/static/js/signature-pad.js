
export function createSignaturePad({width, height}) {
  const c = document.createElement('canvas'); c.width = width; c.height = height;
  c.setAttribute('aria-label', 'Khung ký tên'); c.className = 'stub-pad';
  let strokes = [];
  let t0 = null, cur = null;
  c.addEventListener('pointerdown', e => { t0 ??= e.timeStamp; cur = []; strokes.push(cur); add(e); });
  c.addEventListener('pointermove', e => { if (cur) add(e); });
  c.addEventListener('pointerup', () => { cur = null; });
  function add(e) { const r = c.getBoundingClientRect(); cur.push([Math.round(e.clientX - r.left), Math.round(e.clientY - r.top), Math.round(e.timeStamp - t0)]); }
  return { node: c, isEmpty: () => strokes.length === 0, clear: () => { strokes = []; },
    toSignature: () => ({type: 'handwritten', width, height, strokes}) };
}
