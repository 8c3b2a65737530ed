// Filing, step 7: the dossier code, the due date, the fee and its VietQR code; then whether the
// slip printed, or the printer is out (the code extra large, staff called, "In lại"), or the
// kiosk is offline (saved, will be sent). The agent is told once the code is on screen.
import { register } from "../core.js";
import { codeNode, dueText, filing, messageLine, money, say } from "./filing-common.js";

export const OFFLINE_VI = "Hồ sơ đã được lưu trên máy và sẽ tự gửi đi khi có mạng. Ông/Bà không cần làm gì thêm.";

function paymentNode(ctx, payment) {
  if (!payment) return null;
  return ctx.el("section", { class: "filing-payment", "aria-labelledby": "filing-payment-title" },
    ctx.el("h3", { id: "filing-payment-title", text: "Nộp lệ phí bằng mã QR" }),
    ctx.el("img", { class: "filing-qr", src: payment.qr_svg, alt: `Mã VietQR để nộp lệ phí ${money(payment.amount_vnd)}`, width: "240", height: "240" }),
    ctx.el("p", { class: "filing-payment-amount", "data-fact": "amount", text: `Số tiền: ${money(payment.amount_vnd)}` }),
    ctx.el("p", { text: "Quét bằng ứng dụng ngân hàng trên điện thoại. Hoặc nộp tại quầy Một cửa." }));
}

function printedNode(ctx, r) {
  const box = ctx.el("div", { class: "filing-print", "data-state": r.printed ? "printed" : "not-printed" });
  const message = messageLine(ctx);
  const show = (printed, text) => {
    box.dataset.state = printed ? "printed" : "not-printed";
    box.replaceChildren();
    if (printed) {
      box.append(ctx.el("p", { class: "filing-ok", text: "Xin mời Ông/Bà nhận phiếu hẹn ở khe máy in, phía dưới màn hình." }));
      document.body.classList.remove("filing-printer-out");
      return;
    }
    document.body.classList.add("filing-printer-out");
    box.append(
      ctx.el("p", { class: "filing-warn", text: "Máy in chưa in được phiếu hẹn. Xin Ông/Bà ghi lại mã hồ sơ ở trên, hoặc chụp ảnh màn hình." }),
      r.staff_called ? ctx.el("p", { class: "filing-warn", "data-fact": "staff-called", text: "Cán bộ đang đến giúp Ông/Bà. Xin Ông/Bà chờ một chút." }) : null,
      text ? ctx.el("p", { class: "filing-small", text }) : null,
      message,
      ctx.el("div", { class: "actions" }, ctx.el("button", {
        "data-action": "reprint", text: "In lại",
        on: {
          click: async (e) => {
            const button = e.currentTarget;
            button.disabled = true;
            try {
              const again = await ctx.api.post(`/filings/${encodeURIComponent(r.code)}/reprint`);
              if (again.printed) show(true);
              else say(message, "Máy in vẫn chưa in được. Cán bộ sẽ in phiếu hẹn cho Ông/Bà.");
            } catch (err) {
              say(message, err.messageVi || "Máy in vẫn chưa in được.");
            } finally {
              button.disabled = false;
            }
          },
        },
      })));
  };
  show(r.printed);
  ctx.on("printer", (p) => {
    if (box.dataset.state === "not-printed" && p && p.state === "ok") {
      say(message, "Máy in đã sẵn sàng. Xin mời Ông/Bà chạm «In lại».", "info");
    }
  });
  return box;
}

register({
  name: "filing-result",
  title: "Đã nộp hồ sơ",
  async render(ctx) {
    const f = filing(ctx);
    const r = f.result;
    if (!r) throw new Error("filing-result: nothing was filed");
    const offline = ctx.el("p", { class: "filing-offline", "data-fact": "offline", hidden: true, text: OFFLINE_VI });
    const setOnline = (online) => { offline.hidden = online !== false; };
    ctx.on("sync", (s) => { if (s && "online" in s) setOnline(s.online); });
    try { setOnline((await ctx.api.get("/health")).online); } catch (e) { /* the sync event will say */ }
    document.addEventListener("aps:screen", async (e) => {
      if (e.detail.name !== "filing-result" || f.shown === r.code) return;
      f.shown = r.code; // once: the agent answers 404 to a second confirmation
      try { await ctx.api.post(`/filings/${encodeURIComponent(r.code)}/shown`); } catch (err) { console.warn("shown", err); }
    }, { once: true });
    const payment = paymentNode(ctx, r.payment);
    return ctx.el("div", { class: "filing-result" },
      ctx.el("h2", { text: "Hồ sơ của Ông/Bà đã được nộp" }),
      ctx.el("p", { class: "filing-code-label", text: "Mã hồ sơ, dùng để tra cứu kết quả:" }),
      codeNode(ctx, r.code),
      ctx.el("div", { class: "filing-result-body" + (payment ? " with-payment" : "") },
        ctx.el("div", { class: "filing-result-main" },
          ctx.el("dl", { class: "filing-facts" },
            ctx.el("dt", { text: "Thủ tục" }), ctx.el("dd", { text: r.procedure_name }),
            ctx.el("dt", { text: "Hẹn trả kết quả" }), ctx.el("dd", { "data-fact": "due", text: dueText(r) }),
            ctx.el("dt", { text: "Lệ phí" }), ctx.el("dd", { "data-fact": "fee", text: money(r.fee_vnd) })),
          offline,
          printedNode(ctx, r),
          ctx.el("div", { class: "actions" },
            ctx.el("button", { class: "primary", "data-action": "next", text: "Tiếp tục", on: { click: () => ctx.go("filing-rating", {}, { replace: true }) } }))),
        payment));
  },
  leave() {
    document.body.classList.remove("filing-printer-out");
  },
});
