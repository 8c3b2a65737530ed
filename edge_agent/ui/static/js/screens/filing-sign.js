// Filing, step 6: the citizen signs on the screen; "Nộp hồ sơ" files what was reviewed
// (POST /filings with the prepared document's hash). One tap files once: the button is
// disabled while the request is out, and the agent refuses a hash it has already filed.
import { ApiError, register } from "../core.js";
import { filing, heading, messageLine, say } from "./filing-common.js";

const PAD = { width: 880, height: 280 };

register({
  name: "filing-sign",
  title: "Ký tên",
  async render(ctx) {
    const f = filing(ctx);
    if (!f.prepared) {
      ctx.go("filing-review", {}, { replace: true }); // prepare again first
      return ctx.el("div", {});
    }
    const { createSignaturePad } = await import("../signature-pad.js");
    const pad = createSignaturePad(PAD);
    const message = messageLine(ctx);
    let sending = false;
    const send = ctx.el("button", { class: "primary", "data-action": "file", text: "Nộp hồ sơ" });
    send.addEventListener("click", async () => {
      if (sending) return;
      if (pad.isEmpty()) return say(message, "Xin mời Ông/Bà ký tên vào khung trước, rồi chạm «Nộp hồ sơ».");
      sending = true;
      send.disabled = true;
      send.classList.add("busy");
      send.textContent = "Đang nộp hồ sơ";
      say(message, "Xin Ông/Bà chờ một chút.", "info");
      try {
        const result = await ctx.api.post("/filings", {
          document_sha256: f.prepared.document_sha256, signature: pad.toSignature(),
        });
        f.result = result;
        f.prepared = null;
        await ctx.go("filing-result", {}, { replace: true });
      } catch (err) {
        sending = false;
        send.disabled = false;
        send.classList.remove("busy");
        send.textContent = "Nộp hồ sơ";
        if (err instanceof ApiError && err.status === 404) {
          // the prepared filing is gone (filed already, or the session ended): check again
          f.prepared = null;
          say(message, err.messageVi);
          return;
        }
        say(message, err instanceof ApiError ? err.messageVi : "Máy đang bận, xin mời Ông/Bà thử lại.");
      }
    });
    return ctx.el("div", { class: "filing-sign" },
      heading(ctx, "Xin mời Ông/Bà ký tên", "Ký như ký trên giấy. Ký xong, chạm «Nộp hồ sơ»."),
      ctx.el("div", { class: "filing-pad" }, pad.node),
      message,
      ctx.el("div", { class: "actions" },
        ctx.el("button", { "data-action": "back", text: "Quay lại", on: { click: () => ctx.back() } }),
        send));
  },
});
