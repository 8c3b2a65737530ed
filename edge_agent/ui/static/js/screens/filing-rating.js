// Filing, step 8: how satisfied the citizen is (three levels, as at the counters), an optional
// reason after "Không hài lòng", thanks, then "Kết thúc" wipes everything of the citizen.
import { register, wipe } from "../core.js";
import { filing, heading, messageLine, say } from "./filing-common.js";

const LEVELS = [
  ["rat_hai_long", "Rất hài lòng", "filing-rate-great"],
  ["hai_long", "Hài lòng", "filing-rate-good"],
  ["khong_hai_long", "Không hài lòng", "filing-rate-bad"],
];

async function rate(ctx, level, reason, message) {
  const f = filing(ctx);
  const body = { level };
  if (f.result) body.dossier_code = f.result.code;
  if (reason) body.reason = reason;
  try {
    await ctx.api.post("/ratings", body);
  } catch (err) {
    say(message, err.messageVi);
    return;
  }
  f.rated = true;
  ctx.go("filing-thanks", {}, { replace: true });
}

register({
  name: "filing-rating",
  title: "Đánh giá",
  render(ctx) {
    const message = messageLine(ctx);
    return ctx.el("div", { class: "filing-rating" },
      heading(ctx, "Ông/Bà có hài lòng không?", "Xin mời Ông/Bà chạm vào một ô. Ý kiến của Ông/Bà giúp phường phục vụ tốt hơn."),
      ctx.el("div", { class: "filing-rates" }, LEVELS.map(([level, text, cls]) => ctx.el("button", {
        class: `filing-rate ${cls}`, "data-level": level, text,
        on: {
          click: () => (level === "khong_hai_long"
            ? ctx.go("filing-reason", {}, { replace: true })
            : rate(ctx, level, null, message)),
        },
      }))),
      message,
      ctx.el("div", { class: "actions" },
        ctx.el("button", { "data-action": "skip", text: "Bỏ qua", on: { click: () => ctx.go("filing-thanks", {}, { replace: true }) } })));
  },
});

register({
  name: "filing-reason",
  title: "Đánh giá",
  render(ctx) {
    const message = messageLine(ctx);
    const input = ctx.el("textarea", { id: "filing-reason-text", rows: "3", maxlength: "500" });
    ctx.keyboard(input, "text");
    return ctx.el("div", { class: "filing-rating" },
      heading(ctx, "Ông/Bà chưa hài lòng điều gì?", "Ông/Bà có thể gõ vài chữ, hoặc chạm «Gửi» luôn."),
      ctx.el("label", { class: "filing-question-label", for: "filing-reason-text", text: "Điều Ông/Bà chưa hài lòng (không bắt buộc)" }),
      input, message,
      ctx.el("div", { class: "actions" },
        ctx.el("button", {
          class: "primary", "data-action": "send", text: "Gửi",
          on: { click: () => rate(ctx, "khong_hai_long", input.value.trim(), message) },
        })));
  },
});

register({
  name: "filing-thanks",
  title: "Cảm ơn Ông/Bà",
  render(ctx) {
    const f = filing(ctx);
    return ctx.el("div", { class: "filing-thanks" },
      heading(ctx, f.rated ? "Cảm ơn Ông/Bà đã đánh giá" : "Cảm ơn Ông/Bà",
        "Khi xong, Ông/Bà chạm «Kết thúc» để xoá thông tin của mình khỏi màn hình."),
      f.result ? ctx.el("p", {}, "Mã hồ sơ của Ông/Bà: ", ctx.el("strong", { class: "filing-code-small", text: f.result.code })) : null,
      ctx.el("div", { class: "actions" },
        ctx.el("button", { class: "primary", "data-action": "end", text: "Kết thúc", on: { click: () => wipe("ended") } })));
  },
});
