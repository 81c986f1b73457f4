// The built package (`make client`), imported by its package name as an app
// would, against responses recorded from real Envoy (recorded.json, made by
// record_responses.py). Run: `npm test` in client/ (node --test).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { fromHeaders, fromUsage, initSync, QuotaState } from "quota-client";

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
  for (const [shape, input] of Object.entries(shapes)) {
    const got = fromHeaders(input).toJSON();
    delete got.resetAfterSeconds;
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
    "class", "cost", "degradedTo", "fractionUsed", "grant", "label", "limit", "message", "overage",
    "pace", "paceMessage", "remaining", "resetAfterSeconds", "resetAt", "resetInWords", "scope",
    "softLimit", "state", "tier", "upgradeText", "upgradeUrl", "used", "warning", "window", "windowSeconds",
  ]);
  assert.equal(json.resetAt, header("draft_first_warning", "x-quota-reset"));
  assert.equal(json.state, "warning");
});
