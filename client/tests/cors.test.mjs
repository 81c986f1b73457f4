// fromResponse and exposeHeaders: a page on another origin than the API.
// Responses recorded from real Envoy (recorded.json), seen as a browser lets
// a cross-origin page see them: the CORS-safelisted headers and those the
// API lists in Access-Control-Expose-Headers, nothing else (Fetch's rule;
// envoy/tests/test_cors.py proves it in Chromium). Run: `npm test` in client/.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { exposeHeaders, fromHeaders, fromResponse, initSync, QuotaReading, QuotaState } from "quota-client";

initSync({ module: readFileSync(fileURLToPath(import.meta.resolve("quota-client/quota_client_bg.wasm"))) });

const recorded = JSON.parse(readFileSync(new URL("./recorded.json", import.meta.url), "utf8"));
const API = "https://api.example.com";
const SAFELISTED = new Set(["cache-control", "content-language", "content-length", "content-type", "expires", "last-modified", "pragma"]);
// What the README recommends: envoy/examples/cors.yaml's expose_headers.
const RECOMMENDED = exposeHeaders().join(", ");

/**
 * A recorded response as a page on another origin gets it from fetch, the
 * API sending `Access-Control-Expose-Headers: expose` (undefined: none).
 */
function crossOrigin(name, expose) {
  const r = recorded[name];
  assert.ok(r, `no recorded response ${name}`);
  const pairs = [...r.headers, ["access-control-allow-origin", "https://app.example.com"]];
  if (expose !== undefined) pairs.push(["access-control-expose-headers", expose]);
  const listed = new Set((expose ?? "").split(",").map((n) => n.trim().toLowerCase()));
  const visible = pairs.filter(([n]) => listed.has("*") || SAFELISTED.has(n) || listed.has(n));
  return { type: "cors", url: `${API}${r.request.path}`, status: r.status, headers: new Headers(visible), body: r.body };
}

/** The same response from the page's own origin: a real fetch Response. */
function sameOrigin(name) {
  const r = recorded[name];
  return new Response(r.body, { status: r.status, headers: r.headers });
}

test("a cross-origin response with the quota headers exposed reads as from the same origin", () => {
  for (const name of ["draft_ok", "draft_first_warning", "stacked_member_ok"]) {
    const reading = fromResponse(crossOrigin(name, RECOMMENDED));
    assert.ok(reading instanceof QuotaReading);
    assert.equal(reading.kind, "quota", name);
    assert.ok(reading.quota instanceof QuotaState);
    assert.deepEqual(reading.missingHeaders, []);
    assert.equal(reading.message, undefined);
    const own = fromHeaders(sameOrigin(name).headers).toJSON();
    const got = reading.quota.toJSON();
    delete own.resetAfterSeconds;
    delete got.resetAfterSeconds;
    for (const m of [...own.meters, ...got.meters]) delete m.resetAfterSeconds;
    assert.deepEqual(got, own, name);
  }
});

test("without Access-Control-Expose-Headers the headers are hidden, not 'not classified'", () => {
  const res = crossOrigin("draft_ok", undefined);
  // What the page sees: nothing of ours, exactly as on an unclassified route.
  assert.deepEqual([...res.headers.keys()], ["content-length", "content-type"]);
  assert.equal(fromHeaders(res.headers), undefined);

  const reading = fromResponse(res);
  assert.equal(reading.kind, "hidden_by_cors");
  assert.equal(reading.quota, undefined);
  assert.deepEqual(reading.missingHeaders, exposeHeaders());
  assert.ok(reading.message.startsWith(`The response came from ${API}, another origin than this page's`), reading.message);
  assert.match(reading.message, /Access-Control-Expose-Headers/);
  assert.ok(reading.message.includes(RECOMMENDED), reading.message);
  assert.deepEqual(reading.toJSON(), {
    kind: "hidden_by_cors", quota: null, message: reading.message, missingHeaders: exposeHeaders(),
  });
  // An unclassified route behind the same policy: the page cannot tell.
  assert.equal(fromResponse(crossOrigin("unclassified", undefined)).kind, "hidden_by_cors");
});

test("a readable expose list tells an unclassified route apart", () => {
  const reading = fromResponse(crossOrigin("unclassified", RECOMMENDED));
  assert.equal(reading.kind, "not_classified");
  assert.equal(reading.quota, undefined);
  assert.deepEqual(reading.missingHeaders, []);
  assert.match(reading.message, /did not classify this request/);
  assert.equal(fromResponse(crossOrigin("unclassified", "*")).kind, "not_classified");
});

test("an expose list without the quota headers names the ones to add", () => {
  const reading = fromResponse(crossOrigin("draft_ok", "access-control-expose-headers, x-request-id"));
  assert.equal(reading.kind, "hidden_by_cors");
  assert.deepEqual(reading.missingHeaders, exposeHeaders().filter((n) => n !== "access-control-expose-headers"));
  assert.match(reading.message, /does not list them\. Add these there/);
});

test("a refusal's body still gives the wall's sentence with the headers hidden", () => {
  const res = crossOrigin("draft_blocked", undefined);
  assert.equal(res.status, 429);
  const reading = fromResponse(res, res.body);
  assert.equal(reading.kind, "quota");
  const s = reading.quota;
  assert.equal(s.state, "blocked");
  assert.equal(s.message, JSON.parse(res.body).error.message);
  assert.deepEqual([s.used, s.limit], [10, 10]);
});

test("the page's own origin and Node read every header: no quota is 'not classified'", () => {
  const res = sameOrigin("unclassified");
  assert.equal(res.type, "default");
  const reading = fromResponse(res);
  assert.equal(reading.kind, "not_classified");
  assert.equal(fromResponse(sameOrigin("draft_ok")).quota.used, 1);
  // Any object with headers (axios, Node's http): read as it is.
  assert.equal(fromResponse({ headers: Object.fromEntries(recorded.draft_ok.headers) }).quota.class, "drafts");
  assert.equal(fromResponse({ headers: {} }).kind, "not_classified");
  assert.equal(fromResponse({}).kind, "not_classified");
});

test("an opaque response (mode: 'no-cors') says the page can read nothing of it", () => {
  const reading = fromResponse({ type: "opaque", url: "", status: 0, headers: new Headers() });
  assert.equal(reading.kind, "hidden_by_cors");
  assert.match(reading.message, /mode "no-cors"/);
});

test("exposeHeaders lists what the client reads, then itself", () => {
  const list = exposeHeaders();
  for (const name of ["x-quota-class", "x-quota-used", "x-quota-limit", "x-quota-warning", "ratelimit-policy", "ratelimit", "retry-after"]) {
    assert.ok(list.includes(name), name);
  }
  assert.equal(list.at(-1), "access-control-expose-headers");
  assert.equal(new Set(list).size, list.length);
  const example = readFileSync(new URL("../../envoy/examples/cors.yaml", import.meta.url), "utf8");
  const line = example.split("\n").find((l) => l.trim().startsWith("expose_headers:"));
  assert.equal(line.split(":")[1].trim(), RECOMMENDED);
});
