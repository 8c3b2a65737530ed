// Read aloud: the screen's Vietnamese, rendered to speech by the agent (espeak-ng on the
// box, POST /api/v1/speech -> audio/wav) and played from a blob URL.
//
// toggleSpeech(text) is the top bar's "Đọc to": the first tap starts, the second stops.
// While a reading is being fetched or played the button has aria-pressed="true" and says
// "Dừng đọc". stopSpeech() stops it and frees the audio; widgets.js calls it on the idle
// wipe and on every screen change. When the agent cannot speak (no espeak-ng: 503, or no
// such endpoint) a short Vietnamese message shows under the top bar; nothing is thrown.

import { api, ApiError } from "./core.js";

/** The API's limit on one reading (characters). */
export const SPEECH_MAX = 1500;

const UNAVAILABLE_VI = "Máy chưa đọc to được lúc này. Xin mời Ông/Bà hỏi cán bộ tại quầy.";
const NOTHING_VI = "Màn hình này không có chữ để đọc.";

/**
 * The text to send: whitespace collapsed, at most `max` characters, cut after the last
 * sentence that fits (else after the last word). Empty when there is nothing to read.
 */
export function speechText(text, max = SPEECH_MAX) {
  const s = String(text ?? "").replace(/\s+/g, " ").trim();
  if ([...s].length <= max) return s;
  const head = [...s].slice(0, max).join("");
  let cut = -1;
  const re = /[.!?…;:](?=\s|$)/g;
  for (let m = re.exec(head); m; m = re.exec(head)) cut = m.index + 1;
  if (cut > 0) return head.slice(0, cut).trim();
  const space = head.lastIndexOf(" ");
  return (space > 0 ? head.slice(0, space) : head).trim();
}

let audio = null;
let url = null;
let generation = 0; // a stop (or a new reading) makes an older fetch's answer stale

function button() {
  return typeof document === "undefined" ? null : document.getElementById("btn-speak");
}

function showPlaying(on) {
  const b = button();
  if (!b) return;
  b.setAttribute("aria-pressed", String(on));
  b.textContent = on ? "Dừng đọc" : "Đọc to";
  b.classList.toggle("speech-on", on);
}

function notice(text) {
  const box = document.getElementById("banners");
  let node = document.getElementById("speech-notice");
  if (!text) {
    if (node) node.remove();
    return;
  }
  if (!node) {
    node = document.createElement("p");
    node.id = "speech-notice";
    node.className = "banner speech-notice";
    node.setAttribute("role", "status");
    if (box) box.append(node);
    else document.body.prepend(node);
  }
  node.textContent = text;
}

export function isSpeaking() {
  return audio !== null || button()?.getAttribute("aria-pressed") === "true";
}

/** Stop reading (and any reading still being fetched). Safe to call at any time. */
export function stopSpeech() {
  generation += 1;
  if (audio) {
    audio.pause();
    audio.removeAttribute("src");
    audio = null;
  }
  if (url) {
    URL.revokeObjectURL(url);
    url = null;
  }
  showPlaying(false);
}

/** Read `text` aloud from the start (stops any reading first). Resolves when it starts. */
export async function speak(text) {
  stopSpeech();
  notice("");
  const words = speechText(text);
  if (!words) {
    notice(NOTHING_VI);
    return false;
  }
  const mine = ++generation;
  showPlaying(true);
  let blob;
  try {
    blob = await api.post("/speech", { text: words });
  } catch (err) {
    if (mine !== generation) return false;
    showPlaying(false);
    notice(err instanceof ApiError && err.status === 503 ? err.messageVi || UNAVAILABLE_VI : UNAVAILABLE_VI);
    return false;
  }
  if (mine !== generation) return false; // stopped while the agent was rendering
  if (!(blob instanceof Blob) || !blob.size) {
    showPlaying(false);
    notice(UNAVAILABLE_VI);
    return false;
  }
  url = URL.createObjectURL(blob);
  audio = new Audio(url);
  const me = audio;
  me.addEventListener("ended", () => { if (audio === me) stopSpeech(); });
  me.addEventListener("error", () => {
    if (audio !== me) return;
    stopSpeech();
    notice(UNAVAILABLE_VI);
  });
  try {
    await me.play();
  } catch (err) {
    if (audio === me) {
      stopSpeech();
      notice(UNAVAILABLE_VI);
    }
    return false;
  }
  return audio === me;
}

/** Stop, and take away the "cannot read" message (a new screen, the idle wipe). */
export function resetSpeech() {
  stopSpeech();
  if (typeof document !== "undefined") notice("");
}

/** The "Đọc to" button: start reading `text`, or stop when a reading is on. */
export function toggleSpeech(text) {
  if (isSpeaking()) {
    stopSpeech();
    return Promise.resolve(false);
  }
  return speak(text);
}

/** The audio element playing now, or null (for tests and the staff console). */
export function speechAudio() {
  return audio;
}
