// Filing, step 3: one question per screen, its label as the question, the keyboard that fits.
// params: {field, mode, error}
//   mode "next" (default): "Tiếp tục" goes to the next question, then the review
//   mode "edit": came from the review's "Sửa"; "Tiếp tục" goes back to the review
//   mode "fix": the agent refused this field (error = its message_vi); "Tiếp tục" re-checks
import { register } from "../core.js";
import { allQuestions, filing, keyboardMode, messageLine, questionFor, say } from "./filing-common.js";
import { afterQuestions } from "./filing-papers.js";

const ID_DIGITS = /^(\d{12}|\d{9})$/;

function isoDate(day, month, year) {
  const d = Number(day), m = Number(month), y = Number(year);
  if (!/^\d{1,2}$/.test(day) || !/^\d{1,2}$/.test(month) || !/^\d{4}$/.test(year)) return null;
  const probe = new Date(Date.UTC(y, m - 1, d));
  if (probe.getUTCFullYear() !== y || probe.getUTCMonth() !== m - 1 || probe.getUTCDate() !== d) return null;
  return `${year}-${String(m).padStart(2, "0")}-${String(d).padStart(2, "0")}`;
}

/** The answer from the controls, or {problem} in the question's own words. */
function readAnswer(q, controls) {
  const label = `«${q.label}»`;
  const empty = { value: undefined };
  if (q.type === "choice" || q.type === "bool") {
    if (controls.chosen === undefined) return q.required ? { problem: `Xin mời Ông/Bà chọn ${label}.` } : empty;
    return { value: controls.chosen };
  }
  if (q.type === "date") {
    const [d, m, y] = controls.inputs.map((i) => i.value.trim());
    if (!d && !m && !y) return q.required ? { problem: `Vui lòng nhập ${label}.` } : empty;
    const iso = isoDate(d, m, y);
    if (!iso) return { problem: `${label} không phải ngày hợp lệ. Xin mời Ông/Bà xem lại ngày, tháng, năm.` };
    return { value: iso };
  }
  const text = controls.inputs[0].value.trim();
  if (!text) return q.required ? { problem: `Vui lòng nhập ${label}.` } : empty;
  if (q.type === "int") {
    if (!/^\d+$/.test(text)) return { problem: `${label} chỉ gồm chữ số.` };
    const n = Number(text);
    if ((q.min !== null && q.min !== undefined && n < q.min) || (q.max !== null && q.max !== undefined && n > q.max)) {
      return { problem: `${label} phải từ ${q.min ?? 0} đến ${q.max ?? "?"}.` };
    }
    return { value: n };
  }
  if (q.type === "id_number" && !ID_DIGITS.test(text)) {
    return { problem: `${label} phải gồm 12 chữ số (CCCD) hoặc 9 chữ số (CMND).` };
  }
  if (q.max_len && text.length > q.max_len) return { problem: `${label} dài quá ${q.max_len} ký tự.` };
  return { value: text };
}

function textControls(ctx, q, value, hint) {
  const attrs = { id: "filing-answer", autocomplete: "off", spellcheck: "false", "aria-describedby": "filing-hint" };
  if (q.type === "int" || q.type === "id_number") attrs.inputmode = "numeric";
  if (q.type === "phone") attrs.inputmode = "tel";
  if (q.max_len) attrs.maxlength = String(q.max_len);
  const long = q.type === "text" && q.max_len && q.max_len > 200;
  const input = ctx.el(long ? "textarea" : "input", { ...attrs, rows: long ? "3" : undefined });
  if (value !== undefined && value !== null) input.value = String(value);
  ctx.keyboard(input, keyboardMode(q.type));
  const row = ctx.el("div", { class: "filing-answer-row" }, input);
  return {
    inputs: [input],
    row,
    node: ctx.el("div", { class: "filing-answer" },
      ctx.el("label", { class: "filing-question-label", for: "filing-answer", text: q.label }), hint, row),
  };
}

