// clients/js in a real browser (cookie mode): the page is on podhost's
// origin, the client's modules come from clients/js/dist (served to the
// page by Playwright's routing), everything else is the real server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { launch, screenshot } from "./chromium.mjs";
import { guest, Podhost } from "../js/podhost.mjs";

const dist = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "clients", "js", "dist");
if (!existsSync(join(dist, "index.js"))) {
  throw new Error(`${dist} is not built: run \`npm ci && npm run build\` in clients/js (cargo's js_client tests do)`);
}

/** A page on the server's origin that can import `/_client/index.js`. */
async function pageOn(context, server) {
  const page = await context.newPage();
  await page.route(`${server.url}/_client/**`, async (route) => {
    const name = new URL(route.request().url()).pathname.slice("/_client/".length);
    if (!/^[\w.-]+\.js$/.test(name)) return route.fulfill({ status: 404 });
    await route.fulfill({ contentType: "text/javascript", body: await readFile(join(dist, name)) });
  });
  await page.goto(`${server.url}/healthz`);
  return page;
}

/** Runs `body(context, server)` with a server serving blog (and `config`) and a fresh browser context. */
async function withBlogInChromium(body, config) {
  const server = await Podhost.start({ classes: { blog: { path: guest("blog"), access: "user" } }, config });
  const browser = await launch();
  try {
    await body(await browser.newContext(), server);
  } finally {
    await browser.close();
    await server.close();
  }
}

