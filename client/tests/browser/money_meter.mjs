// Drives the demo page in headless Chromium against a real Envoy running the
// demo matrix: a Pro user asks the premium model, a class metered in money
// ($3.00 soft, $5.00 hard a month, priced by model). The card must write its
// numbers as money: first the reservation the response's headers carry (the
// prompt at gpt-4o's input price and max_tokens 1000 at its output price,
// about a cent), then, read again from the usage endpoint, what the request
// settled to (the tokens the upstream reported, a fraction of a cent).
//
//   node client/tests/browser/money_meter.mjs --url http://127.0.0.1:PORT/demo/ \
//        --screenshots DIR [--chromium /usr/bin/chromium]
//
// Run by envoy/tests/test_demo_page.py, which starts Envoy with the demo config.
// Prints one line per step; exits non-zero, naming the step, on a failure.

import assert from "node:assert/strict";
import { join } from "node:path";
import { browserArgs, runSteps } from "./session.mjs";

const args = browserArgs();

await runSteps("money meter", args, async ({ page, log }) => {
  log(`open the page as ${args.user} on the Pro plan`);
  const url = new URL(args.url);
  url.searchParams.set("user", args.user);
  url.searchParams.set("tier", "pro");
  await page.goto(url.href);
  await page.locator("body[data-ready=true]").waitFor();
  assert.equal(await page.locator("#plan").textContent(), `${args.user} on the Pro plan, workspace acme`);

  const card = page.locator('article[data-class="premium_chat"]');
  const meter = page.getByRole("meter", { name: "Premium chat" });
  const numbers = card.locator(".numbers");

  log("the premium chat card starts empty, in dollars");
  assert.equal(await numbers.textContent(), "$0.00 of $5.00 used, $5.00 left, warnings from $3.00");
  assert.equal(await meter.getAttribute("aria-valuetext"), "$0.00 of $5.00 used");
  assert.equal(await card.getAttribute("data-state"), "ok");
  assert.equal(await meter.evaluate((el) => el.max), 5);
  assert.equal(await meter.evaluate((el) => el.value), 0);

  log("ask the premium model: the meter reads the reservation, in money");
  await page.getByRole("button", { name: "Ask the premium model" }).click();
  await page.waitForFunction((el) => el.value > 0, await meter.elementHandle());
  await page.waitForFunction(() => !document.querySelector('article[data-class="premium_chat"] .act').disabled);
  const last = await page.locator("#last-response").textContent();
  assert.match(last, /^POST \/v1\/premium\/chat\/completions -> 200/);
  assert.match(last, /^x-quota-class: premium_chat$/m);
  assert.match(last, /^x-quota-currency: USD$/m);
  // gpt-4o: max_tokens 1000 at $10.00 a million is $0.01, and the prompt,
  // estimated at 9 tokens, at $2.50 a million: $0.0000225, rounded up once.
  assert.match(last, /^x-quota-used: 0\.010023$/m);
  assert.match(last, /^x-quota-cost: 0\.010023$/m);
  const used = 0.010023;
  assert.equal(await numbers.textContent(), "$0.01 of $5.00 used, $4.98 left, warnings from $3.00");
  assert.equal(await meter.getAttribute("aria-valuetext"), "$0.01 of $5.00 used");
  assert.equal(await meter.evaluate((el) => el.value), used);
  assert.equal(await card.getAttribute("data-state"), "ok");
  assert.match(await card.locator(".reset-in").textContent(), /^\d+ days?( \d+ h)?$|^\d+ h( \d+ min)?$|^\d+ (min|s)/);
  await page.screenshot({ path: join(args.screenshots, "demo-page-money.png"), fullPage: true });

  log("read again: the request settled to the tokens the upstream reported, a fraction of a cent");
  await page.getByRole("button", { name: "Switch" }).click();
  try {
    await page.waitForFunction((el) => el.value > 0 && el.value < 0.001, await meter.elementHandle());
  } catch (err) {
    assert.fail(`the meter never read the settled amount (${await meter.evaluate((el) => el.value)}, ` +
      `"${await numbers.textContent()}"): ${err.message}`);
  }
  // The mock upstream reports 7 prompt tokens (its words) and 7 completion
  // tokens: 7 x $2.50 + 7 x $10.00 a million = $0.0000875, rounded up once.
  // Below a cent the client writes the amount's first digit, not "$0.00".
  assert.equal(await meter.evaluate((el) => el.value), 0.000088);
  assert.equal(await numbers.textContent(), "$0.00008 of $5.00 used, $4.99 left, warnings from $3.00");
  assert.equal(await meter.getAttribute("aria-valuetext"), "$0.00008 of $5.00 used");
  assert.equal(await card.getAttribute("data-state"), "ok");

  log("other classes still count requests");
  assert.equal(
    await page.locator('article[data-class="drafts"] .numbers').textContent(),
    "0 of 100 used, 100 left, warnings from 60",
  );
});
