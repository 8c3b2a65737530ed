// The widgets' pure logic under Node (node --test): the keyboard's mark and tone buttons,
// the signature recorder's limits, and the read-aloud text cut. Run by
// tests/browser/test_widgets.py::test_widget_logic_under_node.
import assert from "node:assert/strict";
import { test } from "node:test";
import { MARK_KEYS, lastWord, pressMark, pressTone, wordKeys } from "../../edge_agent/ui/static/js/keyboard.js";
import { MAX_POINTS, MAX_STROKE_POINTS, MAX_STROKES, StrokeRecorder } from "../../edge_agent/ui/static/js/signature-pad.js";
import { SPEECH_MAX, speechText } from "../../edge_agent/ui/static/js/speech.js";
import { typeKeys } from "../../edge_agent/ui/static/js/vn-input.js";

const METHODS = ["telex", "vni"];

function typed(keys, method) {
  return typeKeys(keys, { method, style: "new" });
}

// Type `plan`: strings are keys, {mark} and {tone} are button presses.
function run(plan, method) {
  const o = { method, style: "new" };
  let s = { text: "", raw: "" };
  for (const step of plan) {
    if (typeof step === "string") s = typeKeys(step, o, s);
    else if (step.mark) s = pressMark(s, step.mark, o, step.upper).state;
    else s = pressTone(s, step.tone, o).state;
  }
  return s.text;
}

for (const method of METHODS) {
  test(`${method}: the name with the mark and tone buttons`, () => {
    const plan = ["Nguyen", { mark: "ê" }, { tone: 4 }, " Thi", { tone: 5 }, " Ngoc", { tone: 5 },
      " Huong", { mark: "ư" }, { tone: 2 }];
    assert.equal(run(plan, method), "Nguyễn Thị Ngọc Hường");
  });

  test(`${method}: a mark reaches back to its vowel, or types the letter`, () => {
    assert.equal(run(["toi", { mark: "ô" }], method), "tôi");
    assert.equal(run(["tieng", { mark: "ê" }, { tone: 1 }], method), "tiếng");
    assert.equal(run(["Duc", { mark: "đ" }, { tone: 5 }], method), "Đục");
    assert.equal(run([{ mark: "đ", upper: true }, "i"], method), "Đi");
    assert.equal(run(["ng", { mark: "ư" }], method), "ngư");
    assert.equal(run(["tra", { mark: "ă" }, "m"], method), "trăm");
    assert.equal(run(["thu", { mark: "ơ" }], method), "thuơ");
    assert.equal(run(["muon", { mark: "ơ" }], method), "mươn");
  });

  test(`${method}: a tone twice comes off; no vowel, nothing changes`, () => {
    assert.equal(run(["ba", { tone: 1 }, { tone: 1 }], method), "ba");
    assert.equal(run(["ba", { tone: 1 }, { tone: 2 }], method), "bà");
    const o = { method, style: "new" };
    const r = pressTone(typed("ng", method), 1, o);
    assert.equal(r.applied, false);
    assert.deepEqual(r.state, typed("ng", method));
    assert.equal(pressTone({ text: "", raw: "" }, 3, o).applied, false);
    assert.equal(pressMark({ text: "Ngân", raw: "" }, "â", o).applied, false);
  });

  test(`${method}: buttons work on words the engine did not type (a real keyboard)`, () => {
    const o = { method, style: "new" };
    assert.equal(pressMark({ text: "ông Nguyen", raw: "" }, "ê", o).state.text, "ông Nguyên");
    assert.equal(pressTone({ text: "Nguyên", raw: "" }, 4, o).state.text, "Nguyễn");
    assert.equal(pressTone({ text: "Hường", raw: "" }, 2, o).state.text, "Hương");
  });

  test(`${method}: wordKeys types every word back`, () => {
    const o = { method, style: "new", mode: "text" };
    for (const w of ["Đường", "nghiêng", "Hường", "quý", "HĐND", "thuở", "khuỷu", "Đắk"]) {
      const keys = wordKeys(w, method, o);
      assert.ok(keys, w);
      assert.equal(typed(keys, method).text, w);
    }
    assert.equal(wordKeys("naïve", method, o), null);
  });
}

test("every mark button is one letter with its keys", () => {
  for (const [mark, spec] of Object.entries(MARK_KEYS)) {
    assert.equal([...mark].length, 1);
    assert.match(spec.base, /^[a-z]$/);
    assert.equal(typed(spec.base + spec.telex, "telex").text, mark);
    assert.equal(typed(spec.base + spec.vni, "vni").text, mark);
  }
  assert.equal(lastWord("số 12 Hường"), "Hường");
  assert.equal(lastWord("ab "), "");
});

test("signature recorder: whole pixels inside the canvas, time from the first touch", () => {
  const r = new StrokeRecorder({ width: 300, height: 100 });
  assert.equal(r.isEmpty(), true);
  assert.equal(r.toSignature(), null);
  r.start(10.4, 20.6, 1000.3);
  r.move(10.9, 20.9, 1001); // under 2 px: dropped
  r.move(-5, 250, 1010.7);
  r.move(400, 50, 1020);
  r.end();
  assert.equal(r.move(50, 50, 1030), null); // not drawing
  const sig = r.toSignature();
  assert.deepEqual(sig, { type: "handwritten", width: 300, height: 100,
    strokes: [[[10, 21, 0], [0, 100, 10], [300, 50, 20]]] });
  r.clear();
  assert.equal(r.isEmpty(), true);
  assert.throws(() => new StrokeRecorder({ width: 8, height: 100 }), /width 8/);
  assert.throws(() => new StrokeRecorder({ width: 300, height: 2001 }), /height 2001/);
});

test("signature recorder: stops at its limits and says it is full", () => {
  const r = new StrokeRecorder({ width: 2000, height: 2000 });
  r.start(0, 0, 0);
  for (let i = 1; i < MAX_STROKE_POINTS + 50; i += 1) r.move((3 * i) % 1998, Math.floor((3 * i) / 1998) * 3, i);
  assert.equal(r.strokes[0].length, MAX_STROKE_POINTS);
  assert.equal(r.full, true);
  r.end();
  let strokes = 1;
  while (r.start(5, 5, 1)) {
    strokes += 1;
    for (let i = 0; i < 100; i += 1) r.move(5 + 3 * i, 5, 2);
    r.end();
  }
  const sig = r.toSignature();
  assert.ok(sig.strokes.length <= MAX_STROKES);
  assert.ok(sig.strokes.flat().length <= MAX_POINTS);
  assert.equal(sig.strokes.length, strokes);
  const clock = new StrokeRecorder({ width: 100, height: 100 });
  clock.start(1, 1, 0);
  clock.move(50, 50, 10 * 60 * 1000 + 5000);
  assert.equal(clock.toSignature().strokes[0][1][2], 600000);
});

test("speech text: whitespace collapsed, cut after the last whole sentence", () => {
  assert.equal(speechText("  Xin  chào\n Ông/Bà. "), "Xin chào Ông/Bà.");
  assert.equal(speechText(""), "");
  const sentence = "Xin mời Ông/Bà chạm vào ô Nộp hồ sơ. ";
  const long = sentence.repeat(100);
  const cut = speechText(long);
  assert.ok(cut.length <= SPEECH_MAX && cut.length > SPEECH_MAX - sentence.length);
  assert.ok(cut.endsWith("hồ sơ."));
  const words = "chữ ".repeat(600);
  const w = speechText(words);
  assert.ok(w.length <= SPEECH_MAX && w.endsWith("chữ"));
  assert.equal(speechText("a".repeat(2000)).length, SPEECH_MAX);
});