test("the client in Chromium: cookies, objects, events, a socket, refresh, logout", async () => {
  await withBlogInChromium(async (context, server) => {
    const page = await pageOn(context, server);
    const result = await page.evaluate(async () => {
      const { createClient, PodhostError } = await import("/_client/index.js");
      const waitFor = async (what, condition) => {
        for (let i = 0; i < 500; i++) {
          if (condition()) return;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        throw new Error(`timed out waiting for ${what}`);
      };
      const client = createClient();
      const signup = await client.auth.signup({ email: "ann@example.com", password: "correct horse battery staple" });
      const me = await client.auth.me();

      const blog = client.object("/me/blog");
      const streamed = [];
      const socketed = [];
      const states = [];
      const stream = client.events("/me/blog/_events", { onState: (state) => states.push(`sse:${state}`) });
      stream.onChange("table:posts", (change) => streamed.push(change.op));
      const live = client.live("/me/blog/ws", { onState: (state) => states.push(`ws:${state}`) });
      live.onChange("table:posts", (change) => socketed.push(change.op));
      await waitFor("both open", () => stream.state === "open" && live.state === "open");
      const { post } = await blog.json("/posts", { body: { title: "From the browser", content: "v1" } });
      await blog.json(`/posts/${post.id}`, { method: "PUT", body: { content: "v2" } });
      await waitFor("two changes each", () => streamed.length === 2 && socketed.length === 2);

      // The refresh goes by the HttpOnly cookie; requests go on working.
      await client.auth.refresh();
      const afterRefresh = await blog.json("/posts");

      await client.auth.logout();
      await waitFor("the socket to close", () => live.state === "closed");
      const signedOut = await client.auth.me().catch((error) => error);
      stream.close();
      return {
        mode: client.auth.mode,
        signupUser: signup.user.email,
        meUser: me.user.email,
        cookiesVisible: document.cookie,
        streamed,
        socketed,
        states,
        posts: afterRefresh.posts.length,
        signedOut: signedOut instanceof PodhostError ? [signedOut.status, signedOut.code] : String(signedOut),
        userAfterLogout: client.auth.user,
        clientId: client.clientId,
        stored: sessionStorage.getItem("podhost.client_id"),
      };
    });
    assert.equal(result.mode, "cookies");
    assert.equal(result.signupUser, "ann@example.com");
    assert.equal(result.meUser, "ann@example.com");
    assert.equal(result.cookiesVisible, "", "the session's cookies are HttpOnly");
    assert.deepEqual(result.streamed, ["create", "update"]);
    assert.deepEqual(result.socketed, ["create", "update"]);
    assert.deepEqual(result.states.filter((s) => s.startsWith("ws:")), ["ws:connecting", "ws:open", "ws:closed"]);
    assert.equal(result.posts, 1);
    assert.deepEqual(result.signedOut, [401, "unauthenticated"]);
    assert.equal(result.userAfterLogout, null);
    assert.equal(result.stored, result.clientId);
    await screenshot(page, "js-client");

    // The client id survives a reload of the tab; another tab has its own.
    await page.reload();
    const reloaded = await page.evaluate(async () => {
      const { createClient } = await import("/_client/index.js");
      return createClient().clientId;
    });
    assert.equal(reloaded, result.clientId);
    const other = await pageOn(context, server);
    const otherId = await other.evaluate(async () => {
      const { createClient } = await import("/_client/index.js");
      return createClient().clientId;
    });
    assert.notEqual(otherId, result.clientId);
  });
});

test("the client in Chromium reconnects at once when the browser is back online", async () => {
  await withBlogInChromium(async (context, server) => {
    const page = await pageOn(context, server);
    await page.evaluate(async () => {
      const { createClient } = await import("/_client/index.js");
      const client = createClient();
      await client.auth.signup({ email: "bea@example.com", password: "correct horse battery staple" });
      // Retries so slow that only the online event can bring it back soon.
      window.live = client.live("/me/blog/ws", { reconnect: { initialMs: 600_000, maxMs: 600_000 } });
      window.states = [];
      window.live.onState((state) => window.states.push(state));
    });
    await page.waitForFunction(() => window.live.state === "open", null, { timeout: 15_000 });
    await server.restart();
    await page.waitForFunction(() => window.live.state === "closed", null, { timeout: 15_000 });
    await context.setOffline(true);
    await context.setOffline(false);
    await page.waitForFunction(() => window.live.state === "open", null, { timeout: 15_000 });
    const states = await page.evaluate(() => window.states);
    assert.deepEqual(states, ["connecting", "open", "closed", "connecting", "open"]);
  });
});

test("a socket closed for good (the session ended) stays closed when the browser is back online", async () => {
  await withBlogInChromium(async (context, server) => {
    const page = await pageOn(context, server);
    await page.evaluate(async () => {
      const { createClient } = await import("/_client/index.js");
      window.client = createClient();
      await window.client.auth.signup({ email: "dee@example.com", password: "correct horse battery staple" });
      window.live = window.client.live("/me/blog/ws");
      window.states = [];
      window.live.onState((state, info) => window.states.push([state, info.code ?? null]));
    });
    await page.waitForFunction(() => window.live.state === "open", null, { timeout: 15_000 });
    await page.evaluate(() => window.client.auth.logout());
    await page.waitForFunction(() => window.live.state === "closed", null, { timeout: 15_000 });
    // The client's own `online` listener came first: it has run once ours has.
    await page.evaluate(() => window.addEventListener("online", () => (window.wentOnline = true)));
    await context.setOffline(true);
    await context.setOffline(false);
    await page.waitForFunction(() => window.wentOnline === true, null, { timeout: 15_000 });
    const states = await page.evaluate(() => window.states);
    assert.deepEqual(states, [
      ["connecting", null],
      ["open", null],
      ["closed", 1008],
    ]);
  });
});

test("two tabs whose token expired refresh one at a time, and the session lives", async () => {
  // Access tokens (and so the session cookie) last 2 s.
  await withBlogInChromium(async (context, server) => {
    const tabs = [await pageOn(context, server), await pageOn(context, server)];
    const [first, second] = tabs;
    await first.evaluate(async () => {
      const { createClient } = await import("/_client/index.js");
      window.client = createClient();
      await window.client.auth.signup({ email: "cy@example.com", password: "correct horse battery staple" });
    });
    const expiresAt = await second.evaluate(async () => {
      const { createClient } = await import("/_client/index.js");
      window.client = createClient();
      return (await window.client.auth.me()).tokenExpiresAt;
    });
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt - Date.now()) + 1000));

    // Both tabs need a new token at the same moment.
    const answers = await Promise.all(
      tabs.map((tab) =>
        tab.evaluate(async () => {
          const blog = window.client.object("/me/blog");
          const pages = await Promise.all([1, 2, 3].map(() => blog.json("/posts").catch((error) => error.code)));
          return pages.map((page) => (Array.isArray(page.posts) ? "ok" : page));
        }),
      ),
    );
    assert.deepEqual(answers, [
      ["ok", "ok", "ok"],
      ["ok", "ok", "ok"],
    ]);
    for (const tab of tabs) {
      const me = await tab.evaluate(async () => (await window.client.auth.me()).user.email);
      assert.equal(me, "cy@example.com");
    }
  }, '[auth]\ntoken_ttl = "2s"');
});
