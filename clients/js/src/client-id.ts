import { type KeyValueStorage, readItem, writeItem } from "./storage.js";

const KEY = "podhost.client_id";
// What servers accept as a client id (examples/notes: 1 to 64 of these).
const VALID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * This client's id, made once and kept in `storage`, so a server that
 * tracks deliveries per client (acks, resends) knows it again after a
 * reconnect or a page reload.
 */
export function persistentClientId(storage: KeyValueStorage): string {
  const kept = readItem(storage, KEY);
  if (kept && VALID.test(kept)) return kept;
  const id = randomId();
  writeItem(storage, KEY, id);
  return id;
}

/** A random UUID (v4), also where `crypto.randomUUID` is missing (plain-HTTP pages). */
function randomId(): string {
  const crypto = globalThis.crypto;
  if (typeof crypto?.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
