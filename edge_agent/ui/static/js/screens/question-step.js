// One question per screen: the question as the label, one field, "Tiếp tục" and "Quay lại".
// Used by the feedback and home-visit flows. The typed value lives in the caller's draft
// (kept in ctx.citizen, so the idle wipe clears it), never in module memory.

let fieldCount = 0;

// ask(ctx, spec) -> DOM node. spec:
//   label      the question, as the citizen reads it ("Họ và tên của Ông/Bà?")
//   hint       one line under it (optional)
//   mode       keyboard mode: text, numeric, phone, plain
//   multiline  a textarea instead of an input
//   value      the value to show (from the draft)
//   emptyText  the message when it is left empty; none: the question may be skipped
//   check(v)   optional: a message when v is not acceptable, else null
//   errorText  a message to show at once (a refusal from the agent, naming this field)
//   nextLabel  the main button's text (default "Tiếp tục")
//   onNext(v)  called with the trimmed value when accepted (may be async; shows busy)
//   skipLabel  a second button that goes on without an answer (optional questions);
//              it calls onNext("") and shows a refusal like the main button does
export function ask(ctx, spec) {
  const { el } = ctx;
  fieldCount += 1;
  const id = `q-${fieldCount}`;
  const errorId = `${id}-error`;
  const field = spec.multiline
    ? el("textarea", { id, class: "answer-field", rows: "2", "aria-describedby": errorId, maxlength: spec.maxlength || "2000" })
    : el("input", { id, class: "answer-field", type: "text", autocomplete: "off", "aria-describedby": errorId, maxlength: spec.maxlength || "300" });
  field.value = spec.value || "";
  if (spec.mode === "numeric" || spec.mode === "phone") field.setAttribute("inputmode", "numeric");
  const error = el("p", { id: errorId, class: "field-error" });
  const showError = (text) => {
    error.textContent = text;
    error.classList.add("error");
    error.setAttribute("role", "alert");
    field.setAttribute("aria-invalid", "true");
  };
  if (spec.errorText) showError(spec.errorText);
  field.addEventListener("input", () => { // typing again: the old complaint goes
    error.textContent = "";
    error.classList.remove("error");
    error.removeAttribute("role");
    field.removeAttribute("aria-invalid");
  });
  const next = el("button", { class: "primary", "data-action": "next", text: spec.nextLabel || "Tiếp tục" });
  const skip = spec.skipLabel ? el("button", { "data-action": "skip", text: spec.skipLabel }) : null;
  const run = async (value, button) => {
    next.disabled = true;
    if (skip) skip.disabled = true;
    button.classList.add("busy");
    try {
      await spec.onNext(value);
    } catch (err) {
      ctx.fieldError(error, err);
      field.setAttribute("aria-invalid", "true");
    } finally {
      next.disabled = false;
      if (skip) skip.disabled = false;
      button.classList.remove("busy");
    }
  };
  const submit = () => {
    if (next.disabled) return;
    const value = field.value.trim();
    if (!value && spec.emptyText) return showError(spec.emptyText);
    const bad = value && spec.check ? spec.check(value) : null;
    if (bad) return showError(bad);
    return run(value, next);
  };
  next.addEventListener("click", submit);
  if (skip) skip.addEventListener("click", () => { if (!skip.disabled) run("", skip); });
  if (!spec.multiline) field.addEventListener("keydown", (e) => { if (e.key === "Enter") submit(); });
  ctx.keyboard(field, spec.mode || "text");
  return el("div", { class: "question" },
    spec.step ? el("p", { class: "step", text: spec.step }) : null,
    el("label", { for: id, class: "question-label", text: spec.label }),
    spec.hint ? el("p", { class: "hint", text: spec.hint }) : null,
    field,
    error,
    el("div", { class: "actions" },
      next,
      skip,
      el("button", { "data-action": "back", text: "Quay lại", on: { click: () => ctx.back() } })));
}

// Digits only (spaces and dots a citizen may type are dropped), 8 to 15 of them, an
// optional leading +: what the agent's phone fields accept.
export function cleanPhone(value) {
  return value.replace(/[\s.-]/g, "");
}

export function phoneProblem(value) {
  return /^\+?[0-9]{8,15}$/.test(cleanPhone(value))
    ? null
    : "Số điện thoại chỉ gồm chữ số, từ 8 đến 15 số. Xin mời Ông/Bà nhập lại.";
}
