// The first screen: what the kiosk can do, as large tiles.
import { register } from "../core.js";

const TILES = [
  ["filing-start", "Nộp hồ sơ", "Quét căn cước công dân, chọn thủ tục, ký và nộp"],
  ["tracking", "Tra cứu hồ sơ", "Quét mã trên phiếu hẹn hoặc nhập mã hồ sơ"],
  ["support", "Gọi hỗ trợ", "Cán bộ sẽ đến giúp Ông/Bà"],
  ["info", "Hỏi đáp và tin tức", "Câu hỏi thường gặp, thông báo của phường"],
  ["feedback", "Gửi câu hỏi, phản ánh, kiến nghị", "Và xem câu trả lời"],
  ["home-visit", "Hỗ trợ tại nhà", "Cho người cao tuổi, người khuyết tật, người bệnh nặng"],
];

register({
  name: "home",
  title: "Xin chào Ông/Bà",
  render(ctx) {
    return ctx.el("div", {},
      ctx.el("p", { text: "Ông/Bà muốn làm gì? Xin mời chạm vào một ô." }),
      ctx.el("div", { class: "tiles" },
        TILES.map(([name, label, hint]) =>
          ctx.el("button", { class: "tile", "data-go": name, on: { click: () => ctx.go(name) } },
            label, ctx.el("small", { text: hint })))));
  },
});
