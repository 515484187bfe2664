// events(): an object's event stream over fetch against a real podhost —
// blog's table changes, resuming by Last-Event-ID across a restart, and
// refusals that stop the retries.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { PodhostError } from "../dist/index.js";
import { clientOf, signedIn, startServer, waitFor, watchedFetch } from "./support.mjs";

const QUICK = { initialMs: 50, maxMs: 500 };

let server;
before(async () => {
  // Keep-alive comments every 100 ms, so a stream can be told silent fast.
  server = await startServer('[sockets]\nping_interval = "100ms"');
});
after(async () => {
  await server?.close();
});

test("blog's changes arrive over the event stream as typed changes", async () => {
  const client = await signedIn(server);
  const blog = client.object("/me/blog");
  const stream = client.events("/me/blog/_events");
  const changes = [];
  stream.onChange("table:posts", (change) => changes.push(change));
  const other = [];
  stream.onChange("table:comments", (change) => other.push(change));
  await waitFor("the stream to open", () => stream.state === "open");

  const { post } = await blog.json("/posts", { body: { title: "Live", content: "v1" } });
  await blog.json(`/posts/${post.id}`, { method: "PUT", body: { content: "v2" } });
  await blog.json(`/posts/${post.id}`, { method: "DELETE" });
  await waitFor("three changes", () => changes.length === 3);
  assert.deepEqual(
    changes.map((change) => [change.table, change.op, change.row.id, change.row.content]),
    [
      ["posts", "create", post.id, "v1"],
      ["posts", "update", post.id, "v2"],
      ["posts", "delete", post.id, "v2"],
    ],
  );
  assert.deepEqual(other, []);
  assert.match(stream.lastEventId, /^\d+$/);
  stream.close();
});

test("a stream resumes after a restart with Last-Event-ID: nothing missed, nothing twice", async () => {
  const watched = watchedFetch();
  const client = await signedIn(server, { fetch: watched.fetch });
  const blog = client.object("/me/blog");
  const stream = client.events("/me/blog/_events", { reconnect: QUICK });
  const titles = [];
  stream.onChange("table:posts", (change) => titles.push(change.row.title));
  await waitFor("the stream to open", () => stream.state === "open");
  await blog.json("/posts", { body: { title: "A", content: "before the restart" } });
  await waitFor("A", () => titles.length === 1);
  const seen = stream.lastEventId;

  // The stream's reconnect waits until B and C are written, so it can
  // only get them by resuming.
  const release = watched.hold(["/me/blog/_events"]);
  await server.restart();
  await waitFor("the stream to notice", () => stream.state !== "open");
  await blog.json("/posts", { body: { title: "B", content: "while away" } });
  await blog.json("/posts", { body: { title: "C", content: "while away" } });
  release();

  await waitFor("B and C", () => titles.length >= 3);
  await blog.json("/posts", { body: { title: "D", content: "live again" } });
  await waitFor("D", () => titles.length >= 4);
  assert.deepEqual(titles, ["A", "B", "C", "D"]);
  const streams = watched.requests.filter((request) => request.path === "/me/blog/_events");
  assert.equal(streams[0].headers.get("last-event-id"), null);
  assert.ok(streams.length >= 2);
  assert.equal(streams.at(-1).headers.get("last-event-id"), seen);
  stream.close();
});

test("a stream can start after a known id", async () => {
  const client = await signedIn(server);
  const blog = client.object("/me/blog");
  for (const title of ["one", "two", "three"]) await blog.json("/posts", { body: { title, content: "x" } });
  const stream = client.events("/me/blog/_events", { lastEventId: "1" });
  const titles = [];
  stream.onChange("table:posts", (change) => titles.push(change.row.title));
  await waitFor("the two after id 1", () => titles.length === 2);
  assert.deepEqual(titles, ["two", "three"]);
  stream.close();
});

test("an error answer stops the retries and says why", async () => {
  const client = clientOf(server);
  const states = [];
  const stream = client.events("/objects/nothing/here/_events", {
    reconnect: QUICK,
    onState: (state, info) => states.push([state, info]),
  });
  await waitFor("the stream to give up", () => stream.state === "closed");
  const [, info] = states.at(-1);
  assert.ok(info.error instanceof PodhostError);
  assert.deepEqual([info.error.status, info.error.code], [404, "class_not_found"]);
  assert.equal(info.retryInMs, undefined);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.deepEqual(
    states.map(([state]) => state),
    ["connecting", "closed"],
  );

  // A signed-out client is refused the same way (401), after trying a refresh.
  const anonymous = client.events("/me/blog/_events", { reconnect: QUICK });
  const refused = await new Promise((resolve) => anonymous.onState((state, info) => state === "closed" && resolve(info)));
  assert.deepEqual([refused.error.status, refused.error.code], [401, "unauthenticated"]);
});

test("a stream that falls silent is replaced, and resumes", async () => {
  const client = await signedIn(server);
  const blog = client.object("/me/blog");
  const infos = [];
  const stream = client.events("/me/blog/_events", {
    // Keep-alives come every 100 ms: 1.5 s of nothing is silence even on
    // a loaded machine.
    idleTimeoutMs: 1500,
    reconnect: { ...QUICK, connectTimeoutMs: 1000 },
    onState: (state, info) => infos.push([state, info]),
  });
  const titles = [];
  stream.onChange("table:posts", (change) => titles.push(change.row.title));
  await waitFor("the stream to open", () => stream.state === "open");
  // The keep-alives hold it open while nothing happens.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  assert.deepEqual(
    infos.map(([state]) => state),
    ["connecting", "open"],
  );
  await blog.json("/posts", { body: { title: "before", content: "x" } });
  await waitFor("the first post", () => titles.length === 1);

  process.kill(server.child.pid, "SIGSTOP");
  try {
    await waitFor("the silence to be noticed", () =>
      infos.some(([, info]) => String(info.error).includes("nothing arrived")),
    );
  } finally {
    process.kill(server.child.pid, "SIGCONT");
  }
  await blog.json("/posts", { body: { title: "after", content: "x" } });
  await waitFor("the second post", () => titles.length === 2);
  assert.deepEqual(titles, ["before", "after"]);
  stream.close();
});
