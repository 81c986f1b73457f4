// The built package (`make client`), imported by its package name as an app
// would, against responses recorded from real Envoy (recorded.json, made by
// record_responses.py). Run: `npm test` in client/ (node --test).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { fromHeaders, fromUsage, initSync, QuotaMeter, QuotaState } from "quota-client";

// Browsers fetch the .wasm next to the module (`await init()`); Node has no
// fetch for file: URLs, so hand it the bytes.
initSync({ module: readFileSync(fileURLToPath(import.meta.resolve("quota-client/quota_client_bg.wasm"))) });

const recorded = JSON.parse(readFileSync(new URL("./recorded.json", import.meta.url), "utf8"));

/** A recorded response as fetch would give it. */
function response(name) {
  const r = recorded[name];
  assert.ok(r, `no recorded response ${name}`);
  return { status: r.status, headers: new Headers(r.headers), body: r.body, pairs: r.headers };
}

function header(name, field) {
  return response(name).headers.get(field);
}

/** What a UI does with a response: the body only for refusals. */
function stateOf(name) {
  const r = response(name);
  return fromHeaders(r.headers, r.status >= 400 ? r.body : undefined);
}

test("an admitted draft gives the whole meter", () => {
  const s = stateOf("draft_ok");
  assert.ok(s instanceof QuotaState);
  assert.equal(s.class, "drafts");
  assert.equal(s.tier, "free");
  assert.equal(s.scope, "user");
  assert.equal(s.state, "ok");
  assert.deepEqual([s.used, s.limit, s.softLimit, s.remaining], [1, 10, 5, 9]);
  assert.equal(s.fractionUsed, 0.1);
  assert.equal(s.warning, undefined);
  assert.equal(s.message, undefined);
  assert.equal(s.cost, 1);
  assert.equal(s.windowSeconds, 86400);
  assert.equal(s.pace, undefined);
  assert.ok(s.resetAt instanceof Date);
  assert.equal(s.resetAt.toISOString().replace(".000Z", "Z"), header("draft_ok", "x-quota-reset"));
  assert.equal(s.resetAfterSeconds, Number(header("draft_ok", "x-quota-reset-after")));
  assert.equal(s.hasReset, false);
  assert.equal(s.window, "day");
  // A one-limit cell: one meter, with the state's own numbers.
  assert.equal(s.meters.length, 1);
  const [m] = s.meters;
  assert.ok(m instanceof QuotaMeter);
  assert.equal(m.binding, true);
  assert.deepEqual([m.policy, m.scope, m.window, m.windowSeconds], ["drafts", "user", "day", 86400]);
  assert.deepEqual([m.used, m.limit, m.softLimit, m.remaining, m.fractionUsed], [1, 10, 5, 9, 0.1]);
  assert.equal(m.state, "ok");
  assert.equal(m.label, "You: 1 of 10 today");
  assert.equal(m.resetAt.getTime(), s.resetAt.getTime());
  assert.equal(m.resetInWords, s.resetInWords);
});

