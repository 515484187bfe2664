import { Backoff, type ReconnectOptions } from "./backoff.js";
import { onOnline } from "./environment.js";
import { Listeners } from "./listeners.js";

/** Where a live connection is: opening, open, or closed (waiting to retry, or for good). */
export type ConnectionState = "connecting" | "open" | "closed";

/** What goes with a state change. */
export interface StateInfo {
  /** Failed attempts since the last stable connection. */
  attempt: number;
  /** `closed`: the next attempt starts in this many ms; absent when none is planned (`close()`, or a refusal). */
  retryInMs?: number;
  /** `closed`: the WebSocket close code. */
  code?: number;
  /** `closed`: why the connection failed or was refused (a `PodhostError` for an error answer). */
  error?: unknown;
}

/**
 * A connection kept open: the states, the retries with backoff, a retry
 * at once when the browser comes back online, `reconnect()` and
 * `close()`. Subclasses open one attempt (`connect`) and report it
 * through `opened` and `dropped`; each attempt has a token, so callbacks
 * of an attempt that `reconnect()` or `close()` replaced do nothing.
 */
export abstract class Connection {
  #state: ConnectionState = "connecting";
  #announced = false;
  readonly #states = new Listeners<[ConnectionState, StateInfo]>();
  readonly #backoff: Backoff;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Drops an attempt that takes too long to open (a server that accepts and says nothing). */
  #openTimer: ReturnType<typeof setTimeout> | undefined;
  #token = 0;
  #openedAt: number | undefined;
  #stopped = false;
  /** Closed by a final refusal: only `reconnect()` opens it again, not going online. */
  #refused = false;
  #stopOnline: () => void;

  constructor(reconnect: ReconnectOptions | undefined) {
    this.#backoff = new Backoff(reconnect);
    this.#stopOnline = onOnline(() => this.#backOnline());
    // The first attempt starts after the caller has added its listeners
    // (unless a `reconnect()` or `close()` came first).
    queueMicrotask(() => {
      if (this.#token === 0) this.#start();
    });
  }

  /** The connection's state now. */
  get state(): ConnectionState {
    return this.#state;
  }

  /**
   * Calls `listener` on each change of state (`connecting` → `open` →
   * `closed` → `connecting` ...). Returns a function that stops it.
   */
  onState(listener: (state: ConnectionState, info: StateInfo) => void): () => void {
    return this.#states.add(listener);
  }

  /**
   * Drops the current connection or wait and connects again at once, with
   * the backoff started over (a "reconnect" button; also what going back
   * online does). Reopens a connection that `close()` ended.
   */
  reconnect(): void {
    if (this.#stopped) {
      this.#stopped = false;
      this.#stopOnline = onOnline(() => this.#backOnline());
    }
    this.#refused = false;
    this.#clearTimer();
    this.#token += 1;
    this.abort();
    this.#backoff.reset();
    if (this.#state === "open") this.#setState("closed", { attempt: 0 });
    this.#start();
  }

  /** Closes the connection for good (until `reconnect()`). */
  close(): void {
    this.#stopped = true;
    this.#clearTimer();
    this.#clearOpenTimer();
    this.#token += 1;
    this.abort();
    this.#stopOnline();
    this.#setState("closed", { attempt: this.#backoff.attempt });
  }

  /** Opens one attempt; reports it with `opened` and `dropped`. */
  protected abstract connect(token: number): Promise<void>;

  /** Drops the current attempt's connection without reporting anything. */
  protected abstract abort(): void;

  /** Whether `token` is the current attempt's. */
  protected current(token: number): boolean {
    return token === this.#token && !this.#stopped;
  }

  protected opened(token: number): void {
    if (!this.current(token)) return;
    this.#clearOpenTimer();
    this.#openedAt = Date.now();
    this.#setState("open", { attempt: this.#backoff.attempt });
  }

  /**
   * The attempt's connection failed or ended: retry after a backoff, or,
   * when `final` (the server refused in a way a retry will not change),
   * stay closed until `reconnect()`.
   */
  protected dropped(token: number, info: { code?: number; error?: unknown }, final = false): void {
    if (!this.current(token)) return;
    this.#token += 1;
    this.#clearOpenTimer();
    this.#backoff.settle(this.#openedAt);
    this.#openedAt = undefined;
    if (final) {
      this.#refused = true;
      this.#setState("closed", { ...info, attempt: this.#backoff.attempt });
      return;
    }
    const delay = this.#backoff.next();
    this.#setState("closed", { ...info, attempt: this.#backoff.attempt, retryInMs: delay });
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#start();
    }, delay);
  }

  /** The server's `retry:` advice (SSE): the first wait of later backoffs. */
  protected retryAdvice(ms: number): void {
    if (ms > 0) this.#backoff.initialMs = Math.min(ms, this.#backoff.maxMs);
  }

  /** Online again: retry now what was waiting to retry (not a final refusal). */
  #backOnline(): void {
    if (this.#state !== "open" && !this.#refused) this.reconnect();
  }

  #start(): void {
    if (this.#stopped) return;
    const token = ++this.#token;
    this.#setState("connecting", { attempt: this.#backoff.attempt });
    this.#clearOpenTimer();
    this.#openTimer = setTimeout(() => {
      if (!this.current(token) || this.#state !== "connecting") return;
      this.abort();
      this.dropped(token, { error: new Error("the connection did not open in time") });
    }, this.#backoff.connectTimeoutMs);
    void this.connect(token).catch((error: unknown) => this.dropped(token, { error }));
  }

  #setState(state: ConnectionState, info: StateInfo): void {
    if (state === this.#state && this.#announced) return;
    this.#announced = true;
    this.#state = state;
    this.#states.emit(state, info);
  }

  #clearOpenTimer(): void {
    if (this.#openTimer !== undefined) clearTimeout(this.#openTimer);
    this.#openTimer = undefined;
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
