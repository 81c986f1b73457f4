// Drives the demo page in headless Chromium against a real Envoy: a free
// user writes drafts until the wall, the page must show the meter filling,
// both warnings, the block message with its reset time and upgrade link, and
// then (the test's drafts window is 20 seconds) the reset, by itself.
//
//   node client/tests/browser/demo_page.mjs --url http://127.0.0.1:PORT/demo/ \
//        --screenshots DIR [--chromium /usr/bin/chromium]
//
// Run by envoy/tests/test_demo_page.py, which starts Envoy with that config.
// Prints one line per step; exits non-zero, naming the step, on a failure.

import assert from "node:assert/strict";
import { join } from "node:path";
import { browserArgs, runSteps } from "./session.mjs";

const args = browserArgs();
const RESET_TIMEOUT_MS = 40_000;

await runSteps("demo page", args, async ({ page, log }) => {
  log(`open the page as ${args.user} on the Free plan`);
  const url = new URL(args.url);
  url.searchParams.set("user", args.user);
  url.searchParams.set("tier", "free");
  await page.goto(url.href);
  await page.locator("body[data-ready=true]").waitFor();
  assert.equal(await page.locator("#plan").textContent(), `${args.user} on the Free plan, workspace acme`);

  const drafts = page.locator('article[data-class="drafts"]');
  const meter = page.getByRole("meter", { name: "Drafts" });
  const button = page.getByRole("button", { name: "Write a draft" });
  const warning = drafts.getByRole("status");
  const blocked = drafts.getByRole("alert");

  async function meterAt(used, max) {
    await page.waitForFunction(
      ([el, used, max]) => el.value === used && el.max === max,
      [await meter.elementHandle(), used, max],
    );
  }

  log("every class of the plan has a card; drafts start empty");
  const classes = await page.locator("article[data-class]").evaluateAll((els) => els.map((e) => e.dataset.class));
  assert.deepEqual(classes.sort(), ["batch_records", "deep_research", "drafts", "premium_chat", "summaries"]);
  await meterAt(0, 10);
  assert.equal(await drafts.getAttribute("data-state"), "ok");

  const warnings = [];
  for (let used = 1; used <= 10; used++) {
    log(`draft ${used}: the meter reads ${used} of 10`);
    await button.click();
    await meterAt(used, 10);
    await page.waitForFunction(() => !document.querySelector('article[data-class="drafts"] .act').disabled);
    if (used < 5) {
      assert.equal(await warning.isVisible(), false, `no warning before the soft limit (draft ${used})`);
      assert.equal(await drafts.getAttribute("data-state"), "ok");
    } else {
      assert.equal(await drafts.getAttribute("data-state"), "warning");
      assert.equal(await warning.isVisible(), true, `a warning from the soft limit on (draft ${used})`);
      warnings.push(await warning.textContent());
    }
  }

  log("the warnings name the count, the reset and the upgrade");
  assert.match(warnings[0], /^You've used 5 of your 10 drafts in this 20-second window\. They reset in \d+ s\. Pro includes 100 a day: https:\/\/example\.com\/upgrade\?plan=pro$/);
  assert.match(warnings[4], /^You have 1 draft left in this 20-second window\./);
  assert.match(warnings[5], /^That was the last of your 10 drafts in this 20-second window\./);
  assert.equal(new Set(warnings.map((w) => w.replace(/ \d+ s\./, ""))).size >= 3, true, "distinct warnings");
  assert.equal(await drafts.locator(".upgrade-link").getAttribute("href"), "https://example.com/upgrade?plan=pro");

  log("draft 11 hits the wall: the friendly block, its reset time and the upgrade link");
  await button.click();
  await blocked.waitFor({ state: "visible" });
  const blockText = await blocked.textContent();
  assert.match(blockText.trim(), /^You've used your 10 drafts in this 20-second window\. They reset in \d+ s\. Pro includes 100 a day: https:\/\/example\.com\/upgrade\?plan=pro$/);
  assert.equal(await drafts.getAttribute("data-state"), "blocked");
  assert.equal(await warning.isVisible(), false);
  await meterAt(10, 10);
  assert.equal(await meter.getAttribute("aria-valuetext"), "10 of 10 used");
  assert.equal(await drafts.locator(".badge").textContent(), "Blocked");
  const resetIn = await drafts.locator(".reset-in").textContent();
  assert.match(resetIn, /^\d+ s$/);
  const resetAt = await drafts.locator("time.reset-at").getAttribute("datetime");
  assert.ok(Date.parse(resetAt) > Date.now() - 5_000, `reset time ${resetAt} is ahead`);
  assert.equal(await drafts.getByRole("link").getAttribute("href"), "https://example.com/upgrade?plan=pro");
  assert.match(await page.locator("#last-response").textContent(), /-> 429/);

  log("deep research is not in the Free plan: the page says so, with the upgrade");
  await page.getByRole("button", { name: "Start deep research" }).click();
  const research = page.locator('article[data-class="deep_research"]');
  await research.getByRole("alert").waitFor({ state: "visible" });
  assert.equal(
    (await research.getByRole("alert").textContent()).trim(),
    "Deep research isn't included in the Free plan. Pro includes 3 a day: https://example.com/upgrade?plan=pro",
  );

  log("screenshot at the wall");
  await page.screenshot({ path: join(args.screenshots, "demo-page-blocked.png"), fullPage: true });

  log("the window resets by itself: the meter empties and the block goes");
  await page.waitForFunction(
    (el) => el.value === 0 && el.closest("article").dataset.state === "ok",
    await meter.elementHandle(),
    { timeout: RESET_TIMEOUT_MS },
  );
  assert.equal(await blocked.isVisible(), false);
  assert.equal(await warning.isVisible(), false);

  log("after the reset a draft goes through again");
  await button.click();
  await meterAt(1, 10);
  assert.equal(await drafts.getAttribute("data-state"), "ok");
  await page.screenshot({ path: join(args.screenshots, "demo-page-after-reset.png"), fullPage: true });
});
