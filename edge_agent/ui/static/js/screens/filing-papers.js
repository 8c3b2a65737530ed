// Filing, step 4: photos of the paper originals on the document camera, when the procedure
// asks for originals and the kiosk has a camera. Take, look, retake or use; skipping is fine.
// The agent keeps the accepted pages and files them with the dossier.
import { register } from "../core.js";
import { filing, heading, messageLine, say } from "./filing-common.js";

/** Whether step 4 applies: originals asked for and a camera there (GET /capture). */
export async function wantsPapers(ctx, f) {
  const originals = (f.procedure.papers || []).some((p) => p.kind === "original");
  if (!originals) return false;
  try {
    if (f.captureDevice === undefined) f.captureDevice = Boolean((await ctx.api.get("/kiosk")).capture);
    if (!f.captureDevice) return false;
    const state = await ctx.api.get("/capture");
    f.capturedPages = (state.pages || []).length;
    return Boolean(state.available);
  } catch (e) {
    return false; // no camera route: the papers are checked at the counter
  }
}

/** After the last question: the papers step if it applies, else the review. */
export async function afterQuestions(ctx, f) {
  if (await wantsPapers(ctx, f)) return ctx.go("filing-papers");
  return ctx.go("filing-review");
}

register({
  name: "filing-papers",
  title: "Chụp giấy tờ",
  async render(ctx) {
    const f = filing(ctx);
    const holder = ctx.el("div", { class: "filing-papers-step" });
    const message = messageLine(ctx);
    let state = { pages: [], pending: null };
    try { state = await ctx.api.get("/capture"); } catch (e) { /* shown as no pages */ }

    const fail = (err) => say(message, err.messageVi || "Máy chụp chưa chụp được. Xin mời Ông/Bà thử lại.");
    const busy = (button, text) => { button.disabled = true; button.classList.add("busy"); button.textContent = text; };

    const listView = () => {
      const n = (state.pages || []).length;
      f.capturedPages = n;
      const originals = (f.procedure.papers || []).filter((p) => p.kind === "original");
      const take = ctx.el("button", { class: "primary", "data-action": "capture", text: n ? "Chụp thêm một trang" : "Chụp giấy tờ" });
      take.addEventListener("click", async () => {
        busy(take, "Đang chụp");
        try {
          state.pending = await ctx.api.post("/capture");
          previewView();
        } catch (err) {
          take.disabled = false; take.classList.remove("busy"); take.textContent = "Chụp giấy tờ";
          fail(err);
        }
      });
      holder.replaceChildren(
        ...heading(ctx, "Chụp giấy tờ bản chính", "Đặt từng trang giấy tờ lên bàn chụp, mặt chữ hướng lên, rồi chạm «Chụp giấy tờ». Ông/Bà cũng có thể bỏ qua bước này."),
        originals.length ? ctx.el("ul", { class: "filing-papers" }, originals.map((p) => ctx.el("li", { text: p.name }))) : null,
        ctx.el("p", { class: "filing-papers-count", "data-fact": "pages", text: n ? `Đã chụp ${n} trang.` : "Chưa chụp trang nào." }),
        message,
        ctx.el("div", { class: "actions" },
          ctx.el("button", { "data-action": "back", text: "Quay lại", on: { click: () => ctx.back() } }),
          take,
          ctx.el("button", {
            "data-action": n ? "next" : "skip", text: n ? "Tiếp tục" : "Bỏ qua, không chụp",
            on: { click: () => ctx.go("filing-review") },
          })));
    };

    const previewView = () => {
      const p = state.pending;
      const use = ctx.el("button", { class: "primary", "data-action": "accept", text: "Dùng ảnh này" });
      const again = ctx.el("button", { "data-action": "retake", text: "Chụp lại" });
      use.addEventListener("click", async () => {
        busy(use, "Đang lưu");
        try {
          await ctx.api.post(`/capture/${encodeURIComponent(p.id)}/accept`);
          state = await ctx.api.get("/capture");
          listView();
        } catch (err) { use.disabled = false; use.classList.remove("busy"); use.textContent = "Dùng ảnh này"; fail(err); }
      });
      again.addEventListener("click", async () => {
        busy(again, "Đang chụp");
        try {
          state.pending = await ctx.api.post(`/capture/${encodeURIComponent(p.id)}/retake`);
          previewView();
        } catch (err) { again.disabled = false; again.classList.remove("busy"); again.textContent = "Chụp lại"; fail(err); }
      });
      holder.replaceChildren(
        ...heading(ctx, "Ảnh có rõ không?", "Nếu đọc được chữ trên ảnh, chạm «Dùng ảnh này». Nếu mờ hoặc lệch, chạm «Chụp lại»."),
        ctx.el("img", { class: "filing-page-preview", src: p.url, alt: "Ảnh giấy tờ vừa chụp", width: String(p.width || 640), height: String(p.height || 480) }),
        message,
        ctx.el("div", { class: "actions" }, again, use));
    };

    if (state.pending) previewView();
    else listView();
    return holder;
  },
});
