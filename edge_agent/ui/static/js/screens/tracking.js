// Tracking a dossier: put the slip's QR under the scanner, or type the code; then its
// status in plain words, due date, fee paid or not, where to collect the result.
// A slip scanned on ANY screen arrives as the `tracking` event and opens the result.
import { currentScreen, events, go, register } from "../core.js";
import { dateVi, kioskSettings, moneyVi } from "./office.js";

// what the citizen should do next, per state (the status words come from the agent)
const NEXT_VI = {
  "submitted": "Hồ sơ đang chờ cán bộ tiếp nhận. Ông/Bà chưa cần làm gì.",
  "received": "Cán bộ đã nhận hồ sơ. Ông/Bà chờ đến ngày hẹn trả kết quả.",
  "processing": "Hồ sơ đang được giải quyết. Ông/Bà chờ đến ngày hẹn trả kết quả.",
  "additional-papers": "Ông/Bà cần bổ sung giấy tờ. Xin mời mang giấy tờ đến Bộ phận Một cửa.",
  "result-ready": "Đã có kết quả. Xin mời Ông/Bà mang phiếu hẹn và căn cước công dân đến nhận.",
  "result-returned": "Ông/Bà đã nhận kết quả. Không cần làm gì thêm.",
  "rejected": "Hồ sơ không được giải quyết. Xin mời Ông/Bà hỏi cán bộ tại quầy để biết lý do.",
  "withdrawn": "Hồ sơ đã được rút. Không cần làm gì thêm.",
};
const COLLECT = new Set(["result-ready", "additional-papers"]);

register({
  name: "tracking",
  title: "Tra cứu hồ sơ",
  render(ctx, params) {
    const { el } = ctx;
    const error = el("p", { id: "tracking-error", class: "field-error" });
    const input = el("input", {
      id: "tracking-code", type: "text", autocomplete: "off", autocapitalize: "characters",
      spellcheck: "false", maxlength: "64", "aria-describedby": "tracking-error",
      value: params.code || "",
    });
    const lookup = el("button", { class: "primary", "data-action": "lookup", text: "Tra cứu" });
    const showError = (text) => {
      error.textContent = text;
      error.classList.add("error");
      error.setAttribute("role", "alert");
      input.setAttribute("aria-invalid", "true");
    };
    const submit = async () => {
      const code = input.value.trim().toUpperCase(); // codes are printed in capitals
      if (!code) return showError("Ông/Bà chưa nhập mã hồ sơ. Mã in trên phiếu hẹn, dưới mã QR.");
      lookup.disabled = true;
      lookup.classList.add("busy");
      try {
        const result = await ctx.api.get("/tracking", { code });
        ctx.go("tracking-result", { result });
      } catch (err) {
        ctx.fieldError(error, err);
        input.setAttribute("aria-invalid", "true");
      } finally {
        lookup.disabled = false;
        lookup.classList.remove("busy");
      }
    };
    input.addEventListener("input", () => { // typing again: the old complaint goes
      error.textContent = "";
      error.classList.remove("error");
      error.removeAttribute("role");
      input.removeAttribute("aria-invalid");
    });
    lookup.addEventListener("click", submit);
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") submit(); });
    ctx.keyboard(input, "plain");
    // a slip the scanner could not read as a dossier code
    ctx.on("scan_rejected", (d) => showError((d && d.message_vi) || "Máy chưa đọc được mã. Xin mời Ông/Bà đặt lại phiếu hẹn."));
    return el("div", { class: "tracking" },
      el("div", { class: "scan-hint" },
        el("div", { class: "scan-art", "aria-hidden": "true" }, el("span", { class: "scan-art-qr" })),
        el("p", { class: "lead", text: "Đặt phiếu hẹn có mã QR vào máy quét." })),
      el("p", { text: "Hoặc nhập mã hồ sơ in trên phiếu hẹn:" }),
      el("label", { for: "tracking-code", class: "question-label", text: "Mã hồ sơ" }),
      input,
      error,
      el("div", { class: "actions" },
        lookup,
        el("button", { "data-action": "back", text: "Quay lại", on: { click: () => ctx.back() } })));
  },
});

register({
  name: "tracking-result",
  title: "Kết quả tra cứu hồ sơ",
  async render(ctx, params) {
    const { el } = ctx;
    const r = params.result || {};
    const office = await kioskSettings();
    const rows = [];
    if (r.found) {
      rows.push(el("p", { class: "status-state", "data-state": r.state || "", text: r.state_vi || "" }));
      if (NEXT_VI[r.state]) rows.push(el("p", { class: "lead", text: NEXT_VI[r.state] }));
      const facts = el("dl", { class: "facts" });
      const fact = (term, value) => facts.append(el("dt", { text: term }), el("dd", { text: value }));
      fact("Mã hồ sơ", r.code);
      if (r.due) fact("Ngày hẹn trả kết quả", dateVi(r.due));
      if (r.paid === true) {
        fact("Lệ phí", r.paid_amount_vnd ? `Đã nộp (${moneyVi(r.paid_amount_vnd)})` : "Đã nộp");
      } else if (r.paid === false) {
        fact("Lệ phí", "Chưa nộp");
      }
      if (COLLECT.has(r.state)) {
        fact("Nơi nhận kết quả", office.office_name ? `Bộ phận Một cửa, ${office.office_name}` : "Bộ phận Một cửa");
      }
      if (r.note) fact("Ghi chú của cán bộ", r.note);
      rows.push(facts);
      if (r.cache_age_s !== null && r.cache_age_s !== undefined && r.cache_age_s > 3600) {
        rows.push(el("p", { class: "note", text: "Máy đang mất mạng: thông tin này có thể chưa mới nhất." }));
      }
    } else {
      rows.push(el("p", { class: "error", role: "alert", text: r.screen_text || "Không tìm thấy hồ sơ." }));
    }
    // another slip scanned while the result is shown: show that one
    ctx.on("tracking", (d) => ctx.go("tracking-result", { result: d }, { replace: true }));
    return el("div", { class: "tracking-result", "data-code": r.code || "" },
      ...rows,
      el("div", { class: "actions" },
        el("button", { class: "primary", "data-action": "again", text: "Tra cứu hồ sơ khác", on: { click: () => ctx.go("tracking", {}, { replace: true }) } }),
        el("button", { "data-action": "home", text: "Về trang đầu", on: { click: () => ctx.home() } })));
  },
});

// A slip's QR read on any screen: the agent looked it up; show the result (the result
// screen itself replaces its content, see above).
events.on("tracking", (data) => {
  if (!data || currentScreen() === "tracking-result") return;
  go("tracking-result", { result: data }, { replace: currentScreen() === "tracking" });
});
