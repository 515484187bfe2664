/**
 * Where the client keeps what outlives one page or process: the session's
 * tokens (token mode, only in a storage you pass) and the client id. The
 * subset of the Web Storage API the client uses, so `localStorage`,
 * `sessionStorage` or `memoryStorage()` fit.
 */
export interface KeyValueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** A storage in memory, gone with the process. */
export function memoryStorage(): KeyValueStorage {
  const items = new Map<string, string>();
  return {
    getItem: (key) => items.get(key) ?? null,
    setItem: (key, value) => void items.set(key, value),
    removeItem: (key) => void items.delete(key),
  };
}

/**
 * A browser storage by name, if the page may use it (it throws in some
 * privacy modes and sandboxed frames).
 */
export function browserStorage(name: "localStorage" | "sessionStorage"): KeyValueStorage | undefined {
  try {
    const storage = (globalThis as Record<string, unknown>)[name] as KeyValueStorage | undefined;
    if (!storage) return undefined;
    const probe = "podhost.probe";
    storage.setItem(probe, "1");
    storage.removeItem(probe);
    return storage;
  } catch {
    return undefined;
  }
}

/** Reads a key, taking a storage that throws for a missing one. */
export function readItem(storage: KeyValueStorage, key: string): string | null {
  try {
    return storage.getItem(key);
  } catch {
    return null;
  }
}

/** Writes a key; a full or refusing storage only loses persistence. */
export function writeItem(storage: KeyValueStorage, key: string, value: string | null): void {
  try {
    if (value === null) storage.removeItem(key);
    else storage.setItem(key, value);
  } catch {
    // Kept in memory only.
  }
}
