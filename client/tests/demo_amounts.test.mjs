// The demo page's numbers (envoy/demo/amounts.js), from states the built
// package reads: Envoy's recorded responses for classes counted in units,
// the core's priced ones (priced.json) for classes metered in money.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { fromHeaders, fromUsage, initSync } from "quota-client";
import { meterValues, numbersLine, valueText } from "../../envoy/demo/amounts.js";

initSync({ module: readFileSync(fileURLToPath(import.meta.resolve("quota-client/quota_client_bg.wasm"))) });

const recorded = JSON.parse(readFileSync(new URL("./recorded.json", import.meta.url), "utf8"));
const priced = JSON.parse(readFileSync(new URL("./priced.json", import.meta.url), "utf8"));

function stateOf(file, name) {
  const r = file[name];
  assert.ok(r, `no response ${name}`);
  return fromHeaders(new Headers(r.headers), r.status >= 400 ? r.body : undefined);
}

test("a class counted in units reads as counts, as the page always wrote it", () => {
  const s = stateOf(recorded, "draft_first_warning");
  assert.equal(numbersLine(s, "Free"), "5 of 10 used, 5 left, warnings from 5");
  assert.equal(valueText(s), "5 of 10 used");
  assert.deepEqual(meterValues(s), { max: 10, value: 5 });
  const blocked = stateOf(recorded, "draft_blocked");
  assert.equal(valueText(blocked), "10 of 10 used");
});

test("a class metered in money reads as money", () => {
  const warned = stateOf(priced, "chat_warning");
  assert.equal(numbersLine(warned, "Free"), "$0.50 of $1.00 used, $0.49 left, warnings from $0.50");
  assert.equal(valueText(warned), "$0.50 of $1.00 used");
  assert.deepEqual(meterValues(warned), { max: 1, value: 0.5055 });
  assert.equal(warned.meters[0].label, "You: $0.50 of $1.00 today");
  const [chat, actions] = fromUsage(priced.usage_free.body);
  assert.equal(numbersLine(actions, "Free"), "$0.004 of $5.00 used, $4.99 left");
  assert.equal(numbersLine(chat, "Free"), "$0.50 of $1.00 used, $0.49 left, warnings from $0.50");
  // Each limit of a stacked money cell: the pool's use is not in the headers.
  const team = stateOf(priced, "team_chat_ok");
  assert.deepEqual(team.meters.map((m) => (m.used === undefined ? m.label : valueText(m))), [
    "Team: up to $5.00 today",
    "$0.01 of $1.00 used",
  ]);
  assert.deepEqual(meterValues(team.meters[0]), { max: 5, value: 0 });
});

test("a class outside the plan has no numbers", () => {
  const s = stateOf(recorded, "research_not_included");
  assert.equal(numbersLine(s, "Free"), "Not part of the Free plan");
  assert.deepEqual(meterValues(s), { max: 1, value: 0 });
});

test("nothing used yet reads as zero in the class's terms", () => {
  const none = { limit: 1, limitText: "$100.00", currency: "USD" };
  assert.equal(valueText(none), "$0.00 of $100.00 used");
  assert.equal(valueText({ limit: 10, limitText: "10" }), "0 of 10 used");
  assert.equal(valueText({ limit: 500, limitText: "¥500", currency: "JPY" }), "¥0 of ¥500 used");
});
