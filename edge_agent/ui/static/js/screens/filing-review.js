// Filing, step 5: everything to be filed on one page, each line with "Sửa". The agent checks
// it (POST /filings/prepare); a refused field sends the citizen back to that question.
import { ApiError, register } from "../core.js";
import { answerText, dayText, filing, heading, messageLine, money, prepareBody, questionFor, say } from "./filing-common.js";

function line(ctx, label, value, edit) {
  return ctx.el("div", { class: "filing-review-line", "data-field": edit ? edit.field : undefined },
    ctx.el("dt", { text: label }),
    ctx.el("dd", {},
      ctx.el("span", { class: "filing-review-value", text: value }),
      edit ? ctx.el("button", {
        class: "filing-edit", "data-action": "edit", "aria-label": `Sửa ${label}`, text: "Sửa",
        on: { click: () => ctx.go("filing-question", { field: edit.field, mode: "edit" }) },
      }) : null));
}

register({
  name: "filing-review",
  title: "Kiểm tra hồ sơ",
  async render(ctx) {
    const f = filing(ctx);
    let prepared;
    try {
      prepared = await ctx.api.post("/filings/prepare", prepareBody(f));
    } catch (err) {
      if (err instanceof ApiError && err.status === 422 && questionFor(f, err.field)) {
        // "a field is wrong": back to that question, the agent's words shown there
        ctx.go("filing-question", { field: err.field, mode: "fix", error: err.messageVi }, { replace: true });
        return ctx.el("div", {});
      }
      throw err;
    }
    f.prepared = prepared;
    const a = prepared.applicant;
    const edit = (field) => questionFor(f, field); // what the card gave has no "Sửa"
    const fromCard = f.identity ? " (từ thẻ căn cước)" : "";
    const who = [
      line(ctx, "Họ và tên", a.full_name + fromCard, edit("applicant.full_name")),
      line(ctx, "Số định danh cá nhân", a.id_masked + fromCard, edit("applicant.id_number")),
    ];
    if (a.date_of_birth) who.push(line(ctx, "Ngày sinh", dayText(a.date_of_birth), edit("applicant.date_of_birth")));
    if (a.address || questionFor(f, "applicant.address")) {
      who.push(line(ctx, "Địa chỉ", a.address || "(không ghi)", edit("applicant.address")));
    }
    who.push(line(ctx, "Số điện thoại", a.phone || "(không ghi)", edit("applicant.phone")));
    const form = f.questions.filter((q) => q.field.startsWith("form.")).map((q) =>
      line(ctx, q.label, answerText(q, prepared.form[q.field.slice(5)]), q));
    const pages = f.capturedPages
      ? ctx.el("dl", { class: "filing-review-list" }, ctx.el("div", { class: "filing-review-line", "data-field": "papers" },
        ctx.el("dt", { text: "Ảnh giấy tờ" }),
        ctx.el("dd", {}, ctx.el("span", { class: "filing-review-value", text: `${f.capturedPages} trang` }),
          ctx.el("button", { class: "filing-edit", "aria-label": "Sửa ảnh giấy tờ", text: "Sửa", on: { click: () => ctx.go("filing-papers") } }))))
      : null;
    const message = messageLine(ctx);
    return ctx.el("div", { class: "filing-review" },
      heading(ctx, "Xin mời Ông/Bà kiểm tra lại", "Nếu có dòng chưa đúng, chạm «Sửa» ở dòng đó. Nếu đúng hết, chạm «Đúng, ký tên»."),
      ctx.el("h3", { text: "Thủ tục" }),
      ctx.el("p", { class: "filing-review-procedure", text: prepared.procedure_name }),
      ctx.el("h3", { text: "Người nộp hồ sơ" }),
      ctx.el("dl", { class: "filing-review-list" }, who),
      form.length ? [ctx.el("h3", { text: "Thông tin đã khai" }), ctx.el("dl", { class: "filing-review-list" }, form)] : null,
      pages,
      ctx.el("p", { class: "filing-review-fee", "data-fact": "fee" }, "Lệ phí: ",
        ctx.el("strong", { text: money(prepared.fee && prepared.fee.amount_vnd) })),
      message,
      ctx.el("div", { class: "actions" },
        ctx.el("button", { "data-action": "back", text: "Quay lại", on: { click: () => ctx.back() } }),
        ctx.el("button", {
          class: "primary", "data-action": "sign", text: "Đúng, ký tên",
          on: {
            click: () => {
              if (!f.prepared) return say(message, "Xin mời Ông/Bà chạm «Quay lại» rồi kiểm tra lại.");
              ctx.go("filing-sign");
            },
          },
        })));
  },
});
