import type { Auth } from "./auth.js";
import type { ReconnectOptions } from "./backoff.js";
import { type Change, changeOf } from "./changes.js";
import { Connection, type ConnectionState, type StateInfo } from "./connection.js";
import { PodhostError } from "./errors.js";
import { Listeners } from "./listeners.js";
import { type ServerEvent, SseParser } from "./sse-parser.js";

/** Options of `client.events(path)`. */
export interface EventsOptions {
  /** Resume after this id (else the stream starts with live events). */
  lastEventId?: string;
  reconnect?: ReconnectOptions;
  /**
   * Reconnect when nothing (not even the server's keep-alive comments,
   * every `[sockets] ping_interval`, 30 s by default) arrived for this
   * long: a dead network shows no end of stream otherwise. Default 90 s;
   * 0 turns it off.
   */
  idleTimeoutMs?: number;
  /** Added before the first connection, like `onEvent`. */
  onEvent?: (event: ServerEvent) => void;
  /** Added before the first connection, like `onState`. */
  onState?: (state: ConnectionState, info: StateInfo) => void;
}

/**
 * An object's event stream (`GET …/_events`, Server-Sent Events) read
 * over `fetch`, so it works in Node, carries the session's token, and
 * resumes: every reconnect sends `Last-Event-ID`, and the server first
 * replays what came since (a `podhost-gap` event says when its log no
 * longer held some). An error answer other than 408 and 429 (after a
 * refresh, for 401) stops the retries: the state goes `closed` with the
 * `PodhostError`, until `reconnect()`.
 */
export class EventStream extends Connection {
  /** The stream's path on the server. */
  readonly path: string;
  readonly #auth: Auth;
  readonly #parser: SseParser;
  readonly #events = new Listeners<[ServerEvent]>();
  #abort: AbortController | undefined;
  readonly #idleTimeoutMs: number;

  /** @internal Made by `client.events(path)`. */
  constructor(auth: Auth, path: string, options: EventsOptions = {}) {
    super(options.reconnect);
    this.#auth = auth;
    this.path = path;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 90_000;
    this.#parser = new SseParser(
      (event) => this.#events.emit(event),
      (ms) => this.retryAdvice(ms),
      options.lastEventId,
    );
    if (options.onEvent) this.onEvent(options.onEvent);
    if (options.onState) this.onState(options.onState);
  }

  /** The id of the last event received: where a reconnect resumes. */
  get lastEventId(): string | undefined {
    return this.#parser.lastEventId;
  }

  /** Calls `listener` with every event; returns a function that stops it. */
  onEvent(listener: (event: ServerEvent) => void): () => void {
    return this.#events.add(listener);
  }

  /**
   * Calls `listener` with each change of topic `table:<name>` (a typed
   * table's change events; the SSE event of that name, data as JSON).
   */
  onChange<Row = Record<string, unknown>>(topic: string, listener: (change: Change<Row>) => void): () => void {
    return this.onEvent((event) => {
      if (event.event !== topic) return;
      const change = changeOf(topic, JSON.parse(event.data));
      if (change) listener(change as Change<Row>);
    });
  }

  protected async connect(token: number): Promise<void> {
    const abort = new AbortController();
    this.#abort = abort;
    this.#parser.reset();
    const headers: Record<string, string> = { accept: "text/event-stream" };
    const lastEventId = this.#parser.lastEventId;
    if (lastEventId) headers["last-event-id"] = lastEventId;
    const response = await this.#auth.send(this.path, {
      method: "GET",
      headers,
      signal: abort.signal,
      cache: "no-store",
    });
    if (!this.current(token)) {
      await response.body?.cancel().catch(() => {});
      return;
    }
    if (!response.ok) {
      const error = await PodhostError.from(response);
      const final = error.status < 500 && error.status !== 408 && error.status !== 429;
      return this.dropped(token, { error }, final);
    }
    if (!response.body) return this.dropped(token, { error: new Error("the event stream has no body") });
    this.opened(token);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const idle = this.#watchIdle(token);
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (!this.current(token)) {
          await reader.cancel().catch(() => {});
          return;
        }
        if (done) break;
        idle.heard();
        this.#parser.push(decoder.decode(value, { stream: true }));
      }
    } finally {
      idle.stop();
    }
    this.dropped(token, {});
  }

  /** Drops the attempt when it has been silent for `idleTimeoutMs`. */
  #watchIdle(token: number): { heard(): void; stop(): void } {
    const limit = this.#idleTimeoutMs;
    if (!(limit > 0)) return { heard() {}, stop() {} };
    let last = Date.now();
    const timer = setInterval(
      () => {
        if (Date.now() - last <= limit) return;
        clearInterval(timer);
        this.abort();
        this.dropped(token, { error: new Error(`nothing arrived for ${limit} ms`) });
      },
      Math.min(limit / 2, 5_000),
    );
    return {
      heard: () => {
        last = Date.now();
      },
      stop: () => clearInterval(timer),
    };
  }

  protected abort(): void {
    this.#abort?.abort();
    this.#abort = undefined;
  }
}
