// The first screen: the office's name, what the kiosk can do as large tiles, the hotline.
import { register } from "../core.js";
import { hotlineNode, kioskSettings } from "./office.js";

// [screen name, label, what it is for]; the names are the screens' register() names
export const TILES = [
  ["filing-start", "Nộp hồ sơ", "Quét căn cước công dân, chọn thủ tục, ký và nộp"],
  ["tracking", "Tra cứu hồ sơ", "Quét mã trên phiếu hẹn hoặc nhập mã hồ sơ"],
  ["support", "Gọi cán bộ hỗ trợ", "Cán bộ sẽ đến giúp Ông/Bà"],
  ["info", "Hỏi đáp và tin tức", "Câu hỏi thường gặp, thông báo của phường"],
  ["feedback", "Gửi câu hỏi, phản ánh, kiến nghị", "Và xem câu trả lời"],
  ["home-visit", "Hỗ trợ tại nhà", "Cho người cao tuổi, người khuyết tật, người bệnh nặng"],
];

register({
  name: "home",
  title: "Xin chào Ông/Bà",
  async render(ctx) {
    const office = await kioskSettings();
    return ctx.el("div", { class: "home" },
      office.office_name ? ctx.el("p", { class: "office-name", text: office.office_name }) : null,
      ctx.el("p", { class: "lead", text: "Ông/Bà muốn làm gì? Xin mời chạm vào một ô." }),
      ctx.el("div", { class: "tiles" },
        TILES.map(([name, label, hint]) =>
          ctx.el("button", { class: "tile", "data-go": name, on: { click: () => ctx.go(name) } },
            label, ctx.el("small", { text: hint })))),
      hotlineNode(ctx.el, office.hotline, "Cần giúp đỡ, xin gọi đường dây nóng"));
  },
});
