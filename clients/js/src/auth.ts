import type { Endpoint } from "./endpoint.js";
import { isRecord, PodhostError } from "./errors.js";
import { Listeners } from "./listeners.js";
import { type KeyValueStorage, readItem, writeItem } from "./storage.js";

/** A podhost account. */
export interface User {
  id: string;
  email: string;
}

/** An organization the user belongs to, with their role in it. */
export interface OrgMembership {
  id: string;
  name: string;
  role: "owner" | "admin" | "member";
}

/** A signed-in session, as signup, login and refresh answer. */
export interface Session {
  user: User;
  /** When the access token expires (ms since the epoch); the client refreshes it by itself. */
  tokenExpiresAt: number;
  /** When the session ends for good (ms since the epoch). */
  sessionExpiresAt: number;
}

/** `GET /auth/me`: the signed-in user and their organizations. */
export interface Me {
  user: User;
  tokenExpiresAt: number;
  orgs: OrgMembership[];
}

export interface Credentials {
  email: string;
  password: string;
}

/**
 * How requests carry the session: `"cookies"` (browsers: the HttpOnly
 * cookies podhost sets; no script sees a token) or `"tokens"` (Node and
 * other clients: `Authorization: Bearer`, tokens kept in memory and in the
 * client's `storage` if one was given).
 */
export type AuthMode = "cookies" | "tokens";

/** What a session is kept as in token mode. */
interface Held {
  user?: User;
  token?: string;
  refreshToken?: string;
  tokenExpiresAt?: number;
  sessionExpiresAt?: number;
  /** How long the access token lived when it was issued. */
  tokenLifetimeMs?: number;
}

const SESSION_KEY = "podhost.session";
/** Cookie mode: when the access cookie the tabs share expires, as the last refresh set it. */
const SHARED_EXPIRY_KEY = "podhost.token_expires_at";
/** The Web Lock that lets one tab at a time refresh. */
const REFRESH_LOCK = "podhost.refresh";
/** Refresh a token this close to its expiry (at most a quarter of its life) before using it. */
const EXPIRY_MARGIN_MS = 30_000;
/** The 401 codes that a new access token can cure. */
const STALE_TOKEN_CODES = new Set(["unauthenticated", "invalid_token", "token_expired"]);

/**
 * Accounts: signup, login, logout, who am I, and the session's tokens.
 * Every request of the client goes through `send`, which adds the
 * session and, on a 401 that a fresh token can cure, refreshes once and
 * retries. Refreshes are shared: a refresh token works once (reusing it
 * ends the session), so concurrent requests never refresh twice.
 */
export class Auth {
  readonly mode: AuthMode;
  readonly #endpoint: Endpoint;
  readonly #storage: KeyValueStorage | undefined;
  /** Cookie mode: what the tabs of the origin share (see `#refreshOnce`). */
  readonly #shared: KeyValueStorage | undefined;
  #held: Held = {};
  #refreshing: Promise<void> | undefined;
  /** Counts refreshes, so a request that failed with an older token just retries. */
  #generation = 0;
  readonly #changes = new Listeners<[User | null]>();

  /** @internal Made by `createClient`. */
  constructor(
    endpoint: Endpoint,
    mode: AuthMode,
    storage: KeyValueStorage | undefined,
    shared: KeyValueStorage | undefined,
  ) {
    this.#endpoint = endpoint;
    this.mode = mode;
    this.#storage = mode === "tokens" ? storage : undefined;
    this.#shared = mode === "cookies" ? shared : undefined;
    this.#held = this.#load();
  }

  /** The signed-in user as last seen (after signup, login, refresh or `me()`), else null. */
  get user(): User | null {
    return this.#held.user ?? null;
  }

  /**
   * Calls `listener` with the user when someone signs in and with null
   * when the session ends (logout, or a refresh the server refused).
   * Returns a function that stops it.
   */
  onChange(listener: (user: User | null) => void): () => void {
    return this.#changes.add(listener);
  }

  /** `POST /auth/signup`: a new account, signed in. */
  async signup(credentials: Credentials): Promise<Session> {
    return this.#signIn("/auth/signup", credentials);
  }

  /** `POST /auth/login`. */
  async login(credentials: Credentials): Promise<Session> {
    return this.#signIn("/auth/login", credentials);
  }

  /**
   * `POST /auth/logout`: ends the session on the server (its sockets and
   * streams close) and forgets it here, whatever the server answered.
   */
  async logout(): Promise<void> {
    try {
      const response = await this.#endpoint.fetch("/auth/logout", this.#authorized({ method: "POST" }));
      await response.body?.cancel();
    } finally {
      this.#forget();
    }
  }

