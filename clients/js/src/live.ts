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
 * cookie mode).
 */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType?: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onclose: ((event: { code: number; reason?: string }) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: unknown) => void) | null;
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
  /** Added before the first connection, like `onMessage`. */
  onMessage?: (message: unknown) => unknown;
  /** Added before the first connection, like `onState`. */
  onState?: (state: ConnectionState, info: StateInfo) => void;
}

const OPEN = 1;
/** Policy violation: the server ended the session's or key's access. */
const POLICY_VIOLATION = 1008;

/**
 * A WebSocket kept open: reconnects with backoff, sends `?client_id=`,
 * queues `send` while disconnected and flushes on open (in order, before
 * the `open` state is announced), and acknowledges delivery: a message
 * `{"type": …, "seq": N}` is answered `{"type": "ack", "seq": N}` once
 * every message listener has run (and resolved, if it returned a
 * promise); a listener that throws leaves it unacknowledged, so the
 * server sends it again. Messages are handled one at a time, in order.
 * A close with 1008 (the session was logged out, access revoked) stays
 * closed until `reconnect()`.
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
      this.#flush(socket);
      this.opened(token);
    };
    socket.onmessage = (event) => {
      if (this.current(token)) this.#receive(socket, event.data);
    };
    socket.onclose = (event) => {
      if (this.#socket === socket) this.#socket = undefined;
      this.dropped(token, { code: event.code }, event.code === POLICY_VIOLATION);
    };
    socket.onerror = () => {
      // A close event follows with the code.
    };
  }

  protected abort(): void {
    const socket = this.#socket;
    this.#socket = undefined;
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
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
      if (handled && this.#ack && seq !== undefined && this.#socket === socket && socket.readyState === OPEN) {
        socket.send(JSON.stringify({ type: "ack", seq }));
      }
    });
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
