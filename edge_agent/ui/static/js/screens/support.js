// Calling the support team: "Gọi cán bộ hỗ trợ" (optionally saying what for), then who is
// coming and the hotline, large, until the staff's reply arrives (`downlink` event of kind
// support-reply for this lookup code, then GET /support/{code}). The kiosk's hardware help
// button arrives as the `support` event on any screen and opens the same status screen.
import { currentScreen, events, go, register } from "../core.js";
import { hotlineNode, kioskSettings } from "./office.js";

// [topic sent to the agent, button label]
export const TOPICS = [
  ["dien-to-khai", "Điền tờ khai"],
  ["nop-ho-so", "Nộp hồ sơ"],
  ["thanh-toan", "Thanh toán lệ phí"],
  ["vneid", "Tài khoản VNeID"],
];
// a status screen asks the agent again this often, in case an event was missed while
// the event stream reconnected (the agent answers from its own cache: cheap)
const REFRESH_MS = 15000;

register({
  name: "support",
  title: "Gọi cán bộ hỗ trợ",
  render(ctx) {
    const { el } = ctx;
    const error = el("p", { class: "field-error", id: "support-error" });
    const buttons = [];
    const call = async (topic, button) => {
      for (const b of buttons) b.disabled = true;
      button.classList.add("busy");
      try {
        const ticket = await ctx.api.post("/support/help", topic ? { topic } : {});
        ctx.go("support-status", { ticket }, { replace: true });
      } catch (err) {
        ctx.fieldError(error, err);
        for (const b of buttons) b.disabled = false;
        button.classList.remove("busy");
      }
    };
    const now = el("button", { class: "primary call-now", "data-action": "call", text: "Gọi cán bộ ngay" });
    now.addEventListener("click", () => call(null, now));
    buttons.push(now);
    const topicButtons = TOPICS.map(([topic, label]) => {
      const b = el("button", { class: "choice", "data-topic": topic, text: label });
      b.addEventListener("click", () => call(topic, b));
      buttons.push(b);
      return b;
    });
    return el("div", { class: "support" },
      el("p", { class: "lead", text: "Cán bộ hỗ trợ sẽ đến giúp Ông/Bà. Xin mời chạm vào nút dưới đây." }),
      now,
      el("p", { text: "Hoặc chọn việc Ông/Bà cần giúp, để cán bộ biết trước:" }),
      el("div", { class: "choices" }, topicButtons),
      error,
      el("div", { class: "actions" },
        el("button", { "data-action": "back", text: "Quay lại", on: { click: () => ctx.back() } })));
  },
});

function statusLines(el, s) {
  const staff = s.staff_name ? `Cán bộ ${s.staff_name}` : "Cán bộ";
  switch (s.status) {
    case "assigned":
      return [el("p", { class: "status-state", "data-status": "assigned", text: `${staff} đang đến giúp Ông/Bà.` }),
        el("p", { class: "lead", text: "Xin mời Ông/Bà chờ tại máy." })];
    case "resolved":
      return [el("p", { class: "status-state", "data-status": "resolved", text: "Yêu cầu của Ông/Bà đã được giải quyết." })];
    case "no-one-on-duty":
      return [el("p", { class: "status-state", "data-status": "no-one-on-duty", text: "Lúc này chưa có cán bộ trực." }),
        el("p", { class: "lead", text: "Xin mời Ông/Bà gọi đường dây nóng dưới đây, hoặc quay lại trong giờ làm việc." })];
    default:
      return [el("p", { class: "status-state", "data-status": "waiting", text: "Đã gọi cán bộ. Cán bộ sẽ đến trong giây lát." }),
        el("p", { class: "lead", text: "Xin mời Ông/Bà chờ tại máy." })];
  }
}

let refreshTimer = null;

register({
  name: "support-status",
  title: "Cán bộ hỗ trợ",
  leave() {
    clearInterval(refreshTimer);
    refreshTimer = null;
  },
  async render(ctx, params) {
    const { el } = ctx;
    const ticket = params.ticket || {};
    const code = ticket.lookup_code;
    const office = await kioskSettings();
    const body = el("div", { class: "support-body" });
    const paint = (s) => {
      const hotline = s.hotline || office.hotline;
      const reply = s.status !== "waiting" && s.message ? el("blockquote", { class: "staff-reply", text: s.message }) : null;
      const parts = [...statusLines(el, s), reply, hotlineNode(el, hotline, "Nếu cần gấp, xin gọi đường dây nóng")];
      body.replaceChildren(...parts.filter(Boolean));
      body.dataset.status = s.status || "waiting";
    };
    const refresh = async () => {
      try {
        paint(await ctx.api.get(`/support/${encodeURIComponent(code)}`));
      } catch (err) {
        /* keep what is shown; the next event or refresh tries again */
      }
    };
    if (code) {
      ctx.on("downlink", (d) => { if (d && d.kind === "support-reply" && d.key === code) refresh(); });
      ctx.on("support", (t) => { if (t && t.lookup_code) ctx.go("support-status", { ticket: t }, { replace: true }); });
      clearInterval(refreshTimer);
      refreshTimer = setInterval(refresh, REFRESH_MS);
      await refresh();
      if (!body.dataset.status) paint({ status: "waiting" });
    } else {
      paint({ status: "waiting" });
    }
    return el("div", { class: "support-status", "data-code": code || "" },
      body,
      code ? el("p", { class: "code-line" }, "Mã yêu cầu: ", el("strong", { class: "code", text: code })) : null,
      el("div", { class: "actions" },
        el("button", { class: "primary", "data-action": "home", text: "Về trang đầu", on: { click: () => ctx.home() } })));
  },
});

// the hardware help button, pressed on any screen
events.on("support", (ticket) => {
  if (!ticket || !ticket.lookup_code || currentScreen() === "support-status") return;
  go("support-status", { ticket });
});
