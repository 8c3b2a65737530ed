// Vietnamese typing for the kiosk's on-screen keyboard: Telex and VNI.
//
// Theory of operation. Chromium in kiosk mode has no input method, so every
// key of the on-screen keyboard goes through compose(). The state is
// {text, raw}: `text` is everything shown in the field, `raw` the keys typed
// since the current word began. The current word is never edited in place:
// after each key it is rebuilt from `raw` (a short list of keys), so the
// result depends only on the keys, not on the order events arrived in.
// Building a word keeps, per letter, its base (a-z or đ), a mark (circumflex
// "^", breve "(", horn "+"), its case; and one tone for the whole word. The
// tone is placed on a vowel only when the word is drawn, so a tone typed early
// ("hofa") moves to the right vowel as letters follow ("hoà", "hoàng").
// A modifier typed again undoes itself and stays as a letter ("aaa" -> "aa",
// "ass" -> "as"); after that the same key is a plain letter for the rest of
// the word. A key that is not a letter (space, punctuation, a VNI digit with
// nothing to change) ends the word. Output is NFC.
//
// No dependencies, no DOM: the UI imports it as an ES module, the tests run
// it under Node (tests/js/vn_input_runner.mjs).

const TONES = ["", "\u0301", "\u0300", "\u0309", "\u0303", "\u0323"]; // none sắc huyền hỏi ngã nặng
const MARKS = { "^": "\u0302", "(": "\u0306", "+": "\u031B" };
const VOWELS = "aeiouy";
const TELEX_TONES = { s: 1, f: 2, r: 3, x: 4, j: 5 };
const VNI_TONES = { 1: 1, 2: 2, 3: 3, 4: 4, 5: 5 };

export const BACKSPACE = "Backspace";

function isVowel(letter) {
  return letter.base !== "đ" && VOWELS.includes(letter.base);
}

function letterOf(key) {
  const lower = key.toLowerCase();
  return { base: lower, mark: "", upper: key !== lower };
}

function drawLetter(letter, tone) {
  let s = letter.base;
  if (letter.mark) s += MARKS[letter.mark];
  if (tone) s += TONES[tone];
  s = s.normalize("NFC");
  return letter.upper ? s.toUpperCase() : s;
}

// Where the syllable's vowels are: [start, end) of the vowel run, after the
// onset ("qu" and "gi" before a vowel are onsets, so their u and i are not).
function nucleus(letters) {
  let start = 0;
  while (start < letters.length && !isVowel(letters[start])) start += 1;
  if (start >= letters.length) return null;
  let end = start;
  while (end < letters.length && isVowel(letters[end])) end += 1;
  const prev = start > 0 ? letters[start - 1].base : "";
  const first = letters[start];
  if (end - start > 1 && !first.mark) {
    if ((prev === "q" && first.base === "u") || (prev === "g" && first.base === "i" && start === 1)) {
      start += 1;
    }
  }
  return { start, end };
}

// The letter that carries the tone; `style` decides "oa/oe/uy" without a final.
function toneIndex(letters, style) {
  const n = nucleus(letters);
  if (!n) return -1;
  const { start, end } = n;
  const count = end - start;
  const hasFinal = end < letters.length;
  const vs = letters.slice(start, end);
  // ươ takes it on ơ; otherwise a marked vowel (â ă ê ô ơ ư) wins.
  for (let i = 0; i + 1 < vs.length; i += 1) {
    if (vs[i].base === "u" && vs[i].mark === "+" && vs[i + 1].base === "o" && vs[i + 1].mark === "+") {
      return start + i + 1;
    }
  }
  for (let i = vs.length - 1; i >= 0; i -= 1) {
    if (vs[i].mark) return start + i;
  }
  if (count === 1) return start;
  if (count >= 3) return start + 1;
  if (hasFinal) return start + 1;
  const pair = vs[0].base + vs[1].base;
  if (pair === "oa" || pair === "oe" || pair === "uy") {
    return style === "old" ? start : start + 1;
  }
  return start;
}

function emptyWord() {
  return { letters: [], tone: 0, spent: new Set() };
}

function addLetter(word, key) {
  word.letters.push(letterOf(key));
}

// Tone key: set, change, or (same tone again) undo and keep the key as a letter.
function applyTone(word, tone, key) {
  if (!nucleus(word.letters)) return false;
  if (word.tone === tone) {
    word.tone = 0;
    word.spent.add(key.toLowerCase());
    addLetter(word, key);
  } else {
    word.tone = tone;
  }
  return true;
}

function clearTone(word) {
  if (!word.tone) return false;
  word.tone = 0;
  return true;
}

