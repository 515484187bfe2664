// The notes app in headless Chromium: examples/notes served by podhost
// with its UI (examples/notes/web, built by `npm run build` there) from
// the same origin. Two tabs of one user stay in sync, another user sees
// none of it, a server restart and a tab offline for 10 s lose nothing;
// a lost answer is not taken for a refusal, and a tab signed in again as
// another user keeps nothing of the last one's notes; a list older than a
// batch does not forget the batch's note.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { launch, screenshot } from "./chromium.mjs";
import { guest, Podhost } from "../js/podhost.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const web = resolve(here, "..", "..", "examples", "notes", "web");
const PASSWORD = "correct horse battery staple";

let server;
let browser;

before(async () => {
  server = await Podhost.start({
    classes: { notes: { path: guest("notes"), access: "user" } },
    config: `[assets]\ndir = ${JSON.stringify(web)}\n`,
  });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.close();
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A tab on the notes app; `signUp` makes the account first. */
async function openTab(context, { signUp, email } = {}) {
  const page = await context.newPage();
  page.on("pageerror", (error) => console.error(`page error: ${error}`));
  await page.goto(`${server.url}/`);
  if (signUp || email) {
    await page.locator("#email").fill(email);
    await page.locator("#password").fill(PASSWORD);
    await page.locator(signUp ? "#signup" : "#login").click();
  }
  await page.locator("#notes-view").waitFor({ state: "visible", timeout: 10_000 });
  await connected(page);
  return page;
}

async function connected(page, timeout = 10_000) {
  await page.locator('#connection[data-state="open"]').waitFor({ timeout });
}

function note(page, title) {
  return page.locator("li.note", { has: page.locator(".title", { hasText: title }) });
}

async function createNote(page, title, body) {
  await page.locator("#new-title").fill(title);
  await page.locator("#new-body").fill(body);
  await page.locator("#create").click();
}

async function editNote(page, title, newTitle, newBody) {
  const item = note(page, title);
  await item.locator(".edit").click();
  await item.locator(".edit-title").fill(newTitle);
  await item.locator(".edit-body").fill(newBody);
  await item.locator(".save").click();
}

/** Milliseconds from now until `locator` is visible. */
async function timeUntilVisible(locator, timeout = 5000) {
  const started = Date.now();
  await locator.waitFor({ state: "visible", timeout });
  return Date.now() - started;
}

test("two tabs of one user stay in sync; another user sees nothing; restarts and outages lose nothing", async () => {
  const ann = await browser.newContext();
  const tab1 = await openTab(ann, { signUp: true, email: "ann@example.com" });
  const tab2 = await openTab(ann); // the same browser: signed in by its cookie

  // A create in one tab shows in the other (the batch window is 150 ms).
  await createNote(tab1, "Groceries", "milk, eggs");
  await note(tab1, "Groceries").waitFor(); // at once, optimistically
  const createdIn = await timeUntilVisible(note(tab2, "Groceries"));
  // An edit the other way round.
  const editStarted = Date.now();
  await editNote(tab2, "Groceries", "Groceries (Saturday)", "milk, eggs, bread");
  await note(tab1, "Groceries (Saturday)").waitFor({ timeout: 5000 });
  const editedIn = Date.now() - editStarted;
  console.log(`create reached the other tab in ${createdIn} ms, an edit in ${editedIn} ms`);
  await screenshot(tab1, "notes-tab1-synced");
  await screenshot(tab2, "notes-tab2-synced");

  // Another user has notes of their own and sees none of Ann's.
  const bob = await browser.newContext();
  const bobTab = await openTab(bob, { signUp: true, email: "bob@example.com" });
  await createNote(bobTab, "Bob's list", "nails");
  await note(bobTab, "Bob's list").waitFor();
  await createNote(tab1, "Ann's secret", "not for Bob");
  await note(tab2, "Ann's secret").waitFor({ timeout: 5000 });
  await sleep(500); // a batch for Bob would have arrived by now
  assert.equal(await bobTab.locator("li.note").count(), 1);
  assert.equal(await note(bobTab, "Groceries").count(), 0);
  assert.equal(await note(tab1, "Bob's list").count(), 0);
  await screenshot(bobTab, "notes-other-user");

  // Restart the server: an edit made while it is down waits in the tab's
  // outbox and arrives once it is back; both tabs reconnect.
  const restarting = server.restart({ downFor: 4000 }); // long enough for a slow machine to type the edit while it is down
  await tab1.locator('#connection:not([data-state="open"])').waitFor({ timeout: 10_000 });
  await createNote(tab1, "Written offline", "during the restart");
  await tab1.locator("#pending").waitFor({ state: "visible" });
  await screenshot(tab1, "notes-during-restart");
  await restarting;
  const back = Date.now();
  await Promise.all([connected(tab1, 5000), connected(tab2, 5000)]);
  const reconnectedIn = Date.now() - back;
  await note(tab2, "Written offline").waitFor({ timeout: 5000 });
  await tab1.locator("#pending").waitFor({ state: "hidden", timeout: 5000 });
  console.log(`both tabs reconnected ${reconnectedIn} ms after the server was back`);

  // A tab offline for 10 s misses nothing that happened meanwhile.
  const away = await browser.newContext();
  const awayTab = await openTab(away, { email: "ann@example.com" });
  await note(awayTab, "Written offline").waitFor();
  await away.setOffline(true);
  await createNote(tab1, "While you were away", "1");
  await editNote(tab1, "Ann's secret", "Ann's secret (edited)", "still not for Bob");
  await note(tab2, "While you were away").waitFor({ timeout: 5000 });
  const gone = note(tab2, "Groceries (Saturday)");
  await gone.locator(".delete").click();
  await gone.waitFor({ state: "detached", timeout: 5000 });
  await sleep(10_000 - 1000);
  await away.setOffline(false);
  await note(awayTab, "While you were away").waitFor({ timeout: 10_000 });
  await note(awayTab, "Ann's secret (edited)").waitFor({ timeout: 10_000 });
  await note(awayTab, "Groceries (Saturday)").waitFor({ state: "detached", timeout: 10_000 });
  await connected(awayTab);
  await screenshot(awayTab, "notes-back-online");

  // Every tab agrees with the server.
  const titles = async (page) => (await page.locator("li.note .title").allTextContents()).sort();
  const expected = ["Ann's secret (edited)", "While you were away", "Written offline"];
  assert.deepEqual(await titles(tab1), expected);
  assert.deepEqual(await titles(tab2), expected);
  assert.deepEqual(await titles(awayTab), expected);
});

test("an edit on a stale version is rolled back with the current note shown", async () => {
  const context = await browser.newContext();
  const tab = await openTab(context, { signUp: true, email: "cleo@example.com" });
  await createNote(tab, "Draft", "v1");
  await note(tab, "Draft").waitFor();
  await tab.locator("#pending").waitFor({ state: "hidden" });
  // This tab edits while cut off (the edit waits in its outbox, based on
  // version 1); meanwhile another device moves the note to version 2.
  const id = Number(await note(tab, "Draft").getAttribute("data-key"));
  await context.setOffline(true);
  await editNote(tab, "Draft", "Draft (from the laptop)", "v2 too");
  await note(tab, "Draft (from the laptop)").waitFor(); // shown at once
  await tab.locator("#pending").waitFor({ state: "visible" });
  const other = await browser.newContext();
  const otherTab = await openTab(other, { email: "cleo@example.com" });
  const moved = await otherTab.evaluate(async (id) => {
    const response = await fetch(`/me/notes/notes/${id}`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ title: "Draft (from the phone)", body: "v2", version: 1 }),
    });
    return response.status;
  }, id);
  assert.equal(moved, 200);
  await context.setOffline(false);
  // The server refuses version 1: the edit is undone and the reason shown.
  await note(tab, "Draft (from the phone)").waitFor({ timeout: 10_000 });
  await tab.locator("#error").waitFor({ state: "visible" });
  assert.match(await tab.locator("#error").textContent(), /changed elsewhere/);
  assert.equal(await note(tab, "Draft (from the laptop)").count(), 0);
  await screenshot(tab, "notes-conflict-rolled-back");
});

