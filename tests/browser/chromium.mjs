// Debian's Chromium, headless, driven by playwright-core (no browser
// download). Screenshots go to `target/browser-artifacts/` (or
// $PODHOST_ARTIFACTS) so a failed run can be looked at.

import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));

export const ARTIFACTS =
  process.env.PODHOST_ARTIFACTS ?? resolve(here, "..", "..", "target", "browser-artifacts");

/** Launches headless Chromium; flags keep it off this machine's closed network. */
export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
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
  });
}

/** Saves a screenshot of `page` as `<ARTIFACTS>/<name>.png`. */
export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}
