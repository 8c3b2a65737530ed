// Asking for a home visit (for the elderly, the disabled, the seriously ill): why, who,
// which phone, where; then POST /support/home-visit, the lookup code and what happens
// next. One question per screen; the draft lives in ctx.citizen.homeVisit (wiped on idle).
import { register } from "../core.js";
import { ask, cleanPhone, phoneProblem } from "./question-step.js";

export const REASONS = [
  ["nguoi-cao-tuoi", "Người cao tuổi"],
  ["khuyet-tat", "Người khuyết tật"],
  ["benh-nang", "Người bệnh nặng"],
  ["khac", "Lý do khác"],
];
// which question a refusal from the agent belongs to (its `field`, last part)
const STEP_OF_FIELD = { full_name: "home-visit-name", phone: "home-visit-phone", address: "home-visit-address", reason: "home-visit-other", message: "home-visit-other" };

function draft(ctx) {
  if (!ctx.citizen.homeVisit) ctx.citizen.homeVisit = {};
  return ctx.citizen.homeVisit;
}

function missing(ctx) {
  return ctx.el("p", { class: "error", role: "alert", text: "Chưa có lý do. Xin mời Ông/Bà bắt đầu lại từ trang đầu." });
}

register({
  name: "home-visit",
  title: "Hỗ trợ tại nhà",
  render(ctx) {
    const { el } = ctx;
    const choose = (code, label) => {
      ctx.citizen.homeVisit = { reasonCode: code, reason: code === "khac" ? "" : label };
      ctx.go(code === "khac" ? "home-visit-other" : "home-visit-name");
    };
    return el("div", { class: "home-visit" },
      el("p", { class: "lead", text: "Cán bộ có thể đến tận nhà để giúp làm thủ tục. Ông/Bà xin hỗ trợ cho ai?" }),
      el("div", { class: "choices" },
        REASONS.map(([code, label]) => el("button", { class: "choice", "data-reason": code, text: label, on: { click: () => choose(code, label) } }))),
      el("div", { class: "actions" },
        el("button", { "data-action": "back", text: "Quay lại", on: { click: () => ctx.back() } })));
  },
});

register({
  name: "home-visit-other",
  title: "Lý do",
  render(ctx, params) {
    const d = draft(ctx);
    if (!d.reasonCode) return missing(ctx);
    return ask(ctx, {
      label: "Xin Ông/Bà cho biết lý do cần cán bộ đến nhà",
      mode: "text",
      multiline: true,
      maxlength: "400",
      value: d.reason,
      errorText: params.error,
      emptyText: "Ông/Bà chưa viết lý do. Xin mời viết vào ô trên.",
      onNext: (v) => { d.reason = v; return ctx.go("home-visit-name"); },
    });
  },
});

register({
  name: "home-visit-name",
  title: "Họ và tên",
  async render(ctx, params) {
    const d = draft(ctx);
    if (!d.reasonCode) return missing(ctx);
    if (d.full_name === undefined) {
      // a card read earlier gives the name; the citizen may change it (a relative asking)
      try {
        const s = await ctx.api.get("/session");
        d.full_name = (s.active && s.full_name) || "";
      } catch (e) {
        d.full_name = "";
      }
    }
    return ask(ctx, {
      step: "Bước 1 / 3",
      label: "Họ và tên người cần hỗ trợ",
      mode: "text",
      maxlength: "200",
      value: d.full_name,
      errorText: params.error,
      emptyText: "Ông/Bà chưa nhập họ và tên người cần hỗ trợ.",
      onNext: (v) => { d.full_name = v; return ctx.go("home-visit-phone"); },
    });
  },
});

register({
  name: "home-visit-phone",
  title: "Số điện thoại",
  render(ctx, params) {
    const d = draft(ctx);
    if (!d.reasonCode) return missing(ctx);
    return ask(ctx, {
      step: "Bước 2 / 3",
      label: "Số điện thoại để cán bộ gọi hẹn lịch",
      mode: "phone",
      maxlength: "20",
      value: d.phone,
      errorText: params.error,
      emptyText: "Ông/Bà chưa nhập số điện thoại. Cán bộ cần số này để gọi hẹn lịch.",
      check: phoneProblem,
      onNext: (v) => { d.phone = cleanPhone(v); return ctx.go("home-visit-address"); },
    });
  },
});

register({
  name: "home-visit-address",
  title: "Địa chỉ",
  render(ctx, params) {
    const d = draft(ctx);
    if (!d.reasonCode) return missing(ctx);
    return ask(ctx, {
      step: "Bước 3 / 3",
      label: "Địa chỉ nhà (số nhà, đường, khóm/ấp)",
      mode: "text",
      multiline: true,
      maxlength: "300",
      value: d.address,
      errorText: params.error,
      emptyText: "Ông/Bà chưa nhập địa chỉ nhà.",
      nextLabel: "Gửi yêu cầu",
      onNext: async (v) => {
        d.address = v;
        const body = { full_name: d.full_name, phone: d.phone, address: d.address, reason: d.reason };
        let sent;
        try {
          sent = await ctx.api.post("/support/home-visit", body);
        } catch (err) {
          const name = (err.field || "").split(".").pop();
          const step = STEP_OF_FIELD[name];
          if (step && step !== "home-visit-address" && !(step === "home-visit-other" && d.reasonCode !== "khac")) {
            return ctx.go(step, { error: err.messageVi });
          }
          throw err; // shown under this question
        }
        const phone = d.phone;
        ctx.citizen.homeVisit = {};
        return ctx.go("home-visit-sent", { sent, phone }, { replace: true });
      },
    });
  },
});

register({
  name: "home-visit-sent",
  title: "Đã gửi yêu cầu",
  render(ctx, params) {
    const { el } = ctx;
    const sent = params.sent || {};
    return el("div", { class: "sent" },
      el("p", { class: "lead", text: "Đã gửi yêu cầu hỗ trợ tại nhà. Mã yêu cầu là:" }),
      el("p", { class: "big-code lookup-code", "data-code": sent.lookup_code || "", text: sent.lookup_code || "" }),
      el("p", { class: "lead", text: `Cán bộ sẽ gọi điện cho Ông/Bà theo số ${params.phone || ""} để hẹn ngày giờ đến nhà. Ông/Bà không cần làm gì thêm.` }),
      el("p", { text: "Khi gọi cho cán bộ, xin đọc mã yêu cầu ở trên." }),
      el("div", { class: "actions" },
        el("button", { class: "primary", "data-action": "home", text: "Về trang đầu", on: { click: () => ctx.home() } })));
  },
});