test("warnings carry the filter's sentence, and the countdown matches its words", () => {
  const first = stateOf("draft_first_warning");
  assert.equal(first.state, "warning");
  assert.equal(first.used, 5);
  assert.equal(first.warning, header("draft_first_warning", "x-quota-warning"));
  assert.equal(first.message, first.warning);
  assert.match(first.warning, /^You've used 5 of your 10 drafts for today\./);
  // Same seconds, same rounding, same words: the client's countdown starts
  // where the filter's sentence says.
  assert.ok(first.warning.includes(`They reset in ${first.resetInWords}.`), first.warning);
  assert.equal(first.upgradeUrl, "https://example.com/upgrade?plan=pro");

  assert.match(stateOf("draft_one_left").warning, /^You have 1 draft left for today\./);
  const last = stateOf("draft_last");
  assert.match(last.warning, /^That was the last of your 10 drafts for today\./);
  assert.equal(last.fractionUsed, 1);
  assert.equal(last.remaining, 0);
});

test("a block takes the message from the body: the OpenAI envelope and problem+json", () => {
  for (const name of ["draft_blocked", "draft_blocked_problem"]) {
    const r = response(name);
    assert.equal(r.status, 429);
    const body = JSON.parse(r.body);
    const s = stateOf(name);
    assert.equal(s.state, "blocked", name);
    assert.equal(s.message, body.error?.message ?? body.detail, name);
    assert.match(s.message, /^You've used your 10 drafts for today\. They reset in .+\. Pro includes 100 a day: https:\/\/example\.com\/upgrade\?plan=pro$/);
    assert.ok(s.message.includes(`They reset in ${s.resetInWords}.`), s.message);
    assert.equal(s.warning, undefined);
    assert.equal(s.label, "Drafts");
    assert.equal(s.window, "day");
    assert.equal(s.fractionUsed, 1);
    assert.equal(s.cost, 0);
    assert.equal(s.resetAfterSeconds, Number(r.headers.get("retry-after")));
    assert.equal(s.upgradeUrl, "https://example.com/upgrade?plan=pro");
  }
});

test("an HTML refusal still gives the numbers from the headers", () => {
  const r = response("draft_blocked_html");
  assert.match(r.headers.get("content-type"), /^text\/html/);
  const s = fromHeaders(r.headers, r.body);
  assert.equal(s.state, "blocked");
  assert.equal(s.message, undefined);
  assert.deepEqual([s.used, s.limit, s.remaining], [10, 10, 0]);
});

test("a class outside the plan says so, with the upgrade", () => {
  const s = stateOf("research_not_included");
  assert.equal(response("research_not_included").status, 403);
  assert.equal(s.class, "deep_research");
  assert.equal(s.state, "not_included");
  assert.equal(s.message, "Deep research isn't included in the Free plan. Pro includes 3 a day: https://example.com/upgrade?plan=pro");
  assert.equal(s.used, undefined);
  assert.equal(s.fractionUsed, 0);
  assert.equal(s.resetInWords, undefined);

  const pro = stateOf("research_pro");
  assert.deepEqual([pro.tier, pro.state, pro.used, pro.limit], ["pro", "ok", 1, 3]);
});

test("pooled counters report their scope", () => {
  const s = stateOf("draft_team_pooled");
  assert.deepEqual([s.tier, s.scope, s.used, s.limit], ["team", "workspace", 1, 300]);
  assert.deepEqual(s.meters.map((m) => m.label), ["Team: 1 of 300 today"]);
});

/** Each meter's caption and whether it binds. */
function meters(s) {
  return s.meters.map((m) => [m.label, m.binding]);
}

test("a stacked cell gives one meter per limit, and marks the one the headers report", () => {
  const s = stateOf("stacked_member_ok");
  assert.deepEqual(
    header("stacked_member_ok", "ratelimit-policy"),
    '"drafts.workspace.day";q=6;w=86400, "drafts.user.day";q=4;w=86400',
  );
  // The class's own numbers are the binding limit's: Alice's 3 of 4 left
  // is less room than the team's 5 of 6.
  assert.deepEqual([s.class, s.scope, s.window, s.used, s.limit, s.remaining], ["drafts", "user", "day", 1, 4, 3]);
  assert.equal(s.windowSeconds, 86400);
  assert.deepEqual(meters(s), [["Team: up to 6 today", false], ["You: 1 of 4 today", true]]);
  const [pool, own] = s.meters;
  assert.deepEqual([pool.policy, pool.scope, pool.window, pool.windowSeconds], ["drafts.workspace.day", "workspace", "day", 86400]);
  // Headers give the other limits' quotas, not their use.
  assert.deepEqual([pool.used, pool.remaining, pool.state, pool.fractionUsed, pool.resetAt], [undefined, undefined, undefined, 0, undefined]);
  assert.deepEqual([own.policy, own.used, own.limit, own.remaining, own.state], ["drafts.user.day", 1, 4, 3, "ok"]);
  assert.equal(own.resetAfterSeconds, Number(header("stacked_member_ok", "x-quota-reset-after")));

  const last = stateOf("stacked_member_last");
  assert.deepEqual(meters(last), [["Team: up to 6 today", false], ["You: 4 of 4 today", true]]);
  assert.equal(last.meters[1].message, header("stacked_member_last", "x-quota-warning"));
  assert.equal(last.meters[1].fractionUsed, 1);
});

test("a stacked refusal fills every meter from its body, in both JSON formats", () => {
  for (const name of ["stacked_member_blocked", "stacked_member_blocked_problem"]) {
    const s = stateOf(name);
    assert.equal(s.state, "blocked", name);
    assert.match(s.message, /^You've used your 4 drafts of your team's allowance for today\. They reset in /);
    assert.deepEqual(meters(s), [["Team: 4 of 6 today", false], ["You: 4 of 4 today", true]], name);
    const [pool, own] = s.meters;
    assert.deepEqual([pool.state, pool.remaining, pool.fractionUsed, pool.message], ["warning", 2, 4 / 6, undefined]);
    assert.deepEqual([own.state, own.remaining, own.fractionUsed, own.message], ["blocked", 0, 1, s.message]);
    assert.equal(own.resetAfterSeconds, Number(response(name).headers.get("retry-after")));
  }
  const problem = JSON.parse(response("stacked_member_blocked_problem").body);
  const binding = stateOf("stacked_member_blocked_problem").meters.find((m) => m.binding);
  assert.deepEqual(problem["violated-policies"], [binding.policy]);
});

test("when the team's pool binds, its meter is the one marked", () => {
  const warned = stateOf("stacked_pool_warning");
  assert.deepEqual([warned.scope, warned.state, warned.used, warned.limit], ["workspace", "warning", 5, 6]);
  assert.deepEqual(meters(warned), [["Team: 5 of 6 today", true], ["You: up to 4 today", false]]);
  assert.deepEqual([warned.meters[0].softLimit, warned.meters[0].message], [4, warned.warning]);

  const blocked = stateOf("stacked_pool_blocked");
  assert.match(blocked.message, /^Your team has used its 6 drafts for today\./);
  assert.deepEqual(meters(blocked), [["Team: 6 of 6 today", true], ["You: 2 of 4 today", false]]);
});

test("the usage report gives every limit of a stacked class its own meter and sentence", () => {
  for (const [name, expected] of [
    ["stacked_usage_member", [["Team: 4 of 6 today", false], ["You: 4 of 4 today", true]]],
    ["stacked_usage_pool", [["Team: 6 of 6 today", true], ["You: 0 of 4 today", false]]],
  ]) {
    const raw = JSON.parse(response(name).body).classes.find((c) => c.class === "drafts");
    const drafts = fromUsage(response(name).body).find((s) => s.class === "drafts");
    assert.equal(drafts.state, "blocked", name);
    assert.deepEqual(meters(drafts), expected, name);
    assert.deepEqual(drafts.meters.map((m) => m.message), raw.limits.map((l) => l.message ?? undefined), name);
    assert.deepEqual(drafts.meters.map((m) => m.state), raw.limits.map((l) => l.state), name);
    const binding = drafts.meters.find((m) => m.binding);
    assert.deepEqual([binding.used, binding.limit, binding.message], [drafts.used, drafts.limit, drafts.message]);
  }
  const member = fromUsage(response("stacked_usage_member").body);
  assert.match(member.find((s) => s.class === "drafts").meters[0].message, /^Your team has used 4 of its 6 drafts/);
  // The plan's one-limit classes keep one meter each.
  for (const s of member.filter((s) => s.class !== "drafts")) assert.equal(s.meters.length, 1, s.class);
  assert.equal(member.find((s) => s.class === "deep_research").meters[0].label, "Team: 0 of 10 today");
});

test("a 5-hour and a weekly limit each count down to their own reset", (t) => {
  const t0 = 1_900_000_000_000;
  t.mock.method(Date, "now", () => t0);
  const ok = stateOf("stacked_windows_ok");
  assert.deepEqual([ok.window, ok.windowSeconds], ["5h", 18000]);
  assert.deepEqual(meters(ok), [["You: 1 of 3 in this 5-hour window", true], ["You: up to 5 this week", false]]);
  assert.deepEqual(ok.meters.map((m) => m.windowSeconds), [18000, 604800]);

  const s = stateOf("stacked_windows_blocked");
  assert.deepEqual(meters(s), [["You: 3 of 3 in this 5-hour window", true], ["You: 3 of 5 this week", false]]);
  const limits = JSON.parse(response("stacked_windows_blocked").body).error.quota.limits;
  assert.deepEqual(s.meters.map((m) => m.resetAfterSeconds), limits.map((l) => l.reset_after));
  assert.deepEqual(s.meters.map((m) => m.resetAt.toISOString().replace(".000Z", "Z")), limits.map((l) => l.reset));
  const fiveHours = limits[0].reset_after;
  Date.now.mock.mockImplementation(() => t0 + fiveHours * 1000);
  assert.deepEqual(s.meters.map((m) => m.hasReset), [true, false]);
  assert.equal(s.meters[1].resetAfterSeconds, limits[1].reset_after - fiveHours);

  const usage = fromUsage(response("stacked_usage_windows").body).find((c) => c.class === "summaries");
  assert.deepEqual(meters(usage), [["You: 3 of 3 in this 5-hour window", true], ["You: 3 of 5 this week", false]]);
});

test("a response the filter did not classify has no state", () => {
  const r = response("unclassified");
  assert.equal(r.status, 200);
  assert.equal(fromHeaders(r.headers, r.body), undefined);
  assert.equal(fromHeaders({}), undefined);
  assert.equal(fromHeaders(null), undefined);
});

test("headers in any usual shape read the same", () => {
  const { pairs, headers } = response("draft_first_warning");
  const expected = fromHeaders(headers).toJSON();
  delete expected.resetAfterSeconds; // may tick between two readings
  const plain = Object.fromEntries(pairs);
  const shouting = Object.fromEntries(pairs.map(([n, v]) => [n.toUpperCase(), v]));
  // Node's IncomingHttpHeaders: lowercase names, numbers as strings, some arrays.
  const node = { ...plain, ratelimit: [plain.ratelimit] };
  const shapes = { headers, plain, shouting, node, map: new Map(pairs), pairs };
  for (const meter of expected.meters) delete meter.resetAfterSeconds;
  for (const [shape, input] of Object.entries(shapes)) {
    const got = fromHeaders(input).toJSON();
    delete got.resetAfterSeconds;
    for (const meter of got.meters) delete meter.resetAfterSeconds;
    assert.deepEqual(got, expected, shape);
  }
});

test("a refusal body may be given parsed", () => {
  const r = response("draft_blocked");
  assert.equal(fromHeaders(r.headers, JSON.parse(r.body)).message, fromHeaders(r.headers, r.body).message);
});

test("the IETF RateLimit fields alone are enough for a meter", () => {
  const { pairs } = response("draft_first_warning");
  const ietf = pairs.filter(([name]) => !name.startsWith("x-quota-"));
  const s = fromHeaders(ietf);
  assert.equal(s.class, "drafts");
  assert.deepEqual([s.used, s.limit, s.remaining, s.windowSeconds], [5, 10, 5, 86400]);
  assert.equal(s.resetAfterSeconds, Number(header("draft_first_warning", "x-quota-reset-after")));
  assert.equal(s.warning, undefined);
});

test("the usage report gives one state per class of the plan", () => {
  const r = response("usage_free_blocked");
  const report = JSON.parse(r.body);
  const states = fromUsage(r.body);
  assert.deepEqual(states.map((s) => s.class), report.classes.map((c) => c.class));
  const drafts = states.find((s) => s.class === "drafts");
  const raw = report.classes.find((c) => c.class === "drafts");
  assert.equal(drafts.state, "blocked");
  assert.equal(drafts.message, raw.message);
  assert.equal(drafts.label, "Drafts");
  assert.equal(drafts.tier, "free");
  assert.equal(drafts.fractionUsed, raw.fraction_used);
  assert.equal(drafts.upgradeText, raw.upgrade.text);
  assert.ok(drafts.message.includes(`They reset in ${drafts.resetInWords}.`), drafts.message);
  const research = states.find((s) => s.class === "deep_research");
  assert.equal(research.state, "not_included");
  assert.equal(research.upgradeText, "Pro includes 3 a day: https://example.com/upgrade?plan=pro");
  assert.equal(research.fractionUsed, 0);

  assert.deepEqual(fromUsage(report).map((s) => s.toJSON().used), states.map((s) => s.toJSON().used));
  const pro = fromUsage(response("usage_pro").body).find((s) => s.class === "deep_research");
  assert.deepEqual([pro.state, pro.used, pro.limit, pro.softLimit], ["ok", 1, 3, 2]);
});

test("fromUsage refuses what is not a report", () => {
  assert.throws(() => fromUsage("[]"), /fromUsage: the usage report is a JSON object/);
  assert.throws(() => fromUsage("{"), /fromUsage: /);
  assert.throws(() => fromUsage(undefined), /expected the usage endpoint's JSON/);
});

test("the countdown runs on the client's clock from when the response arrived", (t) => {
  const t0 = 1_900_000_000_000;
  t.mock.method(Date, "now", () => t0);
  const s = stateOf("draft_blocked");
  const after = Number(header("draft_blocked", "retry-after"));
  assert.equal(s.resetAfterSeconds, after);
  Date.now.mock.mockImplementation(() => t0 + (after - 90) * 1000);
  assert.equal(s.resetAfterSeconds, 90);
  assert.equal(s.resetInWords, "2 min");
  Date.now.mock.mockImplementation(() => t0 + after * 1000 - 400);
  assert.equal(s.resetInWords, "1 s");
  assert.equal(s.hasReset, false);
  Date.now.mock.mockImplementation(() => t0 + after * 1000);
  assert.equal(s.resetAfterSeconds, 0);
  assert.equal(s.hasReset, true);
});

test("JSON.stringify gives every value with the JavaScript names", () => {
  const json = JSON.parse(JSON.stringify(stateOf("draft_first_warning")));
  assert.deepEqual(Object.keys(json).sort(), [
    "class", "cost", "costText", "currency", "degradedTo", "fractionUsed", "grant", "grantText", "label", "limit",
    "limitText", "message", "meters", "overage", "overageText", "pace", "paceMessage", "remaining", "remainingText",
    "resetAfterSeconds", "resetAt", "resetInWords", "scope", "softLimit", "softLimitText", "state", "tier",
    "upgradeText", "upgradeUrl", "used", "usedText", "warning", "window", "windowSeconds",
  ]);
  assert.equal(json.resetAt, header("draft_first_warning", "x-quota-reset"));
  assert.equal(json.state, "warning");
  assert.deepEqual(Object.keys(json.meters[0]).sort(), [
    "binding", "currency", "fractionUsed", "label", "limit", "limitText", "message", "policy", "remaining",
    "remainingText", "resetAfterSeconds", "resetAt", "resetInWords", "scope", "softLimit", "softLimitText", "state",
    "used", "usedText", "window", "windowSeconds",
  ]);
  assert.deepEqual([json.meters[0].label, json.meters[0].binding, json.meters[0].resetAt], ["You: 5 of 10 today", true, json.resetAt]);
  const stacked = JSON.parse(JSON.stringify(stateOf("stacked_member_ok")));
  assert.deepEqual(stacked.meters.map((m) => [m.policy, m.used]), [["drafts.workspace.day", null], ["drafts.user.day", 1]]);
});
