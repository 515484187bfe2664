// live(): a WebSocket kept open against a real podhost — states, the
// client id, reconnecting after a restart, acks, the send queue, and
// blog's table changes over the socket.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { QueueFullError } from "../dist/index.js";
import { clientOf, signedIn, startServer, waitFor, watchedWebSocket } from "./support.mjs";

/** Fast retries, so the tests wait little for reconnects. */
const QUICK = { initialMs: 50, maxMs: 500 };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.close();
});

/** Every step of `states` is one the connection can take. */
function assertTransitions(states) {
  const allowed = new Set(["connecting>open", "connecting>closed", "open>closed", "closed>connecting"]);
  for (let i = 1; i < states.length; i++) {
    assert.ok(allowed.has(`${states[i - 1]}>${states[i]}`), `${states[i - 1]} → ${states[i]} in ${states}`);
  }
}

test("blog's changes arrive over the socket, across a server restart, with one client id", async () => {
  const watched = watchedWebSocket();
  const client = await signedIn(server, { WebSocket: watched.WebSocket });
  const blog = client.object("/me/blog");
  const states = [];
  const live = client.live("/me/blog/ws", { reconnect: QUICK, onState: (state) => states.push(state) });
  const changes = [];
  live.onChange("table:posts", (change) => changes.push(change));
  assert.equal(live.state, "connecting");
  await waitFor("the socket to open", () => live.state === "open");
  assert.deepEqual(states, ["connecting", "open"]);

  const { post } = await blog.json("/posts", { body: { title: "One", content: "before" } });
  await waitFor("the create", () => changes.length === 1);
  assert.deepEqual([changes[0].table, changes[0].op, changes[0].row.id], ["posts", "create", post.id]);

  await server.restart();
  await waitFor("the socket to reopen", () => live.state === "open" && states.length > 2);
  assertTransitions(states);
  assert.deepEqual(states.slice(0, 4), ["connecting", "open", "closed", "connecting"]);
  assert.equal(states.at(-1), "open");

  await blog.json(`/posts/${post.id}`, { method: "PUT", body: { content: "after" } });
  await waitFor("the update", () => changes.length === 2);
  assert.deepEqual([changes[1].op, changes[1].row.content], ["update", "after"]);

  // Every connection sent the same, persistent client id.
  assert.ok(watched.urls.length >= 2);
  for (const url of watched.urls) {
    assert.equal(new URL(url).searchParams.get("client_id"), client.clientId);
  }
  assert.equal(live.clientId, client.clientId);
  assert.match(client.clientId, /^[0-9a-f-]{36}$/);

  live.close();
  assert.equal(live.state, "closed");
  const opened = watched.urls.length;
  await sleep(300);
  assert.equal(watched.urls.length, opened, "a closed connection does not reconnect");
});

test("a {type, seq} message is acknowledged after its handler ran, and only then", async () => {
  const watched = watchedWebSocket();
  const client = clientOf(server, { WebSocket: watched.WebSocket });
  const handled = [];
  let failures = 0;
  const live = client.live("/objects/probe/acks/ws", {
    clientId: "acks-test",
    onMessage: async (message) => {
      await sleep(30);
      if (message.seq === 2 && failures++ === 0) throw new Error("this handler fails once, on purpose");
      handled.push({ seq: message.seq ?? message, framesSent: watched.sent.length });
    },
  });
  await waitFor("the socket to open", () => live.state === "open");
  assert.equal(new URL(watched.urls[0]).searchParams.get("client_id"), "acks-test");
  const acks = () => watched.sent.filter((frame) => frame.startsWith("{")).map((frame) => JSON.parse(frame));
  // The probe publishes what follows `publish:` to every socket, ours too.
  const publish = (message) => live.send(`publish:${typeof message === "string" ? message : JSON.stringify(message)}`);

  const originalError = console.error;
  console.error = () => {};
  try {
    publish({ type: "sync", seq: 1, changes: [] });
    publish({ type: "sync", seq: 2 });
    publish("not json");
    publish({ type: "ack", seq: 9 });
    publish({ type: "sync", seq: 3 });
    await waitFor("four messages handled", () => handled.length === 4);
    await sleep(100);
  } finally {
    console.error = originalError;
  }
  // In order, one at a time (the handler awaits), the failed one missing;
  // an ack from the server is a message too, and is not acknowledged.
  assert.deepEqual(
    handled.map((h) => h.seq),
    [1, "not json", 9, 3],
  );
  // 3 is not acknowledged while 2 is not: an ack may cover every earlier seq.
  assert.deepEqual(acks(), [{ type: "ack", seq: 1 }]);

  // The server sends 2 and 3 again: now both go through.
  publish({ type: "sync", seq: 2 });
  publish({ type: "sync", seq: 3 });
  await waitFor("the acks of 2 and 3", () => acks().length === 3);
  assert.deepEqual(acks(), [
    { type: "ack", seq: 1 },
    { type: "ack", seq: 2 },
    { type: "ack", seq: 3 },
  ]);
  // Each ack left after its handler had finished.
  for (const { seq, framesSent } of handled.filter((h) => typeof h.seq === "number" && h.seq !== 9)) {
    const ackAt = watched.sent.indexOf(JSON.stringify({ type: "ack", seq }));
    assert.ok(ackAt >= framesSent, `the ack of ${seq} was sent after its handler`);
  }
  live.close();
});

