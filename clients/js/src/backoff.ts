/** How a connection is retried after it drops or fails to open. */
export interface ReconnectOptions {
  /** The first retry waits up to this long (default 250 ms). */
  initialMs?: number;
  /** The wait doubles per failed attempt up to this (default 10 s). */
  maxMs?: number;
  /** A connection open this long counts as stable: the wait starts over (default 5 s). */
  stableMs?: number;
  /** An attempt not open after this long is dropped and retried (default 15 s). */
  connectTimeoutMs?: number;
}

/**
 * Exponential backoff with full jitter: attempt n waits a random time in
 * [0, min(maxMs, initialMs × 2ⁿ)), so clients that dropped together (a
 * server restart) do not come back together.
 */
export class Backoff {
  initialMs: number;
  readonly maxMs: number;
  readonly stableMs: number;
  readonly connectTimeoutMs: number;
  #attempt = 0;

  constructor(options: ReconnectOptions = {}) {
    this.initialMs = positive(options.initialMs, 250);
    this.maxMs = Math.max(this.initialMs, positive(options.maxMs, 10_000));
    this.stableMs = positive(options.stableMs, 5_000);
    this.connectTimeoutMs = positive(options.connectTimeoutMs, 15_000);
  }

  /** The wait before the next attempt. */
  next(): number {
    const ceiling = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt += 1;
    return Math.floor(Math.random() * ceiling);
  }

  /** Failed attempts since the last stable connection. */
  get attempt(): number {
    return this.#attempt;
  }

  reset(): void {
    this.#attempt = 0;
  }

  /** Starts over if a connection opened at `openedAt` lasted long enough. */
  settle(openedAt: number | undefined): void {
    if (openedAt !== undefined && Date.now() - openedAt >= this.stableMs) this.reset();
  }
}

function positive(value: number | undefined, fallback: number): number {
  return typeof value === "number" && Number.isFinite(value) && value > 0 ? value : fallback;
}
