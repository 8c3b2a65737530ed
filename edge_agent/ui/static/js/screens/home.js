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
  render(ctx) {
    // the tiles at once; the office's name and hotline when GET /kiosk answers
    const office = ctx.el("p", { class: "office-name", hidden: true });
    const hotline = ctx.el("div", { class: "home-hotline" });
    kioskSettings().then((k) => {
      if (k.office_name) {
        office.textContent = k.office_name;
        office.hidden = false;
      }
      const line = hotlineNode(ctx.el, k.hotline, "Cần giúp đỡ, xin gọi đường dây nóng");
      if (line) hotline.replaceChildren(line);
    });
    return ctx.el("div", { class: "home" },
      office,
      ctx.el("p", { class: "lead", text: "Ông/Bà muốn làm gì? Xin mời chạm vào một ô." }),
      ctx.el("div", { class: "tiles" },
        TILES.map(([name, label, hint]) =>
          ctx.el("button", { class: "tile", "data-go": name, on: { click: () => ctx.go(name) } },
            label, ctx.el("small", { text: hint })))),
      hotline);
  },
});
