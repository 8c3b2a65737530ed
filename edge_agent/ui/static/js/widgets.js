// The widgets' wiring into the core: the on-screen keyboard (ctx.keyboard) and read-aloud
// (the top bar's "Đọc to"), both closed on the idle wipe and when the screen changes.
// main.js imports it once: import "./widgets.js";
import { hooks } from "./core.js";
import { attachKeyboard, closeIfDetached, closeKeyboard, loadTypingOptions } from "./keyboard.js";
import { resetSpeech, toggleSpeech } from "./speech.js";

hooks.keyboard = attachKeyboard;
hooks.speak = toggleSpeech;
hooks.onWipe.push(() => {
  closeKeyboard();
  resetSpeech();
});

if (typeof document !== "undefined") {
  document.addEventListener("aps:screen", () => {
    closeIfDetached(); // the field is gone with its screen; a field still shown keeps it
    resetSpeech();
  });
  loadTypingOptions();
}

export { attachKeyboard, closeKeyboard, toggleSpeech };
