import type { Auth } from "./auth.js";
import { joinPath } from "./endpoint.js";
import { PodhostError } from "./errors.js";

/** Options of `PodhostObject.json`. */
export interface JsonOptions {
  /** Default `GET`, or `POST` when there is a body. */
  method?: string;
  /** Sent as JSON. */
  body?: unknown;
  headers?: HeadersInit;
  signal?: AbortSignal;
}

/**
 * One object (or any path of the server), e.g. `client.object("/me/blog")`
 * or `client.object("/objects/counter/alice")`: requests to paths below it
 * with the client's session, podhost's error answers as `PodhostError`.
 */
export class PodhostObject {
  /** The object's path on the server. */
  readonly path: string;
  readonly #auth: Auth;

  /** @internal Made by `client.object(path)`. */
  constructor(auth: Auth, path: string) {
    this.#auth = auth;
    this.path = joinPath(path.startsWith("/") ? path : `/${path}`, "");
  }

  /**
   * A request to `subpath` below the object (`"/posts/1"`, `"?limit=5"`,
   * `""` for the object itself). Resolves to the response for statuses
   * below 400; rejects with a `PodhostError` for the others, and with the
   * `fetch` implementation's error when the server cannot be reached.
   */
  async fetch(subpath = "", init: RequestInit = {}): Promise<Response> {
    const response = await this.#auth.send(joinPath(this.path, subpath), init);
    if (response.status >= 400) throw await PodhostError.from(response);
    return response;
  }

  /**
   * A JSON request and its JSON answer (`undefined` for an empty one):
   * `json("/posts", { body: { title, content } })` posts, `json("/posts")`
   * gets. Errors as `fetch`.
   */
  async json<T = unknown>(subpath = "", options: JsonOptions = {}): Promise<T> {
    const headers = new Headers(options.headers);
    headers.set("accept", "application/json");
    const init: RequestInit = {
      method: options.method ?? (options.body === undefined ? "GET" : "POST"),
      headers,
      signal: options.signal,
    };
    if (options.body !== undefined) {
      headers.set("content-type", "application/json");
      init.body = JSON.stringify(options.body);
    }
    const response = await this.fetch(subpath, init);
    const text = await response.text();
    if (text === "") return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new PodhostError(response.status, "invalid_json", "the answer is not JSON", text);
    }
  }
}
