/** The server a client talks to: its base URL and the `fetch` to use. */
export class Endpoint {
  readonly baseUrl: string;
  readonly #fetch: typeof fetch;

  constructor(baseUrl: string, fetchImpl: typeof fetch) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.#fetch = fetchImpl;
  }

  /** The URL of a path on the server (`/me/blog/posts?limit=10`). */
  url(path: string): URL {
    if (!path.startsWith("/")) path = `/${path}`;
    return new URL(this.baseUrl + path);
  }

  /** The WebSocket URL of a path, with `query` added to its own. */
  socketUrl(path: string, query: Record<string, string>): string {
    const url = this.url(path);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    for (const [name, value] of Object.entries(query)) url.searchParams.set(name, value);
    return url.toString();
  }

  fetch(path: string, init: RequestInit): Promise<Response> {
    return this.#fetch(this.url(path), init);
  }
}

/** `path` and `subpath` as one path: `("/me/blog", "/posts")` → `/me/blog/posts`. */
export function joinPath(path: string, subpath: string): string {
  const base = path.replace(/\/+$/, "");
  if (subpath === "" || subpath === "/") return base === "" ? "/" : base;
  if (subpath.startsWith("?") || subpath.startsWith("#")) return base + subpath;
  return `${base}/${subpath.replace(/^\/+/, "")}`;
}
