// The operator's page at /admin/: signing in with the token, classes and
// their versions, objects with search, an object's inspect view, its
// tables' rows, the query box (a write refused) and its logs; tenant data
// shaped as HTML shows as text; a tenant's token sees its own class only.
import { test } from "node:test";
import assert from "node:assert/strict";
import { launch, screenshot } from "./chromium.mjs";
import { ADMIN_TOKEN, Podhost, guest } from "../js/podhost.mjs";

const XSS = `<img src=x onerror="window.__xss=1">`;
const TIMEOUT = { timeout: 10_000 };

async function call(server, method, path, { token, body } = {}) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

test("an operator browses classes, objects, rows, queries and logs", async () => {
  const server = await Podhost.start({
    topLevel: `idle_timeout = "1s"`,
    classes: {
      counter: { path: guest("counter"), tenant: "acme" },
      blog: { path: guest("blog"), access: "user" },
    },
  });
  const browser = await launch();
  try {
    for (let i = 0; i < 3; i++) await call(server, "POST", "/objects/counter/apples/increment");
    await call(server, "POST", "/objects/counter/pears/increment");
    await call(server, "POST", `/objects/counter/${encodeURIComponent(XSS)}/increment`);
    const { token, user } = await call(server, "POST", "/auth/signup", {
      body: { email: "ann@example.com", password: "correct horse battery staple" },
    });
    await call(server, "POST", "/me/blog/posts", { token, body: { title: XSS, content: "hello" } });

    const page = await browser.newPage();
    const dialogs = [];
    page.on("dialog", (dialog) => {
      dialogs.push(dialog.message());
      dialog.dismiss();
    });
    const pageErrors = [];
    page.on("pageerror", (error) => pageErrors.push(error));
    const response = await page.goto(`${server.url}/admin/`);
    assert.match(response.headers()["content-security-policy"], /default-src 'self'/);
    assert.match(response.headers()["content-security-policy"], /frame-ancestors 'none'/);
    assert.equal(response.headers()["x-frame-options"], "DENY");

    // A wrong token is refused with podhost's message; the right one signs in.
    await page.fill("#token", "not-the-token");
    await page.click("#login button[type=submit]");
    await page.locator("#login-error", { hasText: "unauthorized" }).waitFor(TIMEOUT);
    await page.fill("#token", ADMIN_TOKEN);
    await page.click("#login button[type=submit]");
    await page.locator("#classes tbody tr", { hasText: "counter" }).waitFor(TIMEOUT);
    await page.locator("#classes tbody tr", { hasText: "blog" }).waitFor(TIMEOUT);
    await screenshot(page, "admin-classes");

    // Kept for the tab: a reload stays signed in.
    await page.reload();
    await page.locator("#classes tbody tr", { hasText: "counter" }).waitFor(TIMEOUT);

    // A class's versions.
    await page.locator("#classes tbody tr", { hasText: "counter" }).click();
    await page.locator("#versions tbody tr", { hasText: "active" }).waitFor(TIMEOUT);
    assert.equal(await page.locator("#versions tbody tr").count(), 1);

    // Search narrows the objects.
    await page.locator("#objects tbody tr", { hasText: "pears" }).waitFor(TIMEOUT);
    await page.fill("#search", "apple");
    await page.locator("#objects-count", { hasText: /^1 object$/ }).waitFor(TIMEOUT);
    assert.equal(await page.locator("#objects tbody tr").count(), 1);
    await page.locator("#objects tbody tr", { hasText: "apples" }).click();

    // The inspect view, a table's rows, a query.
    await page.locator("#object-title", { hasText: "counter / apples" }).waitFor(TIMEOUT);
    await page.locator("#object-facts dd", { hasText: /live|open|hibernated/ }).first().waitFor(TIMEOUT);
    const table = page.locator("#tables tbody tr").filter({ has: page.locator("td", { hasText: /^c$/ }) });
    await table.locator("button").click();
    await page.locator("#query-table tbody tr", { hasText: "hits" }).waitFor(TIMEOUT);
    assert.deepEqual(await page.locator("#query-table thead th").allTextContents(), ["k", "v"]);
    assert.deepEqual(await page.locator("#query-table tbody td").allTextContents(), ["hits", "3"]);
    await screenshot(page, "admin-object");

    await page.fill("#sql", "SELECT v * 10 AS tenfold, NULL AS absent FROM c");
    await page.click("#query-form button");
    await page.locator("#query-table thead th", { hasText: "tenfold" }).waitFor(TIMEOUT);
    assert.deepEqual(await page.locator("#query-table tbody td").allTextContents(), ["30", "NULL"]);

    // A write is refused, its message shown, and nothing changes.
    await page.fill("#sql", "DELETE FROM c");
    await page.click("#query-form button");
    await page.locator("#query-error", { hasText: "query_refused" }).waitFor(TIMEOUT);
    assert.match(await page.locator("#query-error").textContent(), /only reading is allowed/);
    await screenshot(page, "admin-query-refused");
    const after = await call(server, "POST", "/admin/objects/counter/apples/query", {
      token: ADMIN_TOKEN,
      body: { sql: "SELECT v FROM c" },
    });
    assert.deepEqual(after.rows, [[3]]);

    // The object's log, followed: it hibernates when idle, and its next
    // activation shows up without a reload.
    const activations = page.locator("#logs li", { hasText: "activated" });
    await activations.first().waitFor(TIMEOUT);
    assert.equal(await activations.count(), 1);
    await page.locator("#logs li", { hasText: /hibernat/ }).waitFor(TIMEOUT);
    await call(server, "POST", "/objects/counter/apples/increment");
    await activations.nth(1).waitFor(TIMEOUT);
    await screenshot(page, "admin-logs");

    // Tenant data shaped as HTML: an object's name and a row's value.
    await page.fill("#search", "<img");
    await page.locator("#objects tbody td", { hasText: XSS }).waitFor(TIMEOUT);
    await page.locator("#objects tbody tr", { hasText: XSS }).click();
    await page.locator("#object-title", { hasText: XSS }).waitFor(TIMEOUT);
    await page.fill("#search", user.id);
    await page.locator("#objects tbody tr", { hasText: user.id }).click();
    await page.locator("#object-title", { hasText: `blog / ${user.id}` }).waitFor(TIMEOUT);
    await page.locator("#tables tbody tr", { hasText: "posts" }).first().locator("button").click();
    await page.locator("#query-table tbody td", { hasText: XSS }).waitFor(TIMEOUT);
    await screenshot(page, "admin-xss-as-text");
    assert.equal(await page.locator("img").count(), 0, "no element was made from tenant data");
    assert.equal(await page.evaluate(() => window.__xss), undefined);
    assert.deepEqual(dialogs, []);
    assert.deepEqual(pageErrors, []);

    // Forgetting the token signs out.
    await page.click("#forget");
    await page.locator("#login").waitFor({ state: "visible", ...TIMEOUT });
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);

    // A tenant's token shows its own class and objects only.
    const tenant = await call(server, "POST", "/admin/tenants", { token: ADMIN_TOKEN, body: { name: "acme" } });
    const tenantPage = await (await browser.newContext()).newPage();
    await tenantPage.goto(`${server.url}/admin/`);
    await tenantPage.fill("#token", tenant.token);
    await tenantPage.click("#login button[type=submit]");
    await tenantPage.locator("#objects tbody tr", { hasText: "apples" }).waitFor(TIMEOUT);
    assert.deepEqual(await tenantPage.locator("#classes tbody tr td:first-child").allTextContents(), ["counter"]);
    const classes = await tenantPage.locator("#objects tbody tr td:first-child").allTextContents();
    assert.deepEqual([...new Set(classes)], ["counter"], "no blog object is listed");
    await screenshot(tenantPage, "admin-tenant");
  } finally {
    await browser.close();
    await server.close();
  }
});