test("a create whose answer is lost after its batch came stays, with no error", async () => {
  const context = await browser.newContext();
  // Every frame the tab's sockets receive, to know when a batch came.
  const frames = [];
  let onFrame = () => {};
  context.on("page", (page) =>
    page.on("websocket", (socket) =>
      socket.on("framereceived", ({ payload }) => {
        frames.push(String(payload));
        onFrame();
      }),
    ),
  );
  const batchOf = (title) =>
    new Promise((resolve) => {
      onFrame = () => frames.some((frame) => frame.includes(title)) && resolve();
      onFrame();
    });
  const tab = await openTab(context, { signUp: true, email: "finn@example.com" });
  await tab.route("**/me/notes/notes", async (route) => {
    if (route.request().method() !== "POST") return route.continue();
    await route.fetch(); // the server makes the note,
    await batchOf("Answer lost"); // its batch reaches the tab,
    await route.abort(); // and its answer never does
  });
  await createNote(tab, "Answer lost", "but saved");
  await tab.locator("#pending").waitFor({ state: "hidden", timeout: 10_000 });
  assert.ok(await tab.locator("#error").isHidden(), `an error shown: ${await tab.locator("#error").textContent()}`);
  assert.equal(await note(tab, "Answer lost").count(), 1);
  await tab.unroute("**/me/notes/notes");
  const saved = await tab.evaluate(async () => (await (await fetch("/me/notes/notes")).json()).notes.length);
  assert.equal(saved, 1, "made once");
});

