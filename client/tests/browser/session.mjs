// What the browser tests of the demo page share: their arguments, a headless
// Chromium with a fresh profile, a page that collects errors, and a log with
// one line per step. A test is `runSteps(name, args, async ({ page, log }) => ...)`:
// it prints "<name>: all steps passed", or names the failed step and exits
// non-zero.

import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

export const STEP_TIMEOUT_MS = 10_000;

/** `--url`, `--screenshots` (both required), `--chromium` and `--user`. */
export function browserArgs() {
  const { values: args } = parseArgs({
    options: {
      url: { type: "string" },
      screenshots: { type: "string" },
      chromium: { type: "string", default: "/usr/bin/chromium" },
      user: { type: "string", default: `e2e-${process.pid}` },
    },
  });
  assert.ok(args.url, "--url is required");
  assert.ok(args.screenshots, "--screenshots is required");
  mkdirSync(args.screenshots, { recursive: true });
  return args;
}

export async function runSteps(name, args, steps) {
  const profile = mkdtempSync(join(tmpdir(), "demo-page-chromium-"));
  // A fresh profile directory: Playwright passes it as --user-data-dir.
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: args.chromium,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 1000 },
    locale: "en-GB",
  });

  const problems = [];
  const started = Date.now();
  let step = "start";
  function log(text) {
    step = text;
    console.log(`- [${((Date.now() - started) / 1000).toFixed(1)} s] ${text}`);
  }

  try {
    const page = browser.pages()[0] ?? (await browser.newPage());
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (msg) => {
      // The browser logs every refused fetch; those refusals are the point here.
      const expected = /^Failed to load resource: the server responded with a status of (429|403)\b/;
      if (msg.type() === "error" && !expected.test(msg.text())) problems.push(`console error: ${msg.text()}`);
    });
    await steps({ page, log });
    assert.deepEqual(problems, [], "no errors in the page");
    console.log(`${name}: all steps passed`);
  } catch (err) {
    console.error(`${name}: FAILED at step "${step}"`);
    console.error(err);
    if (problems.length) console.error(problems.join("\n"));
    process.exitCode = 1;
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
}
