// What the client's tests share: a real podhost with the classes they use,
// clients in token mode with the `ws` package, and bounded waits.
import { WebSocket } from "ws";
import { createClient } from "../dist/index.js";
import { Podhost, guest } from "../../../tests/js/podhost.mjs";

export { Podhost };

/** A server with `blog` (per user), `counter` and `probe` (public). */
export async function startServer(config) {
  return Podhost.start({
    classes: {
      blog: { path: guest("blog"), access: "user" },
      counter: { path: guest("counter") },
      probe: { path: guest("probe") },
    },
    config,
  });
}

/** A client of `server`, in token mode (Node). */
export function clientOf(server, options = {}) {
  return createClient({ baseUrl: server.url, WebSocket, ...options });
}

let users = 0;

/** A fresh user's email and password. */
export function newUser(name = "user") {
  users += 1;
  return { email: `${name}-${users}-${process.pid}@example.com`, password: "correct horse battery staple" };
}

/** A signed-in client. */
export async function signedIn(server, options = {}) {
  const client = clientOf(server, options);
  await client.auth.signup(newUser());
  return client;
}

/** Waits until `condition()` is truthy, up to `ms`; fails naming `what`. */
export async function waitFor(what, condition, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * A `fetch` that records each request's path and headers and can hold
 * requests of `held` paths back until released: the requests still go
 * to the real server, the tests only watch and delay them.
 */
export function watchedFetch() {
  const requests = [];
  let gate = null;
  const watched = async (input, init = {}) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    requests.push({ path: url.pathname, headers: new Headers(init.headers), method: init.method ?? "GET" });
    if (gate && gate.paths.some((path) => url.pathname === path)) await gate.released;
    return fetch(input, init);
  };
  return {
    fetch: watched,
    requests,
    hold(paths) {
      let release;
      gate = { paths, released: new Promise((resolve) => (release = resolve)) };
      return () => {
        gate = null;
        release();
      };
    },
  };
}

/**
 * The `ws` WebSocket, recording the URLs it opens and the frames it
 * sends on each (the real socket; the test only watches).
 */
export function watchedWebSocket() {
  const urls = [];
  const sent = [];
  class Watched extends WebSocket {
    constructor(url, ...rest) {
      super(url, ...rest);
      urls.push(url);
    }
    send(data, ...rest) {
      sent.push(String(data));
      return super.send(data, ...rest);
    }
  }
  return { WebSocket: Watched, urls, sent };
}
