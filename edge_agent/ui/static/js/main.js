// The page's entry point: loads the screens, wires the top bar, starts on the home screen.
import { events, home, hooks, wipe } from "./core.js";
import "./screens/index.js";
import { firstScreen } from "./screens/filing-unconfirmed.js";
import { startChrome } from "./chrome.js";
import "./widgets.js";

function wireTopbar() {
  document.getElementById("btn-home").addEventListener("click", () => home());
  const big = document.getElementById("btn-bigtext");
  big.addEventListener("click", () => {
    const on = document.documentElement.classList.toggle("bigtext");
    big.setAttribute("aria-pressed", String(on));
  });
  hooks.onWipe.push(() => big.setAttribute("aria-pressed", "false"));
  document.getElementById("btn-speak").addEventListener("click", () => {
    const text = document.getElementById("screen").innerText;
    if (hooks.speak) hooks.speak(text);
  });
  // a kiosk has no context menu and no page zoom
  document.addEventListener("contextmenu", (e) => e.preventDefault());
  document.addEventListener("gesturestart", (e) => e.preventDefault());
}

window.aps = { wipe }; // for the browser tests and for staff tools in the console
wireTopbar();
startChrome();
events.connect();
firstScreen(); // a filing never shown before a restart comes first, else home
