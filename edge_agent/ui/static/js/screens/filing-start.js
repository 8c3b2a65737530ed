// Filing, step 1: the citizen puts their ID card (CCCD) on the scanner, or types their details.
import { register } from "../core.js";
import { TYPED_QUESTIONS, filing, heading, messageLine, say } from "./filing-common.js";

function whoNode(ctx, who) {
  return ctx.el("dl", { class: "filing-who" },
    ctx.el("dt", { text: "Họ và tên" }), ctx.el("dd", { class: "filing-who-name", text: who.full_name || "" }),
    ctx.el("dt", { text: "Số định danh cá nhân" }), ctx.el("dd", { text: who.id_masked || "" }));
}

function readNode(ctx, who) {
  return ctx.el("div", { class: "filing-start filing-read" },
    heading(ctx, "Máy đã đọc thẻ căn cước", "Xin mời Ông/Bà xem tên và số thẻ dưới đây có đúng không."),
    whoNode(ctx, who),
    ctx.el("div", { class: "actions" },
      ctx.el("button", {
        class: "primary", "data-action": "card-ok", text: "Đúng, tiếp tục",
        on: { click: () => ctx.go("filing-choose") },
      }),
      ctx.el("button", {
        "data-action": "card-wrong", text: "Không đúng, quét lại",
        on: {
          click: async () => {
            filing(ctx).identity = null;
            try { await ctx.api.del("/session"); } catch (e) { /* shown again below anyway */ }
            ctx.go("filing-start", {}, { replace: true });
          },
        },
      })));
}

register({
  name: "filing-start",
  title: "Nộp hồ sơ",
  async render(ctx) {
    const f = filing(ctx);
    let session = null;
    try { session = await ctx.api.get("/session"); } catch (e) { /* no session: ask for the card */ }
    const holder = ctx.el("div", { class: "filing-start-holder" });
    const message = messageLine(ctx);

    const showRead = (who) => {
      f.identity = { full_name: who.full_name, id_masked: who.id_masked, source: who.source };
      f.typed = false;
      for (const q of TYPED_QUESTIONS) delete f.answers[q.field];
      holder.replaceChildren(readNode(ctx, f.identity));
    };
    ctx.on("identity", (who) => { if (who && who.full_name) showRead(who); });
    ctx.on("card_error", (e) => say(message, (e && e.message_vi) || "Máy chưa đọc được thẻ. Xin mời Ông/Bà đặt lại thẻ."));
    ctx.on("scan_rejected", (e) => say(message, (e && e.message_vi) || "Máy chưa đọc được mã. Xin mời Ông/Bà đặt lại thẻ."));
    ctx.on("error", (e) => { if (e && e.message_vi) say(message, e.message_vi); });

    const ask = ctx.el("div", { class: "filing-start" },
      heading(ctx, "Xin mời đặt căn cước công dân vào máy quét",
        "Đặt mặt thẻ có mã QR lên ô kính của máy quét, phía dưới màn hình. Giữ yên thẻ một chút cho máy đọc."),
      ctx.el("img", {
        class: "filing-scan-picture", src: "/static/img/filing-scan-card.svg",
        alt: "Hình vẽ: thẻ căn cước đặt úp mặt có mã QR lên máy quét", width: "360", height: "240",
      }),
      message,
      ctx.el("div", { class: "actions" },
        ctx.el("button", {
          "data-action": "no-card", text: "Tôi không mang thẻ: nhập thông tin",
          on: {
            click: () => {
              f.identity = null;
              f.typed = true;
              ctx.go("filing-question", { field: TYPED_QUESTIONS[0].field });
            },
          },
        })));
    holder.append(ask);
    if (session && session.active && session.full_name) showRead(session);
    return holder;
  },
});
