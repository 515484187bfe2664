// The browser harness itself: Chromium starts and loads a page podhost serves.
import { test } from "node:test";
import assert from "node:assert/strict";
import { launch } from "./chromium.mjs";
import { Podhost } from "../js/podhost.mjs";

test("chromium loads a page from podhost", async () => {
  const server = await Podhost.start();
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const response = await page.goto(`${server.url}/healthz`);
    assert.equal(response.status(), 200);
  } finally {
    await browser.close();
    await server.close();
  }
});