  /** `GET /auth/me`; a `PodhostError` (401) when no one is signed in. */
  async me(): Promise<Me> {
    const response = await this.send("/auth/me", { method: "GET" });
    if (!response.ok) throw await PodhostError.from(response);
    const body = (await response.json()) as { user: User; token_expires_at: number; orgs: OrgMembership[] };
    this.#held.tokenExpiresAt = body.token_expires_at;
    this.#setUser(body.user);
    this.#save();
    return { user: body.user, tokenExpiresAt: body.token_expires_at, orgs: body.orgs };
  }

  /**
   * `POST /auth/refresh`: a new access token and refresh token for the
   * session (cookies in cookie mode). Called by itself when needed; one
   * refresh at a time, shared by its callers.
   */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#refreshOnce().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  /**
   * @internal A request with the session, refreshed and retried once on a
   * 401 that a new token cures. Answers of any status are returned.
   */
  async send(path: string, init: RequestInit): Promise<Response> {
    await this.fresh();
    const generation = this.#generation;
    const response = await this.#endpoint.fetch(path, this.#authorized(init));
    if (response.status !== 401) return response;
    const code = await errorCode(response);
    if (code === "session_ended") this.#forget();
    if (!STALE_TOKEN_CODES.has(code ?? "") || !this.#mayRefresh() || !retriable(init)) return response;
    if (generation === this.#generation) {
      try {
        await this.refresh();
      } catch {
        return response;
      }
    }
    await response.body?.cancel().catch(() => {});
    return this.#endpoint.fetch(path, this.#authorized(init));
  }

  /** @internal Refreshes a token about to expire (errors show on the request that follows). */
  async fresh(): Promise<void> {
    const expiresAt = this.#held.tokenExpiresAt;
    if (expiresAt === undefined || expiresAt - Date.now() > this.#margin()) return;
    if (this.mode === "tokens" && !this.#held.refreshToken) return;
    await this.refresh().catch(() => {});
  }

  /** @internal The headers a WebSocket handshake needs (token mode). */
  async socketHeaders(): Promise<Record<string, string> | undefined> {
    await this.fresh();
    return this.#held.token && this.mode === "tokens"
      ? { authorization: `Bearer ${this.#held.token}` }
      : undefined;
  }

  async #signIn(path: string, credentials: Credentials): Promise<Session> {
    const response = await this.#endpoint.fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: credentials.email, password: credentials.password }),
      credentials: this.#credentials(),
    });
    if (!response.ok) throw await PodhostError.from(response);
    return this.#adopt(await response.json());
  }

