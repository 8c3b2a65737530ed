// Start-up: a filing the kiosk committed but never showed (the power went, the screen
// crashed) is shown first, so its citizen, or the staff, can note its code. Once it is on
// screen the agent is told (POST /filings/{code}/shown) and does not show it again.
import { api, go, register } from "../core.js";
import { codeNode, heading } from "./filing-common.js";

/** The first screen after the page loads: the unconfirmed filing if there is one, else home. */
export async function firstScreen() {
  let last = null;
  try { last = (await api.get("/filings/last-unconfirmed")).filing; } catch (e) { /* the agent is starting */ }
  if (last) return go("filing-unconfirmed", { filing: last }, { replace: true });
  return go("home", {}, { replace: true });
}

register({
  name: "filing-unconfirmed",
  title: "Hồ sơ đã được lưu",
  render(ctx, { filing }) {
    document.addEventListener("aps:screen", async (e) => {
      if (e.detail.name !== "filing-unconfirmed") return;
      try { await ctx.api.post(`/filings/${encodeURIComponent(filing.code)}/shown`); } catch (err) { console.warn("shown", err); }
    }, { once: true });
    return ctx.el("div", { class: "filing-unconfirmed" },
      heading(ctx, "Hồ sơ này đã được lưu", "Máy vừa khởi động lại. Hồ sơ dưới đây đã nộp xong và đã được lưu trên máy. Xin ghi lại mã hồ sơ."),
      ctx.el("p", { class: "filing-code-label", text: "Mã hồ sơ" }),
      codeNode(ctx, filing.code),
      ctx.el("dl", { class: "filing-facts" },
        ctx.el("dt", { text: "Người nộp" }), ctx.el("dd", { "data-fact": "name", text: filing.applicant_name }),
        ctx.el("dt", { text: "Phiếu hẹn" }), ctx.el("dd", { text: filing.printed ? "Đã in" : "Chưa in: cán bộ tại quầy sẽ in lại cho Ông/Bà" })),
      ctx.el("div", { class: "actions" },
        ctx.el("button", { class: "primary", "data-action": "done", text: "Đã ghi lại mã", on: { click: () => ctx.home() } })));
  },
});
