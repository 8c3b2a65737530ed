// What the screens show about the office itself (GET /kiosk): its name and hotline.
// Not citizen data, so it may be kept in module memory; a failed read is not kept,
// so an agent that was restarting is asked again on the next screen.
import { api } from "../core.js";

let settings = null;

export async function kioskSettings() {
  if (settings) return settings;
  try {
    settings = await api.get("/kiosk");
    return settings;
  } catch (e) {
    return {}; // an agent without /kiosk, or not answering: the screens do without
  }
}

// "2026-12-08" or "2026-12-08T10:00:00+07:00" -> "08/12/2026" (the way a Vietnamese
// reader writes dates); anything else is shown as it came.
export function dateVi(text) {
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(String(text || ""));
  return m ? `${m[3]}/${m[2]}/${m[1]}` : String(text || "");
}

// "1234567" -> "1.234.567 đồng"
export function moneyVi(amount) {
  return `${Number(amount).toLocaleString("vi-VN")} đồng`;
}

// The hotline as a large line, or nothing when the office has none.
export function hotlineNode(el, hotline, lead = "Đường dây nóng") {
  if (!hotline) return null;
  return el("p", { class: "hotline" }, `${lead}: `, el("strong", { class: "hotline-number", text: hotline }));
}
