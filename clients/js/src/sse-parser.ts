/** One Server-Sent Event. */
export interface ServerEvent {
  /** The event's name: its `event:` field, else `"message"`. */
  event: string;
  /** Its `data:` lines joined with `\n`. */
  data: string;
  /** The last event id the stream had given when this event came (its own `id:`, if it had one). */
  id: string | undefined;
}

/**
 * The Server-Sent Events format (the HTML standard's "event stream
 * interpretation"), fed text in pieces of any size: lines end in CRLF, LF
 * or CR (also split across pieces); `data` lines accumulate; a blank line
 * dispatches; `id` (without NUL) persists to later events; `retry` takes
 * digits only; lines starting with `:` are comments; other fields are
 * ignored. An event without data is not dispatched.
 */
export class SseParser {
  #buffer = "";
  #afterCr = false;
  #started = false;
  #data: string[] = [];
  #event = "";
  #lastEventId: string | undefined;
  /** The id of the event being read, which becomes the last id once it ends. */
  #pendingId: string | undefined;
  readonly #dispatch: (event: ServerEvent) => void;
  readonly #retry: (ms: number) => void;

  constructor(dispatch: (event: ServerEvent) => void, retry: (ms: number) => void = () => {}, lastEventId?: string) {
    this.#dispatch = dispatch;
    this.#retry = retry;
    this.#lastEventId = lastEventId;
    this.#pendingId = lastEventId;
  }

  /** The last event id seen (or given at the start). */
  get lastEventId(): string | undefined {
    return this.#lastEventId;
  }

  push(text: string): void {
    if (!this.#started && text !== "") {
      this.#started = true;
      if (text.startsWith("\uFEFF")) text = text.slice(1);
    }
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const char = text[i];
      if (char === "\n" && this.#afterCr && i === start && this.#buffer === "") {
        // The LF of a CRLF whose CR ended the previous line.
        this.#afterCr = false;
        start = i + 1;
        continue;
      }
      this.#afterCr = false;
      if (char === "\r" || char === "\n") {
        this.#line(this.#buffer + text.slice(start, i));
        this.#buffer = "";
        this.#afterCr = char === "\r";
        start = i + 1;
      }
    }
    this.#buffer += text.slice(start);
  }

  /** A new connection: a partly received event is dropped, the last id kept. */
  reset(): void {
    this.#buffer = "";
    this.#afterCr = false;
    this.#started = false;
    this.#data = [];
    this.#event = "";
    this.#pendingId = this.#lastEventId;
  }

  #line(line: string): void {
    if (line === "") return this.#end();
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    switch (field) {
      case "data":
        this.#data.push(value);
        break;
      case "event":
        this.#event = value;
        break;
      case "id":
        if (!value.includes("\0")) this.#pendingId = value;
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.#retry(Number(value));
        break;
    }
  }

  #end(): void {
    const data = this.#data;
    const event = this.#event;
    this.#data = [];
    this.#event = "";
    this.#lastEventId = this.#pendingId;
    if (data.length === 0) return;
    this.#dispatch({ event: event || "message", data: data.join("\n"), id: this.#lastEventId });
  }
}
