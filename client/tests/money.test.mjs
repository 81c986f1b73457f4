// Classes metered in money, through the built package, against responses the
// filter's core wrote (priced.json: `cargo test -p quota-client` checks it is
// what the core answers now). Amounts are in the currency's major unit;
// the *Text getters show them as the filter's sentences do.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { fromHeaders, fromUsage, initSync } from "quota-client";

initSync({ module: readFileSync(fileURLToPath(import.meta.resolve("quota-client/quota_client_bg.wasm"))) });

const priced = JSON.parse(readFileSync(new URL("./priced.json", import.meta.url), "utf8"));
const recorded = JSON.parse(readFileSync(new URL("./recorded.json", import.meta.url), "utf8"));

function response(name) {
  const r = priced[name];
  assert.ok(r, `no priced response ${name}`);
  return { status: r.status, headers: new Headers(r.headers), body: r.body };
}

function stateOf(name) {
  const r = response(name);
  return fromHeaders(r.headers, r.status >= 400 ? r.body : undefined);
}

test("an admitted priced request reads in dollars, its texts as the filter writes them", () => {
  const r = response("chat_ok");
  assert.equal(r.headers.get("x-quota-used"), "0.01025");
  const s = stateOf("chat_ok");
  assert.equal(s.currency, "USD");
  // The amounts as numbers of dollars: the header's decimal text, exactly.
  assert.deepEqual([s.used, s.limit, s.softLimit, s.remaining, s.cost], [0.01025, 1, 0.5, 0.98975, 0.01025]);
  assert.equal(s.used, Number(r.headers.get("x-quota-used")));
  assert.equal(s.fractionUsed, 0.01025);
  // For people: what was used and what remains rounded down.
  assert.deepEqual([s.usedText, s.limitText, s.softLimitText, s.remainingText, s.costText], ["$0.01", "$1.00", "$0.50", "$0.98", "$0.01"]);
  assert.equal(s.overageText, undefined);
  const [m] = s.meters;
  assert.deepEqual([m.currency, m.used, m.limit, m.usedText, m.limitText, m.remainingText], ["USD", 0.01025, 1, "$0.01", "$1.00", "$0.98"]);
  assert.equal(m.label, "You: $0.01 of $1.00 today");
  // A unit price: one action at $0.004.
  const action = stateOf("action_ok");
  assert.deepEqual([action.cost, action.costText, action.used, action.limit], [0.004, "$0.004", 0.004, 5]);
});

test("the warning and the refusal say what the texts show", () => {
  const warned = stateOf("chat_warning");
  assert.equal(warned.state, "warning");
  assert.equal(warned.used, 0.5055);
  assert.ok(warned.warning.startsWith(`You've used ${warned.usedText} of your ${warned.limitText} for today.`), warned.warning);

  for (const name of ["chat_blocked", "chat_blocked_problem"]) {
    const r = response(name);
    assert.equal(r.status, 429, name);
    const body = JSON.parse(r.body);
    const quota = body.error?.quota ?? body.quota;
    const s = stateOf(name);
    assert.equal(s.state, "blocked", name);
    assert.equal(s.currency, quota.money.currency);
    assert.deepEqual(
      [s.usedText, s.limitText, s.softLimitText, s.remainingText],
      [quota.money.used, quota.money.limit, quota.money.soft_limit, quota.money.remaining],
      name,
    );
    // The body's numbers are micro-dollars; the getters, dollars (the
    // nearest double, as dividing the integer gives it).
    assert.deepEqual([s.used, s.limit, s.remaining], [quota.used / 1e6, quota.limit / 1e6, quota.remaining / 1e6]);
    assert.equal(s.used, 0.5055);
    assert.equal(s.message, body.error?.message ?? body.detail);
    assert.ok(s.message.includes(`you have ${s.remainingText} left for today`), s.message);
    assert.equal(s.meters[0].label, "You: $0.50 of $1.00 today");
  }
});

test("the usage report's money reads class by class; a unit class stays in units", () => {
  const report = JSON.parse(response("usage_free").body);
  const states = fromUsage(report);
  for (const [s, raw] of states.map((s, i) => [s, report.classes[i]])) {
    if (raw.money) {
      assert.equal(s.currency, raw.money.currency, raw.class);
      assert.deepEqual([s.usedText, s.limitText, s.remainingText], [raw.money.used, raw.money.limit, raw.money.remaining], raw.class);
      assert.equal(s.used, raw.used / 1e6, raw.class);
      assert.equal(s.fractionUsed, raw.fraction_used, raw.class);
    } else {
      assert.equal(s.currency, undefined, raw.class);
      assert.deepEqual([s.used, s.usedText, s.limitText], [raw.used, String(raw.used), String(raw.limit)], raw.class);
    }
  }
  assert.deepEqual(states.map((s) => s.meters[0].label), [
    "You: $0.50 of $1.00 today",
    "You: $0.004 of $5.00 this month",
    "You: 0 of 10 today",
  ]);
});

test("each limit of a stacked money cell is a meter in money", () => {
  const s = stateOf("team_chat_ok");
  // The pool's quota comes from RateLimit-Policy, in cents.
  assert.equal(response("team_chat_ok").headers.get("ratelimit-policy"), '"chat.workspace.day";q=500;w=86400, "chat.user.day";q=100;w=86400');
  assert.deepEqual(s.meters.map((m) => [m.label, m.limit, m.binding]), [
    ["Team: up to $5.00 today", 5, false],
    ["You: $0.01 of $1.00 today", 1, true],
  ]);
  const chat = fromUsage(response("team_usage").body)[0];
  assert.deepEqual(chat.meters.map((m) => [m.label, m.usedText, m.remainingText]), [
    ["Team: $0.005 of $5.00 today", "$0.005", "$4.99"],
    ["You: $0.005 of $1.00 today", "$0.005", "$0.99"],
  ]);
});

test("toJSON carries the currency and the texts; a unit class has none", () => {
  const json = JSON.parse(JSON.stringify(stateOf("chat_ok")));
  assert.deepEqual([json.currency, json.used, json.usedText, json.costText], ["USD", 0.01025, "$0.01", "$0.01"]);
  assert.deepEqual([json.meters[0].currency, json.meters[0].limitText], ["USD", "$1.00"]);
  const r = recorded.draft_first_warning;
  const units = JSON.parse(JSON.stringify(fromHeaders(new Headers(r.headers))));
  assert.deepEqual([units.currency, units.used, units.usedText, units.limitText, units.costText], [null, 5, "5", "10", "1"]);
});
