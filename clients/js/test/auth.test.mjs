// Accounts from Node (token mode) against a real podhost: signup, login,
// me, logout, refreshing by itself, sessions kept in a storage, and the
// server's errors as PodhostError.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { memoryStorage, PodhostError } from "../dist/index.js";
import { clientOf, newUser, startServer, watchedFetch } from "./support.mjs";

let server;
before(async () => {
  // Access tokens expire after 2 s, so the client must refresh them.
  server = await startServer('[auth]\ntoken_ttl = "2s"');
});
after(async () => {
  await server?.close();
});

test("signup, me, logout, login: the session follows", async () => {
  const client = clientOf(server);
  const changes = [];
  client.auth.onChange((user) => changes.push(user?.email ?? null));
  const account = newUser("ann");

  const session = await client.auth.signup(account);
  assert.equal(session.user.email, account.email);
  assert.match(session.user.id, /^u_/);
  assert.ok(session.tokenExpiresAt > Date.now() && session.sessionExpiresAt > session.tokenExpiresAt);
  assert.deepEqual(client.auth.user, session.user);

  const me = await client.auth.me();
  assert.deepEqual(me.user, session.user);
  assert.deepEqual(me.orgs, []);

  await client.auth.logout();
  assert.equal(client.auth.user, null);
  const error = await client.auth.me().then(
    () => assert.fail("me() after logout"),
    (error) => error,
  );
  assert.ok(error instanceof PodhostError);
  assert.equal(error.status, 401);
  assert.equal(error.code, "unauthenticated");

  const again = await client.auth.login(account);
  assert.equal(again.user.id, session.user.id);
  assert.equal((await client.auth.me()).user.id, session.user.id);
  assert.deepEqual(changes, [account.email, null, account.email]);
});

test("the server's refusals are typed errors", async () => {
  const client = clientOf(server);
  const account = newUser("bob");
  const refused = async (promise) =>
    promise.then(
      () => assert.fail("expected a PodhostError"),
      (error) => {
        assert.ok(error instanceof PodhostError, String(error));
        return error;
      },
    );

  const weak = await refused(client.auth.signup({ email: account.email, password: "short" }));
  assert.equal(weak.status, 400);
  assert.equal(weak.code, "weak_password");
  assert.match(weak.message, /password/);
  assert.equal(weak.body.error.code, "weak_password");

  await client.auth.signup(account);
  const taken = await refused(clientOf(server).auth.signup(account));
  assert.deepEqual([taken.status, taken.code], [409, "email_taken"]);

  const wrong = await refused(clientOf(server).auth.login({ email: account.email, password: "not the password!" }));
  assert.deepEqual([wrong.status, wrong.code], [401, "bad_credentials"]);

  const anonymous = await refused(clientOf(server).object("/me/blog").json("/posts"));
  assert.deepEqual([anonymous.status, anonymous.code], [401, "unauthenticated"]);
});

test("an expired access token is refreshed once, however many requests need it", async () => {
  const watched = watchedFetch();
  const client = clientOf(server, { fetch: watched.fetch });
  const session = await client.auth.signup(newUser("carl"));
  const blog = client.object("/me/blog");
  await blog.json("/posts", { body: { title: "before", content: "expiry" } });

  // Past the token's expiry: ten requests at once all succeed, through
  // one refresh (a second one would reuse the refresh token and end the
  // session).
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, session.tokenExpiresAt - Date.now()) + 1100));
  const refreshesBefore = watched.requests.filter((r) => r.path === "/auth/refresh").length;
  const pages = await Promise.all(Array.from({ length: 10 }, () => blog.json("/posts")));
  for (const page of pages) assert.equal(page.posts[0].title, "before");
  const refreshes = watched.requests.filter((r) => r.path === "/auth/refresh").length - refreshesBefore;
  assert.equal(refreshes, 1);

  // The refresh rotated the tokens: the old ones are gone, the session lives.
  assert.ok(client.auth.user);
  assert.equal((await client.auth.me()).user.id, session.user.id);
});

test("a request refused for its token is retried once after a refresh", async () => {
  const storage = memoryStorage();
  const session = await clientOf(server, { storage }).auth.signup(newUser("fred"));
  // A client that holds a bad access token it believes good for an hour
  // (so it does not refresh first), and a good refresh token.
  const held = JSON.parse(storage.getItem("podhost.session"));
  const bad = { ...held, token: `${held.token}x`, tokenExpiresAt: Date.now() + 3_600_000 };
  storage.setItem("podhost.session", JSON.stringify(bad));
  const watched = watchedFetch();
  const client = clientOf(server, { storage, fetch: watched.fetch });

  const { posts } = await client.object("/me/blog").json("/posts");
  assert.deepEqual(posts, []);
  assert.deepEqual(
    watched.requests.map((request) => request.path),
    ["/me/blog/posts", "/auth/refresh", "/me/blog/posts"],
  );
  assert.equal((await client.auth.me()).user.id, session.user.id);
});

test("a session ended elsewhere ends here at the next request", async () => {
  // Two clients share one session through a storage; one logs out.
  const storage = memoryStorage();
  const first = clientOf(server, { storage });
  const changes = [];
  first.auth.onChange((user) => changes.push(user?.id ?? null));
  const session = await first.auth.signup(newUser("dora"));
  const second = clientOf(server, { storage });
  await second.auth.logout();

  const error = await first.object("/me/blog").json("/posts").catch((error) => error);
  assert.ok(error instanceof PodhostError);
  assert.equal(error.status, 401);
  // `session_ended` for the token; `unauthenticated` when the client
  // tried to refresh first (its 2 s token near its end) and learned it so.
  assert.ok(["session_ended", "unauthenticated"].includes(error.code), error.code);
  assert.equal(first.auth.user, null);
  assert.deepEqual(changes, [session.user.id, null]);
});

test("a session kept in a storage survives the client, refreshing as it goes", async () => {
  const storage = memoryStorage();
  const first = clientOf(server, { storage });
  const session = await first.auth.signup(newUser("eve"));
  assert.ok(storage.getItem("podhost.session"));

  await new Promise((resolve) => setTimeout(resolve, Math.max(0, session.tokenExpiresAt - Date.now()) + 1100));
  const second = clientOf(server, { storage });
  assert.equal((await second.auth.me()).user.id, session.user.id);

  // The first client's refresh token was rotated by the second: it takes
  // the stored one instead of reusing its own (which would end the session).
  assert.equal((await first.auth.me()).user.id, session.user.id);
  assert.equal((await second.auth.me()).user.id, session.user.id);

  await second.auth.logout();
  assert.equal(storage.getItem("podhost.session"), null);
});
