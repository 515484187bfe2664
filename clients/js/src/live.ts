import type { Auth } from "./auth.js";
import type { ReconnectOptions } from "./backoff.js";
import { type Change, changeOf } from "./changes.js";
import { Connection, type ConnectionState, type StateInfo } from "./connection.js";
import type { Endpoint } from "./endpoint.js";
import { isRecord, QueueFullError } from "./errors.js";
import { Listeners } from "./listeners.js";

/**
 * The WebSocket the client uses: the browser's, or one given in the
 * options (in Node 20, the `ws` package's). In token mode the handshake
 * needs `Authorization`, so it is made as `new WebSocket(url, [], {
 * headers })`, which `ws` understands and browsers cannot do (they use
 * cookie mode). The handlers take `any` so that the DOM's and `ws`'s
 * types, whose handlers take their own event types, fit.
 */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType?: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
}

export type WebSocketConstructor = new (
  url: string,
  protocols?: string | string[],
  options?: { headers?: Record<string, string> },
) => WebSocketLike;

/** Options of `client.live(path)`. */
export interface LiveOptions {
  /** The id sent as `?client_id=` (default: the client's persistent id, `client.clientId`). */
  clientId?: string;
  reconnect?: ReconnectOptions;
  /** How many messages `send` keeps while disconnected (default 1,000). */
  maxQueued?: number;
  /** Acknowledge `{"type", "seq"}` messages (default true). */
  ack?: boolean;
  /**
   * Close codes after which the socket stays closed until `reconnect()`
   * (default `[1008, 4000]`: access ended; replaced by a newer socket
   * with the same client id, as `examples/notes` closes the older one).
   */
  finalCodes?: number[];
  /**
   * Sends `message` (default `"ping"`) every `everyMs` and reconnects when
   * nothing at all arrived for two intervals: a dead network shows no
   * close otherwise. Answers equal to `reply` (default `"pong"`) are not
   * passed to the listeners. Off unless given.
   */
  heartbeat?: { everyMs: number; message?: string; reply?: string };
  /** Added before the first connection, like `onMessage`. */
  onMessage?: (message: unknown) => unknown;
  /** Added before the first connection, like `onState`. */
  onState?: (state: ConnectionState, info: StateInfo) => void;
}

const OPEN = 1;
/** 1008: the server ended the session's or key's access; 4000: replaced by a newer socket. */
const FINAL_CODES = [1008, 4000];

/**
 * A WebSocket kept open: reconnects with backoff, sends `?client_id=`,
 * queues `send` while disconnected and flushes on open (in order, before
 * the `open` state is announced), and acknowledges delivery: a message
 * `{"type": …, "seq": N}` is answered `{"type": "ack", "seq": N}` once
 * every message listener has run (and resolved, if it returned a
 * promise); a listener that throws leaves it unacknowledged, so the
 * server sends it again, and no later seq is acknowledged on that
 * connection until it succeeds (a server may take an ack as covering
 * every earlier seq). Messages are handled one at a time, in order.
 * A close with one of `finalCodes` (the session was logged out, access
 * revoked, replaced) stays closed until `reconnect()`.
 */
export class Live extends Connection {
  /** The socket's path on the server. */
  readonly path: string;
  /** The id this connection sends as `?client_id=`. */
  readonly clientId: string;
  readonly #auth: Auth;
  readonly #endpoint: Endpoint;
  readonly #WebSocket: WebSocketConstructor;
  readonly #maxQueued: number;
  readonly #ack: boolean;
  readonly #finalCodes: number[];
  readonly #heartbeat: { everyMs: number; message: string; reply: string } | undefined;
  /** The lowest seq whose handling failed on the current connection. */
  #failedSeq: number | undefined;
  #lastHeard = 0;
  #beat: ReturnType<typeof setInterval> | undefined;
  readonly #messages = new Listeners<[unknown]>();
  #queue: string[] = [];
  #socket: WebSocketLike | undefined;
  #handling: Promise<void> = Promise.resolve();

  /** @internal Made by `client.live(path)`. */
  constructor(
    auth: Auth,
    endpoint: Endpoint,
    WebSocket: WebSocketConstructor,
    path: string,
    clientId: string,
    options: LiveOptions = {},
  ) {
    super(options.reconnect);
    this.#auth = auth;
    this.#endpoint = endpoint;
    this.#WebSocket = WebSocket;
    this.path = path;
    this.clientId = clientId;
    this.#maxQueued = options.maxQueued ?? 1000;
    this.#ack = options.ack ?? true;
    this.#finalCodes = options.finalCodes ?? FINAL_CODES;
    const beat = options.heartbeat;
    if (beat && beat.everyMs > 0) {
      this.#heartbeat = { everyMs: beat.everyMs, message: beat.message ?? "ping", reply: beat.reply ?? "pong" };
    }
    if (options.onMessage) this.onMessage(options.onMessage);
    if (options.onState) this.onState(options.onState);
  }

