/**
 * The podhost client: accounts, objects, WebSockets with reconnect and
 * acks, Server-Sent Events with resume, and typed tables' changes. Works
 * in browsers and in Node 20. See README.md.
 */

import { Auth, type AuthMode } from "./auth.js";
import { persistentClientId } from "./client-id.js";
import { Endpoint } from "./endpoint.js";
import { inBrowser, pageOrigin } from "./environment.js";
import { EventStream, type EventsOptions } from "./events.js";
import { Live, type LiveOptions, type WebSocketConstructor } from "./live.js";
import { PodhostObject } from "./object.js";
import { browserStorage, type KeyValueStorage, memoryStorage } from "./storage.js";

export type { AuthMode, Credentials, Me, OrgMembership, Session, User } from "./auth.js";
export { Auth } from "./auth.js";
export type { ReconnectOptions } from "./backoff.js";
export type { Change } from "./changes.js";
export type { ConnectionState, StateInfo } from "./connection.js";
export { PodhostError, QueueFullError } from "./errors.js";
export { EventStream, type EventsOptions } from "./events.js";
export { Live, type LiveOptions, type WebSocketConstructor, type WebSocketLike } from "./live.js";
export { type JsonOptions, PodhostObject } from "./object.js";
export { type ServerEvent, SseParser } from "./sse-parser.js";
export { type KeyValueStorage, memoryStorage } from "./storage.js";

/** Options of `createClient`. */
export interface ClientOptions {
  /** The server, e.g. `http://127.0.0.1:8787` (default: the page's origin; required in Node). */
  baseUrl?: string;
  /** The `fetch` to use (default: the global one). */
  fetch?: typeof fetch;
  /** The WebSocket to use (default: the global one; in Node 20, pass the `ws` package's). */
  WebSocket?: WebSocketConstructor;
  /**
   * Where the client id (and, in token mode, the session's tokens) are
   * kept. Default: the tab's `sessionStorage` in browsers (one id per
   * tab, kept across reloads) and memory elsewhere; tokens are stored
   * only in a storage you pass.
   */
  storage?: KeyValueStorage;
  /** How requests carry the session (default: `"cookies"` in browsers, `"tokens"` elsewhere). */
  mode?: AuthMode;
}

/** A client of one podhost server. */
export class PodhostClient {
  /** Signup, login, logout, who am I; the session's tokens. */
  readonly auth: Auth;
  readonly #endpoint: Endpoint;
  readonly #storage: KeyValueStorage;
  readonly #WebSocket: WebSocketConstructor | undefined;
  #clientId: string | undefined;

  constructor(options: ClientOptions = {}) {
    const baseUrl = options.baseUrl ?? pageOrigin();
    if (!baseUrl) throw new TypeError("createClient: `baseUrl` is required outside a browser page");
    const fetchImpl = options.fetch ?? globalThis.fetch?.bind(globalThis);
    if (!fetchImpl) throw new TypeError("createClient: no global fetch here; pass `fetch`");
    this.#endpoint = new Endpoint(baseUrl, fetchImpl);
    this.#storage = options.storage ?? browserStorage("sessionStorage") ?? memoryStorage();
    this.#WebSocket =
      options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket ?? undefined;
    const mode = options.mode ?? (inBrowser() ? "cookies" : "tokens");
    // Tabs in cookie mode share one session: they tell each other of refreshes.
    const shared = mode === "cookies" ? browserStorage("localStorage") : undefined;
    this.auth = new Auth(this.#endpoint, mode, options.storage, shared);
  }

  /** The server's base URL. */
  get baseUrl(): string {
    return this.#endpoint.baseUrl;
  }

  /** This client's persistent id (made on first use, kept in the storage). */
  get clientId(): string {
    this.#clientId ??= persistentClientId(this.#storage);
    return this.#clientId;
  }

  /** An object by its path: `object("/me/blog")`, `object("/objects/counter/alice")`. */
  object(path: string): PodhostObject {
    return new PodhostObject(this.auth, path);
  }

  /** A WebSocket on `path` (e.g. `/me/blog/ws`), kept open. */
  live(path: string, options: LiveOptions = {}): Live {
    if (!this.#WebSocket) {
      throw new TypeError("live: no global WebSocket here; pass `WebSocket` to createClient (the `ws` package in Node 20)");
    }
    const clientId = options.clientId ?? this.clientId;
    return new Live(this.auth, this.#endpoint, this.#WebSocket, path, clientId, options);
  }

  /** An event stream on `path` (e.g. `/me/blog/_events`), kept open and resumed. */
  events(path: string, options: EventsOptions = {}): EventStream {
    return new EventStream(this.auth, path, options);
  }
}

/** A client of one podhost server (see `ClientOptions`). */
export function createClient(options: ClientOptions = {}): PodhostClient {
  return new PodhostClient(options);
}