function dateControls(ctx, q, value, hint) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value || "");
  const parts = [["day", "Ngày", 2, m && m[3]], ["month", "Tháng", 2, m && m[2]], ["year", "Năm", 4, m && m[1]]];
  const inputs = [];
  const boxes = parts.map(([name, text, len, v]) => {
    const input = ctx.el("input", {
      id: `filing-date-${name}`, inputmode: "numeric", maxlength: String(len), autocomplete: "off",
      class: `filing-date-${name}`, placeholder: len === 4 ? "1950" : "01",
    });
    if (v) input.value = v;
    ctx.keyboard(input, "numeric");
    inputs.push(input);
    return ctx.el("div", { class: "filing-date-part" }, ctx.el("label", { for: input.id, text }), input);
  });
  const row = ctx.el("div", { class: "filing-answer-row filing-date-row" }, boxes);
  return {
    inputs,
    row,
    node: ctx.el("fieldset", { class: "filing-answer filing-date", "aria-describedby": "filing-hint" },
      ctx.el("legend", { class: "filing-question-label", text: q.label }), hint, row),
  };
}

function choiceControls(ctx, q, value, onPick, hint) {
  const controls = { inputs: [], chosen: value === null ? undefined : value };
  const options = q.type === "bool" ? [["Có", true], ["Không", false]] : (q.choices || []).map((c) => [c, c]);
  const buttons = options.map(([text, v]) => ctx.el("button", {
    class: "filing-choice", "aria-pressed": String(controls.chosen === v), "data-choice": text, text,
    on: {
      click: () => {
        controls.chosen = v;
        for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.choice === text));
        onPick();
      },
    },
  }));
  controls.node = ctx.el("fieldset", { class: "filing-answer filing-choices", "aria-describedby": "filing-hint" },
    ctx.el("legend", { class: "filing-question-label", text: q.label }), hint, buttons);
  return controls;
}

function hintFor(q) {
  if (q.type === "choice" || q.type === "bool") return "Xin mời Ông/Bà chạm vào một ô.";
  const how = q.type === "date" ? "Gõ ngày, tháng, năm bằng bàn phím số." :
    (q.type === "text" ? "Gõ bằng bàn phím trên màn hình." : "Gõ bằng bàn phím số.");
  return q.required ? how : `${how} Không bắt buộc: có thể để trống.`;
}

register({
  name: "filing-question",
  title: "Khai thông tin",
  render(ctx, { field, mode = "next", error } = {}) {
    const f = filing(ctx);
    const q = questionFor(f, field);
    if (!q) throw new Error(`filing-question: no question for ${field}`);
    const list = allQuestions(f);
    const index = list.findIndex((x) => x.field === field);
    const message = messageLine(ctx);
    const go = () => next();
    const hint = ctx.el("p", { id: "filing-hint", class: "filing-hint", text: hintFor(q) });
    const controls = q.type === "choice" || q.type === "bool"
      ? choiceControls(ctx, q, f.answers[field], go, hint)
      : q.type === "date" ? dateControls(ctx, q, f.answers[field], hint) : textControls(ctx, q, f.answers[field], hint);

    function next() {
      const got = readAnswer(q, controls);
      if (got.problem) {
        say(message, got.problem);
        if (controls.inputs[0]) controls.inputs[0].focus();
        return;
      }
      f.answers[field] = got.value;
      f.prepared = null;
      if (mode === "edit") return ctx.back();
      if (mode === "fix") return ctx.go("filing-review", {}, { replace: true });
      const after = list[index + 1];
      if (after) return ctx.go("filing-question", { field: after.field });
      return f.procedure ? afterQuestions(ctx, f) : ctx.go("filing-choose");
    }

    if (error) say(message, error);
    for (const input of controls.inputs) {
      input.addEventListener("keydown", (e) => { if (e.key === "Enter" && input.tagName === "INPUT") next(); });
    }
    document.addEventListener("aps:screen", () => {
      if (controls.inputs[0] && controls.inputs[0].isConnected) controls.inputs[0].focus();
    }, { once: true });
    // "Tiếp tục" sits beside the field it answers, so the on-screen keyboard never hides it
    const nextButton = ctx.el("button", { class: "primary", "data-action": "next", text: "Tiếp tục", on: { click: go } });
    if (controls.row) controls.row.append(nextButton);
    const node = ctx.el("div", { class: "filing-question" + (error ? " filing-wrong" : ""), "data-field": field },
      ctx.el("p", { class: "filing-step", text: `Câu ${index + 1} trên ${list.length}` }),
      controls.node,
      message,
      ctx.el("div", { class: "actions" },
        ctx.el("button", { "data-action": "back", text: "Quay lại", on: { click: () => ctx.back() } }),
        controls.row ? null : nextButton));
    return node;
  },
});