  /**
   * Calls `listener` with each message (parsed JSON, else the text; binary
   * as it came). It may return a promise: the message is acknowledged
   * after it resolves. Returns a function that stops it.
   */
  onMessage(listener: (message: unknown) => unknown): () => void {
    return this.#messages.add(listener);
  }

  /** Calls `listener` with each change of topic `table:<name>` that arrives as a message. */
  onChange<Row = Record<string, unknown>>(topic: string, listener: (change: Change<Row>) => unknown): () => void {
    return this.onMessage((message) => {
      const change = changeOf(topic, message);
      return change ? listener(change as Change<Row>) : undefined;
    });
  }

  /**
   * Sends a message (a string as is, anything else as JSON) now if open,
   * else when the connection next opens. Throws `QueueFullError` when
   * `maxQueued` messages already wait.
   */
  send(message: unknown): void {
    const data = typeof message === "string" ? message : JSON.stringify(message);
    const socket = this.#socket;
    if (this.state === "open" && socket?.readyState === OPEN && this.#queue.length === 0) {
      socket.send(data);
      return;
    }
    if (this.#queue.length >= this.#maxQueued) throw new QueueFullError(this.#maxQueued);
    this.#queue.push(data);
  }

  /** Messages waiting for the connection. */
  get queued(): number {
    return this.#queue.length;
  }

  protected async connect(token: number): Promise<void> {
    const headers = await this.#auth.socketHeaders();
    if (!this.current(token)) return;
    const url = this.#endpoint.socketUrl(this.path, { client_id: this.clientId });
    const socket = headers ? new this.#WebSocket(url, [], { headers }) : new this.#WebSocket(url);
    this.#socket = socket;
    if ("binaryType" in socket) socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      if (!this.current(token)) return;
      this.#failedSeq = undefined;
      this.#startHeartbeat(socket, token);
      this.#flush(socket);
      this.opened(token);
    };
    socket.onmessage = (event: { data: unknown }) => {
      if (!this.current(token)) return;
      this.#lastHeard = Date.now();
      if (this.#heartbeat && event.data === this.#heartbeat.reply) return;
      this.#receive(socket, event.data);
    };
    socket.onclose = (event: { code: number }) => {
      if (this.#socket === socket) this.#socket = undefined;
      this.#stopHeartbeat();
      this.dropped(token, { code: event.code }, this.#finalCodes.includes(event.code));
    };
    socket.onerror = () => {
      // A close event follows with the code.
    };
  }

  protected abort(): void {
    this.#stopHeartbeat();
    const socket = this.#socket;
    this.#socket = undefined;
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = null;
    // Closing a socket still connecting reports an error (`ws` throws one
    // that no listener takes): it is expected, so it is taken and dropped.
    socket.onerror = () => {};
    try {
      socket.close(1000);
    } catch {
      // Not open yet in some implementations: it is dropped all the same.
    }
  }

  #flush(socket: WebSocketLike): void {
    while (this.#queue.length > 0 && socket.readyState === OPEN) {
      socket.send(this.#queue[0]!);
      this.#queue.shift();
    }
  }

  #receive(socket: WebSocketLike, data: unknown): void {
    const message = typeof data === "string" ? parseJson(data) : data;
    this.#handling = this.#handling.then(async () => {
      if (this.#messages.size === 0) return;
      const handled = await this.#messages.emitAndWait(message);
      const seq = ackable(message);
      if (seq === undefined || !this.#ack || this.#socket !== socket) return;
      if (!handled) {
        this.#failedSeq = Math.min(this.#failedSeq ?? seq, seq);
        return;
      }
      if (this.#failedSeq !== undefined) {
        if (seq > this.#failedSeq) return;
        if (seq === this.#failedSeq) this.#failedSeq = undefined;
      }
      if (socket.readyState === OPEN) socket.send(JSON.stringify({ type: "ack", seq }));
    });
  }

  #startHeartbeat(socket: WebSocketLike, token: number): void {
    const beat = this.#heartbeat;
    if (!beat) return;
    this.#lastHeard = Date.now();
    this.#beat = setInterval(() => {
      if (Date.now() - this.#lastHeard > 2 * beat.everyMs) {
        // Silent for two intervals: the connection is gone without a close.
        this.#stopHeartbeat();
        this.abort();
        this.dropped(token, { error: new Error("no answer to the heartbeat") });
        return;
      }
      if (socket.readyState === OPEN) socket.send(beat.message);
    }, beat.everyMs);
  }

  #stopHeartbeat(): void {
    if (this.#beat !== undefined) clearInterval(this.#beat);
    this.#beat = undefined;
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The `seq` to acknowledge, for a `{"type", "seq"}` message other than an ack. */
function ackable(message: unknown): number | undefined {
  if (!isRecord(message) || typeof message.type !== "string" || message.type === "ack") return undefined;
  return Number.isInteger(message.seq) ? (message.seq as number) : undefined;
}