test("a heartbeat keeps a quiet socket and replaces a silent one; a silent attempt times out", async () => {
  const client = await signedIn(server);
  const messages = [];
  const states = [];
  const infos = [];
  const live = client.live("/me/blog/ws", {
    // Generous against a loaded machine: a pong late by a few hundred
    // milliseconds must not count as silence.
    reconnect: { ...QUICK, connectTimeoutMs: 1000 },
    heartbeat: { everyMs: 500 },
    onMessage: (message) => messages.push(message),
    onState: (state, info) => {
      states.push(state);
      infos.push(info);
    },
  });
  await waitFor("the socket to open", () => live.state === "open");
  // Blog answers "ping" with "pong" (the host's auto-response): the
  // socket stays open and the pongs are not messages.
  await sleep(2000);
  assert.deepEqual(states, ["connecting", "open"]);
  assert.deepEqual(messages, []);

  // A server that stops answering (stopped, its connections still open)
  // is noticed by the silence; attempts to reconnect get no handshake
  // and time out; the socket comes back when the server does.
  process.kill(server.child.pid, "SIGSTOP");
  try {
    await waitFor("the silence to be noticed", () => live.state !== "open");
    await waitFor("an attempt to time out", () =>
      infos.some((info) => String(info.error).includes("did not open in time")),
    );
  } finally {
    process.kill(server.child.pid, "SIGCONT");
  }
  await waitFor("the socket to reopen", () => live.state === "open");
  assertTransitions(states);
  assert.deepEqual(states.slice(0, 3), ["connecting", "open", "closed"]);
  live.close();
});

test("send() queues while disconnected and flushes in order when the socket reopens", async () => {
  const client = clientOf(server, { WebSocket: watchedWebSocket().WebSocket });
  const received = [];
  const states = [];
  const live = client.live("/objects/probe/queue/ws", {
    reconnect: QUICK,
    maxQueued: 3,
    onMessage: (message) => received.push(message),
    onState: (state) => states.push(state),
  });
  await waitFor("the socket to open", () => live.state === "open");

  const restarted = server.restart({ downFor: 1000 });
  await waitFor("the socket to drop", () => live.state !== "open");
  live.send("publish:queued-1");
  live.send("publish:queued-2");
  live.send("publish:queued-3");
  assert.equal(live.queued, 3);
  assert.throws(() => live.send("publish:one too many"), QueueFullError);
  await restarted;

  await waitFor("the queued messages", () => received.length === 3);
  assert.deepEqual(received, ["queued-1", "queued-2", "queued-3"]);
  assert.equal(live.queued, 0);
  assertTransitions(states);
  live.close();
});

test("reconnect() reconnects at once; a logout closes the socket for good (1008)", async () => {
  const watched = watchedWebSocket();
  const client = await signedIn(server, { WebSocket: watched.WebSocket });
  const states = [];
  const live = client.live("/me/blog/ws", { reconnect: { initialMs: 60_000 }, onState: (state, info) => states.push([state, info]) });
  await waitFor("the socket to open", () => live.state === "open");

  live.reconnect();
  await waitFor("the socket to reopen", () => live.state === "open" && watched.urls.length === 2);
  assert.deepEqual(
    states.map(([state]) => state),
    ["connecting", "open", "closed", "connecting", "open"],
  );

  await client.auth.logout();
  await waitFor("the server to close the socket", () => live.state === "closed");
  const [, info] = states.at(-1);
  assert.equal(info.code, 1008);
  assert.equal(info.retryInMs, undefined, "no retry is planned after 1008");
  await sleep(300);
  assert.equal(watched.urls.length, 2);
  live.close();
});
