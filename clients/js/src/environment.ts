/** What the client needs to know about where it runs. */

/** Whether this is a browser page (not Node, not a worker without a DOM). */
export function inBrowser(): boolean {
  return typeof window !== "undefined" && typeof document !== "undefined";
}

/** The page's origin in a browser, else undefined. */
export function pageOrigin(): string | undefined {
  const location = (globalThis as { location?: { origin?: string } }).location;
  return location?.origin && location.origin !== "null" ? location.origin : undefined;
}

/**
 * Calls `listener` when the browser goes back online; returns a function
 * that stops it. Does nothing where there is no such event (Node).
 */
export function onOnline(listener: () => void): () => void {
  const target = globalThis as {
    addEventListener?: (type: string, listener: () => void) => void;
    removeEventListener?: (type: string, listener: () => void) => void;
  };
  if (!inBrowser() || typeof target.addEventListener !== "function") return () => {};
  target.addEventListener("online", listener);
  return () => target.removeEventListener?.("online", listener);
}

/** Reports an error thrown by an app's listener without stopping the client. */
export function reportListenerError(error: unknown): void {
  const report = (globalThis as { reportError?: (error: unknown) => void }).reportError;
  if (typeof report === "function") report(error);
  else console.error("podhost client: a listener threw", error);
}
