// Questions, feedback and petitions (câu hỏi, phản ánh, kiến nghị): choose which, type the
// message, optionally a phone number, send (POST /feedback); the lookup code very large.
// "Xem câu trả lời": type the lookup code, GET /feedback/{code}: the answer, or not yet.
// The draft lives in ctx.citizen.feedback (the idle wipe clears it).
import { register } from "../core.js";
import { ask, cleanPhone, phoneProblem } from "./question-step.js";

export const CATEGORIES = {
  question: { label: "Đặt câu hỏi", hint: "Hỏi về thủ tục, giấy tờ, lệ phí", noun: "câu hỏi", ask: "Ông/Bà muốn hỏi điều gì?" },
  feedback: { label: "Phản ánh", hint: "Báo một việc chưa đúng, chưa tốt", noun: "phản ánh", ask: "Ông/Bà muốn phản ánh việc gì?" },
  petition: { label: "Kiến nghị", hint: "Đề xuất cách làm tốt hơn", noun: "kiến nghị", ask: "Ông/Bà kiến nghị điều gì?" },
};

function draft(ctx) {
  if (!ctx.citizen.feedback) ctx.citizen.feedback = {};
  return ctx.citizen.feedback;
}

register({
  name: "feedback",
  title: "Câu hỏi, phản ánh, kiến nghị",
  render(ctx) {
    const { el } = ctx;
    return el("div", { class: "feedback" },
      el("p", { class: "lead", text: "Ông/Bà muốn gửi gì? Xin mời chạm vào một ô." }),
      el("div", { class: "tiles" },
        Object.entries(CATEGORIES).map(([name, c]) => el("button", {
          class: "tile", "data-category": name,
          on: { click: () => { ctx.citizen.feedback = { category: name }; ctx.go("feedback-message"); } },
        }, c.label, el("small", { text: c.hint }))),
        el("button", { class: "tile", "data-go": "feedback-answer", on: { click: () => ctx.go("feedback-answer") } },
          "Xem câu trả lời", el("small", { text: "Nhập mã tra cứu Ông/Bà đã nhận" }))),
      el("div", { class: "actions" },
        el("button", { "data-action": "back", text: "Quay lại", on: { click: () => ctx.back() } })));
  },
});

register({
  name: "feedback-message",
  title: "Nội dung",
  render(ctx, params) {
    const d = draft(ctx);
    const c = CATEGORIES[d.category] || CATEGORIES.question;
    return ask(ctx, {
      step: "Bước 1 / 2",
      label: c.ask,
      hint: "Xin mời Ông/Bà viết ngắn gọn, rõ ràng.",
      mode: "text",
      multiline: true,
      maxlength: "2000",
      value: d.message,
      errorText: params.error,
      emptyText: `Ông/Bà chưa viết nội dung ${c.noun}. Xin mời viết vào ô trên.`,
      onNext: (v) => { d.message = v; return ctx.go("feedback-contact"); },
    });
  },
});

async function send(ctx, d) {
  const body = { category: d.category, message: d.message };
  if (d.contact) body.contact = d.contact;
  try {
    const sent = await ctx.api.post("/feedback", body);
    ctx.citizen.feedback = {}; // sent: nothing to keep but what the next screen shows
    return ctx.go("feedback-sent", { sent, category: d.category }, { replace: true });
  } catch (err) {
    // a refusal naming the message goes back to that question
    if (err.field && err.field.endsWith("message")) return ctx.go("feedback-message", { error: err.messageVi }, { replace: true });
    throw err; // shown under the phone question
  }
}