  /**
   * One refresh, under a Web Lock where the platform has them: tabs share
   * the refresh cookie (or a storage's refresh token), and two of them
   * refreshing with the same one at once would be a reuse that ends the
   * session. Inside the lock, a tab first looks whether another one has
   * just refreshed, and if so takes that instead.
   */
  #refreshOnce(): Promise<void> {
    return exclusive(REFRESH_LOCK, async () => {
      if (this.mode === "tokens" && this.#adoptNewerStored()) return;
      if (this.mode === "cookies" && this.#adoptSharedRefresh()) return;
      await this.#refreshNow();
    });
  }

  async #refreshNow(): Promise<void> {
    const refreshToken = this.#held.refreshToken;
    if (this.mode === "tokens" && !refreshToken) {
      throw new PodhostError(401, "unauthenticated", "not signed in: log in or sign up first");
    }
    const response = await this.#endpoint.fetch("/auth/refresh", {
      method: "POST",
      headers: refreshToken ? { "content-type": "application/json" } : {},
      body: refreshToken ? JSON.stringify({ refresh_token: refreshToken }) : undefined,
      credentials: this.#credentials(),
    });
    if (!response.ok) {
      const error = await PodhostError.from(response);
      // The server refused the session (ended, expired, reused, or no
      // refresh cookie): it is over. Other failures may pass.
      if (error.status === 400 || error.status === 401) this.#forget();
      throw error;
    }
    this.#adopt(await response.json());
  }

  /**
   * Another client sharing the storage (another tab) may have refreshed:
   * its tokens are the live ones, and refreshing with ours would be a
   * reuse that ends the session.
   */
  #adoptNewerStored(): boolean {
    const stored = this.#load();
    if (!stored.refreshToken || stored.refreshToken === this.#held.refreshToken) return false;
    this.#held = stored;
    this.#generation += 1;
    return true;
  }

  /**
   * Cookie mode: another tab refreshed since this one learned its token's
   * expiry, so the browser already holds new cookies.
   */
  #adoptSharedRefresh(): boolean {
    const shared = Number(this.#shared ? readItem(this.#shared, SHARED_EXPIRY_KEY) : NaN);
    if (!Number.isFinite(shared) || shared - Date.now() <= this.#margin()) return false;
    const known = this.#held.tokenExpiresAt;
    if (known !== undefined && shared <= known) return false;
    this.#held.tokenExpiresAt = shared;
    this.#generation += 1;
    return true;
  }

  #adopt(answer: unknown): Session {
    if (!isRecord(answer) || !isRecord(answer.user)) {
      throw new PodhostError(200, "invalid_answer", "the server's session answer has no user", answer);
    }
    const session: Session = {
      user: answer.user as unknown as User,
      tokenExpiresAt: Number(answer.token_expires_at),
      sessionExpiresAt: Number(answer.session_expires_at),
    };
    const changed = this.#held.user?.id !== session.user.id;
    this.#held = {
      user: session.user,
      tokenExpiresAt: session.tokenExpiresAt,
      sessionExpiresAt: session.sessionExpiresAt,
      tokenLifetimeMs: session.tokenExpiresAt - Date.now(),
    };
    if (this.mode === "tokens") {
      this.#held.token = typeof answer.token === "string" ? answer.token : undefined;
      this.#held.refreshToken = typeof answer.refresh_token === "string" ? answer.refresh_token : undefined;
    }
    this.#generation += 1;
    this.#save();
    if (this.#shared) writeItem(this.#shared, SHARED_EXPIRY_KEY, String(session.tokenExpiresAt));
    if (changed) this.#changes.emit(session.user);
    return session;
  }

  #setUser(user: User): void {
    const changed = this.#held.user?.id !== user.id;
    this.#held.user = user;
    if (changed) this.#changes.emit(user);
  }

  #forget(): void {
    const wasSignedIn = this.#held.user !== undefined || this.#held.token !== undefined;
    this.#held = {};
    this.#generation += 1;
    this.#save();
    if (this.#shared) writeItem(this.#shared, SHARED_EXPIRY_KEY, null);
    if (wasSignedIn) this.#changes.emit(null);
  }

  /** How close to its expiry a token is refreshed before use. */
  #margin(): number {
    return Math.min(EXPIRY_MARGIN_MS, (this.#held.tokenLifetimeMs ?? 0) / 4);
  }

  #mayRefresh(): boolean {
    return this.mode === "cookies" || this.#held.refreshToken !== undefined;
  }

  #credentials(): RequestCredentials {
    return this.mode === "cookies" ? "same-origin" : "omit";
  }

  #authorized(init: RequestInit): RequestInit {
    const headers = new Headers(init.headers);
    if (this.mode === "tokens" && this.#held.token && !headers.has("authorization")) {
      headers.set("authorization", `Bearer ${this.#held.token}`);
    }
    return { ...init, headers, credentials: this.#credentials() };
  }

  #load(): Held {
    if (!this.#storage) return { ...this.#held };
    const text = readItem(this.#storage, SESSION_KEY);
    if (!text) return {};
    try {
      const held: unknown = JSON.parse(text);
      return isRecord(held) ? (held as Held) : {};
    } catch {
      return {};
    }
  }

  #save(): void {
    if (!this.#storage) return;
    const empty = this.#held.token === undefined && this.#held.refreshToken === undefined;
    writeItem(this.#storage, SESSION_KEY, empty ? null : JSON.stringify(this.#held));
  }
}

/** Runs `task` holding the Web Lock `name` where there are Web Locks (browsers), else at once. */
function exclusive<T>(name: string, task: () => Promise<T>): Promise<T> {
  const locks = (globalThis as { navigator?: { locks?: { request(name: string, task: () => Promise<T>): Promise<T> } } })
    .navigator?.locks;
  return typeof locks?.request === "function" ? locks.request(name, task) : task();
}

/** A request whose body can be sent again (not a stream). */
function retriable(init: RequestInit): boolean {
  return !(typeof ReadableStream !== "undefined" && init.body instanceof ReadableStream);
}

/** The `error.code` of an error answer, leaving the answer unread. */
async function errorCode(response: Response): Promise<string | undefined> {
  try {
    const body: unknown = await response.clone().json();
    const code = isRecord(body) && isRecord(body.error) ? body.error.code : undefined;
    return typeof code === "string" ? code : undefined;
  } catch {
    return undefined;
  }
}
