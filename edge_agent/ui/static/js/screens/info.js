// "Chạm để biết": the questions citizens often ask (GET /faq) and the ward's news
// (GET /news) that central published, with a search box; large, readable items.
import { register } from "../core.js";
import { dateVi } from "./office.js";

const TABS = [
  ["faq", "Câu hỏi thường gặp"],
  ["news", "Tin tức, thông báo"],
];

function faqItem(el, item) {
  return el("article", { class: "info-item", "data-id": item.id || "" },
    el("h3", { text: item.question || "" }),
    el("p", { class: "info-text", text: item.answer || "" }));
}

function newsItem(el, item) {
  return el("article", { class: "info-item", "data-id": item.id || "" },
    el("h3", { text: item.title || "" }),
    item.published_at ? el("p", { class: "info-date", text: `Ngày đăng: ${dateVi(item.published_at)}` }) : null,
    el("p", { class: "info-text", text: item.body || "" }));
}

register({
  name: "info",
  title: "Hỏi đáp và tin tức",
  async render(ctx, params) {
    const { el } = ctx;
    const tab = params.tab === "news" ? "news" : "faq";
    const query = params.q || "";
    const input = el("input", {
      id: "info-search", type: "search", autocomplete: "off", maxlength: "200", value: query,
      "aria-describedby": "info-count",
    });
    const search = () => ctx.go("info", { tab, q: input.value.trim() }, { replace: true });
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") search(); });
    ctx.keyboard(input, "text");
    // something new published while the list is shown, or while it is being fetched (the
    // answer may predate it): show it, only when not searching. Listening starts before the
    // fetch; a render that a newer one supersedes is discarded by go().
    ctx.on("downlink", (d) => {
      if (d && d.kind === tab && !query) ctx.go("info", { tab }, { replace: true });
    });
    let items = [];
    let failed = null;
    try {
      items = (await ctx.api.get(`/${tab}`, { q: query })).items || [];
    } catch (err) {
      failed = err;
    }
    const list = el("div", { class: "info-list", id: "info-list" },
      items.map((item) => (tab === "faq" ? faqItem(el, item) : newsItem(el, item))));
    let count;
    if (failed) count = el("p", { id: "info-count", class: "error", role: "alert", text: failed.messageVi || "Máy đang bận, xin mời Ông/Bà thử lại sau ít phút." });
    else if (!items.length && query) count = el("p", { id: "info-count", text: `Không tìm thấy nội dung nào về "${query}". Xin mời Ông/Bà thử từ khác, hoặc hỏi cán bộ.` });
    else if (!items.length) count = el("p", { id: "info-count", text: tab === "faq" ? "Chưa có câu hỏi thường gặp nào." : "Chưa có tin tức nào." });
    else count = el("p", { id: "info-count", text: query ? `Tìm thấy ${items.length} mục.` : "" });
    return el("div", { class: "info" },
      el("div", { class: "tabs", role: "group", "aria-label": "Chọn mục" },
        TABS.map(([name, label]) => el("button", {
          class: name === tab ? "tab primary" : "tab", "data-tab": name, "aria-pressed": String(name === tab),
          text: label, on: { click: () => ctx.go("info", { tab: name }, { replace: true }) },
        }))),
      el("div", { class: "search-row" },
        el("label", { for: "info-search", class: "question-label", text: "Tìm theo từ (ví dụ: khai sinh, kết hôn)" }),
        el("div", { class: "search-line" },
          input,
          el("button", { class: "primary", "data-action": "search", text: "Tìm", on: { click: search } }),
          query ? el("button", { "data-action": "clear", text: "Xem tất cả", on: { click: () => ctx.go("info", { tab }, { replace: true }) } }) : null)),
      count,
      list,
      el("div", { class: "actions" },
        el("button", { "data-action": "back", text: "Quay lại", on: { click: () => ctx.back() } })));
  },
});
