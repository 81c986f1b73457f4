// Drives the demo page in headless Chromium against a real Envoy whose Team
// plan stacks two limits on drafts: a pool of 6 a day for the workspace, of
// which a member may use 4 (warnings from the pool's 4th). The drafts card
// must draw one labelled meter per limit and mark the binding one: first the
// member's own share, which refuses Alice's fifth draft; then, for Bob, the
// team's pool, which refuses his third. On Pro, summaries are capped at 3
// every 5 hours and 5 every 7 days: each of those meters shows its own reset.
//
//   node client/tests/browser/stacked_meters.mjs --url http://127.0.0.1:PORT/demo/ \
//        --screenshots DIR [--chromium /usr/bin/chromium]
//
// Run by envoy/tests/test_demo_page.py, which starts Envoy with that config.
// Prints one line per step; exits non-zero, naming the step, on a failure.

import assert from "node:assert/strict";
import { join } from "node:path";
import { browserArgs, runSteps } from "./session.mjs";

const args = browserArgs();
const [alice, bob] = [`${args.user}-alice`, `${args.user}-bob`];

await runSteps("stacked meters", args, async ({ page, log }) => {
  log(`open the page as ${alice} on the Team plan, workspace acme`);
  const url = new URL(args.url);
  url.searchParams.set("user", alice);
  url.searchParams.set("tier", "team");
  await page.goto(url.href);
  await page.locator("body[data-ready=true]").waitFor();
  assert.equal(await page.locator("#plan").textContent(), `${alice} on the Team plan, workspace acme`);

  const drafts = page.locator('article[data-class="drafts"]');
  const button = page.getByRole("button", { name: "Write a draft" });

  /** Waits until the drafts card shows these rows: [caption, binding]. */
  async function rowsAre(expected) {
    const read = (card) =>
      [...card.querySelectorAll(".limits .limit")].map((li) => [
        li.querySelector(".limit-label").textContent,
        li.dataset.binding === "true",
      ]);
    try {
      await page.waitForFunction(
        ([card, want]) => JSON.stringify(want) === JSON.stringify(
          [...card.querySelectorAll(".limits .limit")].map((li) => [
            li.querySelector(".limit-label").textContent,
            li.dataset.binding === "true",
          ]),
        ),
        [await drafts.elementHandle(), expected],
      );
    } catch (err) {
      assert.deepEqual(await drafts.evaluate(read), expected, `the rows never read as expected: ${err.message}`);
    }
  }

  async function write() {
    await button.click();
    await page.waitForFunction(() => !document.querySelector('article[data-class="drafts"] .act').disabled);
  }

  log("the drafts card draws one meter per limit instead of one for the class");
  await rowsAre([["Team: 0 of 6 today", false], ["You: 0 of 4 today", true]]);
  assert.equal(await drafts.locator(".meter").isVisible(), false);
  assert.equal(await drafts.locator(".numbers").isVisible(), false);
  const meters = drafts.getByRole("meter");
  assert.equal(await meters.count(), 2);
  assert.equal(await page.getByRole("meter", { name: "Team: 0 of 6 today" }).getAttribute("aria-valuetext"), "0 of 6 used");
  assert.equal(await drafts.locator('.limit[data-binding="true"] .limit-tag').isVisible(), true);
  assert.equal(await drafts.locator('.limit[data-binding="false"] .limit-tag').isVisible(), false);
  // Other classes of the plan have one limit: one meter, as before.
  const summaries = page.locator('article[data-class="summaries"]');
  assert.equal(await summaries.locator(".meter").isVisible(), true);
  assert.equal(await summaries.locator(".limits").isVisible(), false);

  for (let used = 1; used <= 4; used++) {
    log(`draft ${used}: both meters count it, and her own share binds`);
    await write();
    await rowsAre([[`Team: ${used} of 6 today`, false], [`You: ${used} of 4 today`, true]]);
  }
  assert.equal(await drafts.locator(".limit").nth(0).getAttribute("data-state"), "warning");
  // Both limits reset at midnight: the card says it once.
  assert.equal(await drafts.locator(".limit-reset").first().isVisible(), false);
  assert.match(await drafts.locator(".reset-in").textContent(), /^\d+ (h|min|s)/);

  log("draft 5: her own share refuses, with the team's words for it");
  await write();
  const blocked = drafts.getByRole("alert");
  await blocked.waitFor({ state: "visible" });
  assert.match(
    (await blocked.textContent()).trim(),
    /^You've used your 4 drafts of your team's allowance for today\. They reset in .+\./,
  );
  assert.equal(await drafts.getAttribute("data-state"), "blocked");
  await rowsAre([["Team: 4 of 6 today", false], ["You: 4 of 4 today", true]]);
  assert.equal(await drafts.locator(".limit").nth(1).getAttribute("data-state"), "blocked");
  assert.equal(await page.getByRole("meter", { name: "You: 4 of 4 today" }).getAttribute("aria-valuetext"), "4 of 4 used");
  await page.screenshot({ path: join(args.screenshots, "demo-page-stacked-member.png"), fullPage: true });

  log(`switch to ${bob} in the same workspace: the team's pool binds him`);
  await page.locator("#user").fill(bob);
  await page.getByRole("button", { name: "Switch" }).click();
  await page.waitForFunction((name) => document.querySelector("#plan").textContent.startsWith(name), bob);
  await rowsAre([["Team: 4 of 6 today", true], ["You: 0 of 4 today", false]]);
  assert.equal(await drafts.getAttribute("data-state"), "warning");

  for (let used = 1; used <= 2; used++) {
    log(`Bob's draft ${used}: the pool fills`);
    await write();
    await rowsAre([[`Team: ${4 + used} of 6 today`, true], [`You: ${used} of 4 today`, false]]);
  }

  log("Bob's draft 3: the team's pool refuses");
  await write();
  await blocked.waitFor({ state: "visible" });
  assert.match((await blocked.textContent()).trim(), /^Your team has used its 6 drafts for today\. They reset in .+\./);
  await rowsAre([["Team: 6 of 6 today", true], ["You: 2 of 4 today", false]]);
  assert.equal(await drafts.locator(".limit").nth(0).getAttribute("data-state"), "blocked");
  await page.screenshot({ path: join(args.screenshots, "demo-page-stacked-pool.png"), fullPage: true });

  log("on Pro, summaries are capped every 5 hours and every 7 days: each meter says when it resets");
  await page.locator("#tier").selectOption("pro");
  await page.waitForFunction(() => document.querySelector("#plan").textContent.includes("on the Pro plan"));
  await summaries.locator(".limits").waitFor({ state: "visible" });
  await page.getByRole("button", { name: "Summarise" }).click();
  await page.waitForFunction(
    (card) => [...card.querySelectorAll(".limit-label")].map((l) => l.textContent).join(" | ") ===
      "You: 1 of 3 in this 5-hour window | You: 1 of 5 in this 7-day window",
    await summaries.elementHandle(),
  );
  const resets = summaries.locator(".limit-reset");
  assert.match(await resets.nth(0).textContent(), /^Resets in (5 h|4 h 59 min)$/);
  assert.match(await resets.nth(1).textContent(), /^Resets in (7 days|6 days 23 h)/);
  // Drafts on Pro are one limit again: one meter.
  await drafts.locator(".meter").waitFor({ state: "visible" });
  assert.equal(await drafts.locator(".limits").isVisible(), false);
});
