/**
 * An error answer (status 400 or more) from podhost or from an object,
 * which both answer as `{"error": {"code", "message"}}`. `body` is the
 * whole answer (parsed JSON, else its text), for answers that carry more
 * than the error, such as a 409 with the current version of a record.
 */
export class PodhostError extends Error {
  /** The HTTP status. */
  readonly status: number;
  /** `error.code` of the answer, else `http_<status>`. */
  readonly code: string;
  /** The whole answer: parsed JSON, else its text (`undefined` when empty). */
  readonly body: unknown;

  constructor(status: number, code: string, message: string, body?: unknown) {
    super(message);
    this.name = "PodhostError";
    this.status = status;
    this.code = code;
    this.body = body;
  }

  /** The error of an answer, reading its body. */
  static async from(response: Response): Promise<PodhostError> {
    const text = await response.text().catch(() => "");
    const body = parseBody(text);
    const error = isRecord(body) && isRecord(body.error) ? body.error : undefined;
    const code = typeof error?.code === "string" ? error.code : `http_${response.status}`;
    const message =
      typeof error?.message === "string"
        ? error.message
        : typeof body === "string" && body.trim() !== ""
          ? body.trim().slice(0, 500)
          : `${response.status} ${response.statusText}`.trim();
    return new PodhostError(response.status, code, message, body);
  }
}

/** `send()` on a `Live` whose queue of unsent messages is full. */
export class QueueFullError extends Error {
  constructor(limit: number) {
    super(`${limit} messages are already waiting for the connection; this one was not queued`);
    this.name = "QueueFullError";
  }
}

function parseBody(text: string): unknown {
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Whether `value` is a plain JSON object. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
