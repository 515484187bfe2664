// Objects through the client: JSON requests, raw fetches, and the
// server's and objects' error answers as PodhostError.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { PodhostError } from "../dist/index.js";
import { clientOf, signedIn, startServer } from "./support.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.close();
});

/** The PodhostError a promise rejects with. */
async function refusal(promise) {
  const error = await promise.then(
    () => assert.fail("expected a PodhostError"),
    (error) => error,
  );
  assert.ok(error instanceof PodhostError, String(error));
  return error;
}

test("a public object: JSON and raw requests", async () => {
  const counter = clientOf(server).object("/objects/counter/alice");
  const before = Number(await (await counter.fetch("")).text());
  const after = await counter.fetch("/", { method: "POST" });
  assert.equal(after.status, 200);
  assert.equal(Number(await after.text()), before + 1);
  assert.equal(await counter.json(), before + 1);
  // Another object of the class is its own.
  assert.equal(await clientOf(server).object("objects/counter/bob/").json(), 0);
});

test("a user's own object: create, list, update, delete with json()", async () => {
  const blog = (await signedIn(server)).object("/me/blog");
  const { post } = await blog.json("/posts", { body: { title: "Hello", content: "first" } });
  assert.equal(post.title, "Hello");
  await blog.json("posts", { body: { title: "Second", content: "more" } });

  const page = await blog.json("/posts?limit=1");
  assert.deepEqual(
    page.posts.map((p) => p.title),
    ["Second"],
  );
  assert.ok(page.next);

  const updated = await blog.json(`/posts/${post.id}`, { method: "PUT", body: { title: "Hello, world" } });
  assert.equal(updated.post.title, "Hello, world");
  const deleted = await blog.json(`/posts/${post.id}`, { method: "DELETE" });
  assert.equal(deleted.deleted, true);
  assert.equal((await blog.json("/data")).constructor, Object);
});

test("objects' and the host's error answers are typed", async () => {
  const client = await signedIn(server);
  const blog = client.object("/me/blog");

  const missing = await refusal(blog.json("/posts/12345"));
  assert.deepEqual([missing.status, missing.code, missing.message], [404, "not_found", "no such post"]);
  assert.deepEqual(missing.body, { error: { code: "not_found", message: "no such post" } });

  const invalid = await refusal(blog.json("/posts", { body: { title: 1, content: "x" } }));
  assert.equal(invalid.status, 400);
  assert.match(invalid.message, /title/);

  // fetch() rejects the same way, with the answer's body kept.
  const raw = await refusal(blog.fetch("/posts/nope"));
  assert.equal(raw.status, 404);

  const wrongRoute = await refusal(client.object("/objects/blog/someone").json("/posts"));
  assert.equal(wrongRoute.status, 403);
  assert.equal(wrongRoute.code, "access_denied");

  const noClass = await refusal(client.object("/objects/nothing/here").json());
  assert.deepEqual([noClass.status, noClass.code], [404, "class_not_found"]);
});

test("an unreachable server is the fetch error, not a PodhostError", async () => {
  const client = clientOf({ url: "http://127.0.0.1:9" });
  const error = await client
    .object("/objects/counter/x")
    .json()
    .catch((error) => error);
  assert.ok(error instanceof TypeError, String(error));
  assert.ok(!(error instanceof PodhostError));
});

test("an error answer that is not podhost's shape still is a PodhostError", async () => {
  const probe = clientOf(server).object("/objects/probe/errors");
  const plain = await refusal(probe.json("/canned", { body: { status: 418, body: "  short and stout  " } }));
  assert.deepEqual([plain.status, plain.code, plain.message, plain.body], [418, "http_418", "short and stout", "  short and stout  "]);

  // A conflict carrying the current record beside the error, as an app's 409 may.
  const current = { id: 3, version: 7 };
  const conflict = await refusal(
    probe.json("/canned", {
      body: { status: 409, body: JSON.stringify({ error: { code: "stale", message: "changed meanwhile" }, note: current }) },
    }),
  );
  assert.deepEqual([conflict.status, conflict.code, conflict.message], [409, "stale", "changed meanwhile"]);
  assert.deepEqual(conflict.body.note, current);
});