// đ: the d just typed ("dd" in Telex, "d9" in VNI; also inside abbreviations
// such as HĐND), or the onset d when the key comes later in the word ("dungd").
function applyBar(word, key, doubling) {
  const ls = word.letters;
  if (!ls.length) return false;
  const last = ls[ls.length - 1];
  const first = ls[0];
  let target = null;
  if (last.base === "d" || last.base === "đ") target = last;
  else if (first.base === "d" && (!doubling || nucleus(ls))) target = first;
  else if (first.base === "đ") target = first;
  if (!target) return false;
  if (target.base === "đ") {
    target.base = "d";
    word.spent.add(key.toLowerCase());
    addLetter(word, key);
  } else {
    target.base = "đ";
  }
  return true;
}

// The vowels a mark key may change.
function vowelRun(word) {
  const n = nucleus(word.letters);
  if (!n) return [];
  // After the onset: the u of "qu" and the i of "gi" take no mark.
  return word.letters.slice(n.start, n.end);
}

function setMarks(word, targets, mark, key) {
  if (!targets.length) return false;
  if (targets.every((t) => t.mark === mark)) {
    for (const t of targets) t.mark = "";
    word.spent.add(key.toLowerCase());
    addLetter(word, key);
  } else {
    for (const t of targets) t.mark = mark;
  }
  return true;
}

function circumflexTargets(word, base) {
  const run = vowelRun(word);
  for (let i = run.length - 1; i >= 0; i -= 1) {
    if ("aeo".includes(run[i].base) && (base === null || run[i].base === base)) return [run[i]];
  }
  return [];
}

function hornTargets(word, withBreve) {
  const run = vowelRun(word);
  if (withBreve) {
    const last = run[run.length - 1];
    if (last && last.base === "a") return [last];
  }
  for (let i = 0; i + 1 < run.length; i += 1) {
    if (run[i].base === "u" && run[i + 1].base === "o") return [run[i], run[i + 1]];
  }
  for (const v of run) {
    if (v.base === "u" || v.base === "o") return [v];
  }
  return [];
}

function breveTargets(word) {
  const run = vowelRun(word);
  for (let i = run.length - 1; i >= 0; i -= 1) {
    if (run[i].base === "a") return [run[i]];
  }
  return [];
}

function telexKey(word, key) {
  const k = key.toLowerCase();
  if (word.spent.has(k)) return false;
  if (k in TELEX_TONES) return applyTone(word, TELEX_TONES[k], key);
  if (k === "z") return clearTone(word);
  if (k === "d") return applyBar(word, key, true);
  if (k === "a" || k === "e" || k === "o") {
    const last = word.letters[word.letters.length - 1];
    const targets = circumflexTargets(word, k);
    // "aa" doubles the letter just typed, or reaches back into the vowels
    // ("tieng" + "e" gives "tiêng") when the vowel is the same letter.
    if (!targets.length) return false;
    if (last && isVowel(last) && last !== targets[0]) return false;
    return setMarks(word, targets, "^", key);
  }
  if (k === "w") {
    // "w" alone: ă on a final a, else ươ on "uo", else the horn on u or o.
    const targets = hornTargets(word, true);
    const mark = targets.length && targets[0].base === "a" ? "(" : "+";
    return setMarks(word, targets, mark, key);
  }
  return false;
}

function vniKey(word, key) {
  if (word.spent.has(key)) return false;
  if (key in VNI_TONES) return applyTone(word, VNI_TONES[key], key);
  if (key === "0") return clearTone(word);
  if (key === "6") return setMarks(word, circumflexTargets(word, null), "^", key);
  if (key === "7") return setMarks(word, hornTargets(word, false), "+", key);
  if (key === "8") return setMarks(word, breveTargets(word), "(", key);
  if (key === "9") return applyBar(word, key, false);
  return false;
}

function isLetterKey(key) {
  return /^[A-Za-z]$/.test(key);
}

function buildWord(raw, method) {
  const word = emptyWord();
  for (const key of raw) {
    const handled = method === "vni" ? vniKey(word, key) : telexKey(word, key);
    if (!handled) addLetter(word, key);
  }
  return word;
}

// "ươ" with nothing after it is written "uơ" (thuở, huơ): typing "thuowr"
// gives "thuở", and a final typed next ("thuowng") brings the horn back.
function drawWord(word, style) {
  const ls = word.letters.map((l) => ({ ...l }));
  const n = nucleus(ls);
  if (n && n.end === ls.length && n.end - n.start >= 2) {
    const a = ls[n.end - 2];
    const b = ls[n.end - 1];
    if (a.base === "u" && a.mark === "+" && b.base === "o" && b.mark === "+") a.mark = "";
  }
  const at = word.tone ? toneIndex(ls, style) : -1;
  return ls.map((l, i) => drawLetter(l, i === at ? word.tone : 0)).join("").normalize("NFC");
}