register({
  name: "feedback-contact",
  title: "Số điện thoại",
  render(ctx) {
    const d = draft(ctx);
    if (!d.category || !d.message) return ctx.el("p", { class: "error", role: "alert", text: "Chưa có nội dung. Xin mời Ông/Bà bắt đầu lại." });
    return ask(ctx, {
      step: "Bước 2 / 2",
      label: "Số điện thoại để cán bộ gọi lại cho Ông/Bà",
      hint: "Không bắt buộc. Nếu không muốn để số, chạm vào «Gửi, không để số điện thoại».",
      mode: "phone",
      maxlength: "20",
      value: d.contact,
      nextLabel: "Gửi",
      check: phoneProblem,
      skipLabel: "Gửi, không để số điện thoại",
      onNext: (v) => { d.contact = v ? cleanPhone(v) : ""; return send(ctx, d); },
    });
  },
});

register({
  name: "feedback-sent",
  title: "Đã gửi",
  render(ctx, params) {
    const { el } = ctx;
    const sent = params.sent || {};
    const c = CATEGORIES[params.category] || CATEGORIES.question;
    return el("div", { class: "sent" },
      el("p", { class: "lead", text: `Đã gửi ${c.noun} của Ông/Bà. Mã tra cứu là:` }),
      el("p", { class: "big-code lookup-code", "data-code": sent.lookup_code || "", text: sent.lookup_code || "" }),
      el("p", { class: "lead", text: "Ông/Bà dùng mã này để xem câu trả lời, tại máy này hoặc bất kỳ máy nào của Bộ phận Một cửa. Xin mời ghi lại hoặc chụp ảnh mã này." }),
      el("div", { class: "actions" },
        el("button", { class: "primary", "data-action": "home", text: "Về trang đầu", on: { click: () => ctx.home() } })));
  },
});

function answerView(ctx, a) {
  const { el } = ctx;
  if (!a.answered) {
    return el("div", { class: "answer", "data-answered": "false" },
      el("p", { class: "status-state", text: "Chưa có câu trả lời." }),
      el("p", { class: "lead", text: `Cán bộ chưa trả lời mã ${a.lookup_code}. Xin Ông/Bà quay lại sau.` }));
  }
  return el("div", { class: "answer", "data-answered": "true" },
    el("p", { class: "lead", text: `Câu trả lời cho mã ${a.lookup_code}:` }),
    el("blockquote", { class: "staff-reply", text: a.answer }),
    a.answered_by ? el("p", { class: "note", text: `Người trả lời: ${a.answered_by}` }) : null);
}

// while "not yet" is shown the agent is asked again this often (its own cache: cheap)
const REFRESH_MS = 15000;
let answerTimer = null;

register({
  name: "feedback-answer",
  title: "Xem câu trả lời",
  leave() {
    clearInterval(answerTimer);
    answerTimer = null;
  },
  render(ctx, params) {
    const { el } = ctx;
    const shown = el("div", { class: "answer-box", "aria-live": "polite" });
    let asked = null; // the lookup code whose answer is shown
    const fetchAnswer = (code) => ctx.api.get(`/feedback/${encodeURIComponent(code)}`);
    const lookup = async (code) => {
      const a = await fetchAnswer(code.toUpperCase());
      asked = a.lookup_code;
      shown.replaceChildren(answerView(ctx, a));
    };
    // the answer arrives while the citizen waits: show it (the event, or a slow
    // refresh in case the event stream was reconnecting when it came)
    const again = async () => {
      try { shown.replaceChildren(answerView(ctx, await fetchAnswer(asked))); } catch (e) { /* keep what is shown */ }
    };
    ctx.on("downlink", (d) => { if (asked && d && d.kind === "answer" && d.key === asked) again(); });
    clearInterval(answerTimer);
    answerTimer = setInterval(() => {
      if (asked && shown.querySelector("[data-answered=false]")) again();
    }, REFRESH_MS);
    const node = ask(ctx, {
      label: "Mã tra cứu của Ông/Bà",
      hint: "Mã có dạng HT-261201-1004, in trên màn hình khi Ông/Bà gửi.",
      mode: "plain",
      maxlength: "40",
      value: params.code,
      nextLabel: "Xem câu trả lời",
      emptyText: "Ông/Bà chưa nhập mã tra cứu.",
      onNext: lookup,
    });
    node.append(shown);
    return node;
  },
});
