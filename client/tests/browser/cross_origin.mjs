// Drives envoy/examples/cors-page/ in headless Chromium: a page served from
// one origin calling the API through Envoy (envoy/examples/cors.yaml) on
// another, drawing the meters with the client package.
//
//   node client/tests/browser/cross_origin.mjs --url 'http://127.0.0.1:PAGE/?api=http://127.0.0.1:API&user=U' \
//        --screenshots DIR --expect exposed|hidden [--chromium /usr/bin/chromium]
//
// --expect exposed: the API exposes the quota headers: every draft's meter
// comes from its response (reading "quota"), the wall's sentence from the
// 429's body, and a route the filter does not count reads "not_classified".
// --expect hidden: the API sends no expose list: every response reads
// "hidden_by_cors" and the page says what to expose, drawing the meters from
// the usage endpoint instead.
// Run by envoy/tests/test_cors.py, which then compares the last line
// (`DRAWN {...}`: what each card shows) with the filter's counters.

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { runSteps } from "./session.mjs";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    screenshots: { type: "string" },
    expect: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
  },
});
assert.ok(args.url && args.screenshots, "--url and --screenshots are required");
assert.ok(["exposed", "hidden"].includes(args.expect), "--expect exposed|hidden");

await runSteps(`cross-origin page (${args.expect})`, args, async ({ page, log }) => {
  const pageOrigin = new URL(args.url).origin;
  const apiOrigin = new URL(new URL(args.url).searchParams.get("api")).origin;
  assert.notEqual(pageOrigin, apiOrigin, "the page and the API are on different origins");

  log(`open the page on ${pageOrigin}; the API is on ${apiOrigin}`);
  await page.goto(args.url);
  await page.locator("body[data-ready=true]").waitFor();
  assert.equal(await page.evaluate(() => location.origin), pageOrigin);

  const drafts = page.locator('article[data-class="drafts"]');
  const meter = page.getByRole("meter", { name: "Drafts" });
  const button = page.getByRole("button", { name: "Write a draft" });
  const reading = page.locator("#reading");
  const problem = page.locator("#cors-problem");

  async function meterAt(used, max) {
    await page.waitForFunction(
      ([el, used, max]) => el.value === used && el.max === max,
      [await meter.elementHandle(), used, max],
    );
  }

  /** Clicks and waits for the response's line ("POST /v1/... -> 200: quota"). */
  async function press(target, expected) {
    const before = (await reading.getAttribute("data-seq")) ?? "0";
    await target.click();
    await page.waitForFunction(
      ([el, before]) => el.dataset.seq !== before && !document.querySelector("button:disabled"),
      [await reading.elementHandle(), before],
    );
    const text = await reading.textContent();
    assert.match(text, expected);
    return text;
  }

  log("the usage endpoint's body is readable cross-origin: both meters are drawn empty");
  await meterAt(0, 5);
  assert.equal(await drafts.locator(".numbers").textContent(), "0 of 5 used, 5 left");
  assert.equal(await page.getByRole("meter", { name: "Summaries" }).getAttribute("aria-valuetext"), "0 of 10 used");

  if (args.expect === "exposed") {
    for (let used = 1; used <= 5; used++) {
      log(`draft ${used}: drawn from the response's headers (reading "quota")`);
      await press(button, /^POST \/v1\/chat\/completions -> 200: quota$/);
      await meterAt(used, 5);
      assert.equal(await drafts.locator(".numbers").textContent(), `${used} of 5 used, ${5 - used} left`);
      assert.equal(await drafts.getAttribute("data-state"), used < 3 ? "ok" : "warning");
    }
    assert.match(await drafts.getByRole("status").textContent(), /^That was the last of your 5 drafts for today\./);

    log("draft 6 hits the wall: the 429's body gives the sentence");
    await press(button, /^POST \/v1\/chat\/completions -> 429: quota$/);
    assert.equal(await drafts.getAttribute("data-state"), "blocked");
    assert.match(
      await drafts.getByRole("status").textContent(),
      /^You've used your 5 drafts for today\. They reset in .+\. Pro includes 100 a day: https:\/\/example\.com\/upgrade\?plan=pro$/,
    );
    await meterAt(5, 5);

    log("a summary: its own meter");
    await press(page.getByRole("button", { name: "Summarise" }), /^POST \/v1\/summaries -> 200: quota$/);
    assert.equal(await page.getByRole("meter", { name: "Summaries" }).getAttribute("aria-valuetext"), "1 of 10 used");

    log("a route the filter does not count reads as not classified (the page reads the expose list itself)");
    await press(page.getByRole("button", { name: "List models (not counted)" }), /^GET \/v1\/models -> 200: not_classified$/);
    assert.equal(await problem.isVisible(), false, "no CORS problem shown");
  } else {
    log("a draft: its quota headers are hidden, and the page says so");
    await press(button, /^POST \/v1\/chat\/completions -> 200: hidden_by_cors$/);
    await problem.waitFor({ state: "visible" });
    const text = await problem.textContent();
    assert.ok(text.startsWith(`The response came from ${apiOrigin}, another origin than this page's`), text);
    assert.match(text, /Access-Control-Expose-Headers/);
    assert.match(text, /x-quota-class, x-quota-tier, .*ratelimit-policy, ratelimit, retry-after, access-control-expose-headers\./);

    log("the card is redrawn from the usage endpoint instead: the filter did count the draft");
    await meterAt(1, 5);
    assert.equal(await drafts.locator(".numbers").textContent(), "1 of 5 used, 4 left");

    log("a second draft: still hidden, still drawn from the usage endpoint");
    await press(button, /^POST \/v1\/chat\/completions -> 200: hidden_by_cors$/);
    await meterAt(2, 5);

    log("a route the filter does not count: the page cannot tell, so it says hidden, never 'not classified'");
    await press(page.getByRole("button", { name: "List models (not counted)" }), /^GET \/v1\/models -> 200: hidden_by_cors$/);
  }

  log("screenshot");
  await page.screenshot({ path: join(args.screenshots, `cors-page-${args.expect}.png`), fullPage: true });

  const drawn = await page.locator("article[data-class]").evaluateAll((els) =>
    Object.fromEntries(els.map((el) => {
      const m = el.querySelector("meter");
      return [el.dataset.class, { value: m.value, max: m.max, numbers: el.querySelector(".numbers").textContent, state: el.dataset.state }];
    })),
  );
  console.log(`DRAWN ${JSON.stringify(drawn)}`);
});