function render(raw, options) {
  return drawWord(buildWord(raw, options.method), options.style);
}

// Whether `key` belongs to the word being typed (a letter, or a VNI digit that
// changes it); anything else ends the word.
function joinsWord(raw, key, options) {
  if (isLetterKey(key)) return true;
  if (options.method !== "vni" || !/^[0-9]$/.test(key) || !raw.length) return false;
  const before = buildWord(raw, "vni");
  const word = emptyWord();
  word.letters = before.letters.map((l) => ({ ...l }));
  word.tone = before.tone;
  word.spent = new Set(before.spent);
  return vniKey(word, key);
}

function checkOptions(options) {
  const o = options ?? {};
  const method = o.method ?? "telex";
  const style = o.style ?? "new";
  const mode = o.mode ?? "text";
  if (method !== "telex" && method !== "vni") {
    throw new TypeError(`vn-input: option "method" is ${JSON.stringify(method)}; use "telex" or "vni"`);
  }
  if (style !== "new" && style !== "old") {
    throw new TypeError(`vn-input: option "style" is ${JSON.stringify(style)}; use "new" (hoà) or "old" (hòa)`);
  }
  if (mode !== "text" && mode !== "numeric" && mode !== "plain") {
    throw new TypeError(
      `vn-input: option "mode" is ${JSON.stringify(mode)}; use "text", "numeric" or "plain"`,
    );
  }
  return { method, style, mode };
}

function checkState(state) {
  const s = state ?? { text: "", raw: "" };
  if (typeof s.text !== "string" || typeof s.raw !== "string") {
    throw new TypeError('vn-input: state must be {text: string, raw: string}; start from emptyState()');
  }
  return s;
}

export function emptyState() {
  return { text: "", raw: "" };
}

// Spell a built word back as keys (marks right after their letter, the tone
// last), so a word cut by backspace stays editable.
function respell(letters, tone, method) {
  const tk = method === "vni" ? ["", "1", "2", "3", "4", "5"] : ["", "s", "f", "r", "x", "j"];
  let keys = "";
  for (const l of letters) {
    const ch = l.base === "đ" ? "d" : l.base;
    const c = l.upper ? ch.toUpperCase() : ch;
    keys += c;
    if (l.base === "đ") keys += method === "vni" ? "9" : c;
    if (l.mark === "^") keys += method === "vni" ? "6" : c;
    if (l.mark === "(") keys += method === "vni" ? "8" : "w";
    if (l.mark === "+") keys += method === "vni" ? "7" : "w";
  }
  return keys + tk[tone];
}

function backspace(state, options) {
  if (!state.raw) return { text: [...state.text].slice(0, -1).join(""), raw: "" };
  const shown = render(state.raw, options);
  const prefix = state.text.slice(0, state.text.length - shown.length);
  const word = buildWord(state.raw, options.method);
  const letters = word.letters.slice(0, -1);
  const tone = letters.some(isVowel) ? word.tone : 0;
  const raw = respell(letters, tone, options.method);
  const cut = [...shown].slice(0, -1).join("");
  // Keep the word editable only when its keys really give what is left.
  if (render(raw, options) === cut) return { text: prefix + cut, raw };
  return { text: prefix + cut, raw: "" };
}

// compose(state, key, options) -> new state. `key` is one character or
// "Backspace". options: {method: "telex"|"vni", style: "new"|"old",
// mode: "text"|"numeric"|"plain"}; numeric mode (phone and ID numbers) takes
// digits only and leaves the state as it was for any other key; plain mode
// (e-mail addresses, codes) types every key as it is, with no composition.
export function compose(state, key, options) {
  const o = checkOptions(options);
  const s = checkState(state);
  if (key === BACKSPACE) return backspace(s, o);
  if (typeof key !== "string" || [...key].length !== 1) {
    throw new TypeError(`vn-input: key is ${JSON.stringify(key)}; give one character or "${BACKSPACE}"`);
  }
  if (o.mode === "numeric") {
    if (!/^[0-9]$/.test(key)) return { text: s.text, raw: "" };
    return { text: s.text + key, raw: "" };
  }
  if (o.mode === "plain") return { text: s.text + key, raw: "" };
  if (!joinsWord(s.raw, key, o)) {
    return { text: s.text + key, raw: "" };
  }
  const shown = s.raw ? render(s.raw, o) : "";
  const prefix = s.text.slice(0, s.text.length - shown.length);
  const raw = s.raw + key;
  return { text: (prefix + render(raw, o)).normalize("NFC"), raw };
}

// Type a whole key sequence (tests, and the UI's paste of a typed string).
export function typeKeys(keys, options, state) {
  let s = state ?? emptyState();
  for (const key of keys) s = compose(s, key, options);
  return s;
}
