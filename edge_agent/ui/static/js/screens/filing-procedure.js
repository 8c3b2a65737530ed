// Filing, step 2: choose the procedure (search and a list of large rows), then its page:
// what it is, the papers to bring, the fee and the time limit.
import { register } from "../core.js";
import { filing, heading, messageLine, money, say, withType } from "./filing-common.js";
import { afterQuestions } from "./filing-papers.js";

const SEARCH_PAUSE_MS = 300; // wait for the typing to pause before asking the agent

function timeText(p) {
  if (!p) return "";
  if (!p.time_limit_days) return "Trả kết quả trong ngày";
  return `Trả kết quả sau ${p.time_limit_days} ngày làm việc`;
}

function feeText(p) {
  if (!p) return "";
  return (p.fee && p.fee.text_vi) || money(p.fee_vnd);
}

function row(ctx, p) {
  return ctx.el("li", {},
    ctx.el("button", {
      class: "filing-row", "data-code": p.code,
      on: { click: () => ctx.go("filing-procedure", { code: p.code }) },
    },
    ctx.el("span", { class: "filing-row-name", text: p.name }),
    ctx.el("small", { text: `${p.field} · ${feeText(p)} · ${timeText(p)}` })));
}

register({
  name: "filing-choose",
  title: "Chọn thủ tục",
  async render(ctx) {
    const f = filing(ctx);
    const list = ctx.el("ul", { class: "filing-list", "aria-label": "Các thủ tục" });
    const message = messageLine(ctx);
    const input = ctx.el("input", {
      id: "filing-search", type: "search", autocomplete: "off", spellcheck: "false",
      placeholder: "Ví dụ: khai sinh, chứng thực",
    });
    let asked = 0;
    const show = async (q) => {
      const mine = ++asked;
      let answer;
      try {
        answer = await ctx.api.get("/catalogue", { q });
      } catch (err) {
        if (mine === asked) say(message, err.messageVi);
        return;
      }
      if (mine !== asked) return; // a newer search is on its way
      f.listing = answer.procedures;
      list.replaceChildren(...answer.procedures.map((p) => row(ctx, p)));
      if (answer.procedures.length) say(message, "", "info");
      else say(message, "Không tìm thấy thủ tục nào. Xin mời Ông/Bà gõ từ khác, hoặc xoá ô tìm để xem tất cả.", "info");
    };
    let pause = null;
    input.addEventListener("input", () => {
      clearTimeout(pause);
      pause = setTimeout(() => show(input.value.trim()), SEARCH_PAUSE_MS);
    });
    ctx.keyboard(input, "text");
    await show("");
    return ctx.el("div", { class: "filing-choose" },
      heading(ctx, "Ông/Bà muốn làm thủ tục gì?", "Chạm vào tên thủ tục. Hoặc gõ vài chữ vào ô tìm kiếm."),
      ctx.el("label", { class: "filing-label", for: "filing-search", text: "Tìm thủ tục" }),
      input, message, list);
  },
});

function paperNode(ctx, paper) {
  const kind = paper.kind === "copy" ? "bản sao" : "bản chính";
  return ctx.el("li", {},
    ctx.el("span", { class: "filing-paper-name", text: paper.name }),
    ctx.el("small", { text: ` (${paper.count || 1} ${kind})` }),
    paper.note ? ctx.el("small", { class: "filing-paper-note", text: paper.note }) : null);
}

register({
  name: "filing-procedure",
  title: "Thông tin thủ tục",
  async render(ctx, { code }) {
    const f = filing(ctx);
    const one = await ctx.api.get(`/catalogue/${encodeURIComponent(code)}`);
    let info = (f.listing || []).find((p) => p.code === code);
    if (!info) {
      const all = await ctx.api.get("/catalogue");
      info = all.procedures.find((p) => p.code === code) || null;
    }
    const papers = one.papers || [];
    return ctx.el("div", { class: "filing-procedure" },
      heading(ctx, one.procedure_name, one.guidance || (info ? `Lĩnh vực: ${info.field}.` : "")),
      ctx.el("dl", { class: "filing-facts" },
        ctx.el("dt", { text: "Lệ phí" }), ctx.el("dd", { "data-fact": "fee", text: feeText(info) }),
        ctx.el("dt", { text: "Thời hạn" }), ctx.el("dd", { "data-fact": "time", text: timeText(info) })),
      ctx.el("h3", { text: "Giấy tờ Ông/Bà cần mang theo" }),
      papers.length
        ? ctx.el("ul", { class: "filing-papers" }, papers.map((p) => paperNode(ctx, p)))
        : ctx.el("p", { text: "Không cần giấy tờ nào khác." }),
      ctx.el("div", { class: "actions" },
        ctx.el("button", {
          class: "primary", "data-action": "start", text: "Bắt đầu",
          on: {
            click: () => {
              f.procedure = { code: one.procedure, name: one.procedure_name, papers, info };
              const known = new Set(Object.keys(f.answers).filter((k) => k.startsWith("applicant.")));
              f.questions = (one.to_type || []).map(withType).filter((q) => !(f.typed && known.has(q.field)));
              for (const k of Object.keys(f.answers)) if (k.startsWith("form.")) delete f.answers[k];
              f.prepared = null;
              if (f.questions.length) ctx.go("filing-question", { field: f.questions[0].field });
              else afterQuestions(ctx, f);
            },
          },
        }),
        ctx.el("button", { "data-action": "other", text: "Chọn thủ tục khác", on: { click: () => ctx.back() } })));
  },
});