test("the next user signing in on a tab sees their notes, whatever the last one deleted", async () => {
  // Note ids are per user: Dana's deleted note 1 is not Erin's note 1.
  const context = await browser.newContext();
  const tab = await openTab(context, { signUp: true, email: "dana@example.com" });
  await createNote(tab, "Dana's note", "hers");
  await tab.locator("#pending").waitFor({ state: "hidden", timeout: 5000 });
  await note(tab, "Dana's note").locator(".delete").click();
  await tab.locator("#pending").waitFor({ state: "hidden", timeout: 5000 });
  await tab.locator("#logout").click();
  await tab.locator("#sign-in").waitFor({ state: "visible", timeout: 5000 });
  await tab.locator("#email").fill("erin@example.com");
  await tab.locator("#password").fill(PASSWORD);
  await tab.locator("#signup").click();
  await tab.locator("#notes-view").waitFor({ state: "visible", timeout: 10_000 });
  await connected(tab);
  await createNote(tab, "Erin's note", "hers");
  await tab.locator("#pending").waitFor({ state: "hidden", timeout: 5000 });
  assert.equal(await note(tab, "Erin's note").count(), 1, "her note stays once saved");
  assert.equal(await tab.locator("#who").textContent(), "erin@example.com");
});

test("a note that comes while the list is on its way is not taken for deleted", async () => {
  const context = await browser.newContext();
  const frames = [];
  let onFrame = () => {};
  context.on("page", (page) =>
    page.on("websocket", (socket) =>
      socket.on("framereceived", ({ payload }) => {
        frames.push(String(payload));
        onFrame();
      }),
    ),
  );
  const batchOf = (title) =>
    new Promise((resolve) => {
      onFrame = () => frames.some((frame) => frame.includes(title)) && resolve();
      onFrame();
    });
  const tab = await openTab(context, { signUp: true, email: "gus@example.com" });
  // The list the reconnect fetches is read by the server first, and
  // reaches the tab only after the batch of a note made just after.
  let listRead;
  const read = new Promise((resolve) => (listRead = resolve));
  await tab.route("**/me/notes/notes", async (route) => {
    if (route.request().method() !== "GET") return route.continue();
    const response = await route.fetch();
    listRead();
    await batchOf("Made meanwhile");
    await route.fulfill({ response });
  });
  await tab.locator("#reconnect").click();
  await read;
  const made = await tab.evaluate(async () => {
    const response = await fetch("/me/notes/notes", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ title: "Made meanwhile", body: "after the list" }),
    });
    return response.status;
  });
  assert.equal(made, 201);
  await note(tab, "Made meanwhile").waitFor({ timeout: 5000 });
  await connected(tab);
  await sleep(1000); // the stale list has been applied by now
  await tab.unroute("**/me/notes/notes");
  assert.equal(await note(tab, "Made meanwhile").count(), 1, "still shown after the older list");
});
