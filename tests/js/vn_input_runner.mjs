// Runs the on-screen keyboard's typing engine for the Python tests.
// stdin: one JSON case a line, {"keys": [...], "method": "telex"|"vni",
// "style": "new"|"old", "mode": "text"|"numeric"} (keys a string or a list,
// so "Backspace" can be one key). stdout: one JSON line a case, in order:
// {"text": ..., "raw": ...} or {"error": "..."}.
import { createInterface } from "node:readline";
import { typeKeys } from "../../edge_agent/ui/static/js/vn-input.js";

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let out;
  try {
    const c = JSON.parse(line);
    const keys = typeof c.keys === "string" ? [...c.keys] : c.keys;
    const { method, style, mode } = c;
    out = typeKeys(keys, { method, style, mode });
  } catch (err) {
    out = { error: String(err && err.message ? err.message : err) };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}
