// What the filing screens share: the filing in the citizen's memory, the questions,
// and how money, dates and ID numbers are written for the citizen.
//
// The filing lives in ctx.citizen.filing (wiped with the citizen):
//   identity   the card that was read: {full_name, id_masked, source} (or null)
//   typed      true when the citizen typed their details instead of a card
//   answers    {"applicant.phone": "...", "form.so_trang": 3, ...}: what the citizen typed
//   procedure  the procedure answer (GET /catalogue/{code}) and its listing row
//   questions  the to_type entries still to ask, in order
//   prepared   the last POST /filings/prepare answer
//   result     the POST /filings answer

/** The questions of the "no card" path: what a card would have given. */
export const TYPED_QUESTIONS = [
  { field: "applicant.full_name", label: "Họ và tên", required: true, type: "text", max_len: 100 },
  { field: "applicant.id_number", label: "Số định danh cá nhân", required: true, type: "id_number" },
  { field: "applicant.date_of_birth", label: "Ngày sinh", required: true, type: "date" },
];

/** The types each applicant field is asked with (to_type gives types only for form fields). */
const APPLICANT_TYPES = {
  "applicant.full_name": "text",
  "applicant.id_number": "id_number",
  "applicant.date_of_birth": "date",
  "applicant.address": "text",
  "applicant.phone": "phone",
};

export function filing(ctx) {
  if (!ctx.citizen.filing) ctx.citizen.filing = { identity: null, typed: false, answers: {}, questions: [] };
  return ctx.citizen.filing;
}

/** A to_type entry with its type filled in for the applicant's own fields. */
export function withType(q) {
  return { ...q, type: q.type || APPLICANT_TYPES[q.field] || "text" };
}

/** Every question this filing can ask, the typed ones first. */
export function allQuestions(f) {
  return [...(f.typed ? TYPED_QUESTIONS : []), ...f.questions];
}

export function questionFor(f, field) {
  return allQuestions(f).find((q) => q.field === field) || null;
}

/** The keyboard mode for a question's type. */
export function keyboardMode(type) {
  if (type === "int" || type === "id_number") return "numeric";
  if (type === "phone") return "phone";
  return "text";
}

/** 5000 -> "5.000 đồng"; 0 -> "Miễn phí". */
export function money(amount) {
  if (!amount) return "Miễn phí";
  return String(amount).replace(/\B(?=(\d{3})+(?!\d))/g, ".") + " đồng";
}

/** "1950-01-02" -> "02/01/1950"; anything else as it is. */
export function dayText(iso) {
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(iso || "");
  return m ? `${m[3]}/${m[2]}/${m[1]}` : iso || "";
}

/** The result's due date in words: "17:00 ngày 04/12/2026", or the same day. */
export function dueText(result) {
  if (result.same_day || !result.due) return "Trả kết quả trong ngày hôm nay";
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}:\d{2})/.exec(result.due);
  return m ? `${m[4]} ngày ${m[3]}/${m[2]}/${m[1]}` : result.due;
}

/** The last four digits only, as the agent masks them. */
export function maskId(number) {
  const s = String(number || "");
  return s.length <= 4 ? s : "*".repeat(s.length - 4) + s.slice(-4);
}

/** A value as the citizen reads it on the review page. */
export function answerText(q, value) {
  if (value === undefined || value === null || value === "") return "(không ghi)";
  if (q && q.type === "bool") return value ? "Có" : "Không";
  if (q && q.type === "date") return dayText(value);
  if (q && q.field === "applicant.id_number") return maskId(value);
  return String(value);
}

/** The body of POST /filings/prepare from what the citizen gave. */
export function prepareBody(f) {
  const form = {};
  for (const [field, value] of Object.entries(f.answers)) {
    if (!field.startsWith("form.")) continue;
    if (value === undefined || value === null || value === "") continue;
    form[field.slice(5)] = value;
  }
  const body = { procedure: f.procedure.code, form };
  const phone = f.answers["applicant.phone"];
  const address = f.answers["applicant.address"];
  if (phone) body.phone = phone;
  if (address) body.address = address;
  if (f.typed) {
    body.applicant = {
      full_name: f.answers["applicant.full_name"] || "",
      id_number: f.answers["applicant.id_number"] || "",
    };
    if (f.answers["applicant.date_of_birth"]) body.applicant.date_of_birth = f.answers["applicant.date_of_birth"];
  }
  return body;
}

/** The heading and the "what to do" line every filing screen starts with. */
export function heading(ctx, title, lead) {
  return [ctx.el("h2", { text: title }), lead ? ctx.el("p", { class: "filing-lead", text: lead }) : null];
}

/** A status line for messages (card errors, refusals): empty until said. */
export function messageLine(ctx) {
  return ctx.el("p", { class: "filing-message", "aria-live": "assertive" });
}

export function say(node, text, kind = "error") {
  node.textContent = text;
  node.className = "filing-message " + kind;
  if (kind === "error") node.setAttribute("role", "alert");
  else node.removeAttribute("role");
}

/** A dossier code, large, that wraps only between the agency and the date
 *  ("000.00.14.H56-" / "261202-1001"), never inside a part. */
export function codeNode(ctx, code) {
  const cut = code.indexOf("-");
  const parts = cut > 0 ? [code.slice(0, cut + 1), code.slice(cut + 1)] : [code];
  return ctx.el("p", { class: "big-code filing-code", "data-fact": "code" },
    parts.map((part) => ctx.el("span", { class: "code-part", text: part })));
}
