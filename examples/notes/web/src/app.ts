// The notes UI: sign up or log in, then list, create, edit and delete
// notes, synced across tabs over the notes object's WebSocket.
//
// Edits show at once (optimistic) and go into this tab's outbox, kept in
// sessionStorage, which sends them one at a time in order: an edit made
// while the server is away waits there and goes out when the connection is
// back; one the server refuses (a stale version, a note deleted elsewhere,
// bad input) is rolled back with its reason shown. The server's own state
// comes from `GET /notes` at every (re)connection and from the sync
// batches in between, so a tab that was away misses nothing.

import { createClient, type Live, PodhostError, type User } from "../../../../clients/js/src/index.js";

interface Note {
  id: number;
  title: string;
  body: string;
  version: number;
  created_at: number;
  updated_at: number;
}

type Change =
  | { op: "upsert"; note: Note; client_id?: string; request_id?: string }
  | { op: "delete"; id: number; client_id?: string; request_id?: string };

type SyncMessage =
  | { type: "sync"; seq: number; changes: Change[] }
  | { type: "resync"; seq: number }
  | { type: string };

/** A write of this tab, waiting for the server's answer. */
interface Op {
  requestId: string;
  /**
   * The client id the write is sent with, fixed when it is queued: the
   * server makes a write once per (client id, request id), so a retry
   * after the tab took a new id must still send the old one.
   */
  clientId?: string;
  kind: "create" | "update" | "delete";
  /** The note's id; for a note this tab is still creating, its local key. */
  target: number | string;
  title?: string;
  body?: string;
  /** For an update: the version the edit was based on. */
  version?: number;
}

const client = createClient({});
const notesApi = client.object("/me/notes");

/** The server's notes as last heard, by id. */
const notes = new Map<number, Note>();
/** Ids deleted on the server: a late upsert never brings them back. */
const deleted = new Set<number>();
/** Local keys of notes this tab is creating, once the server named them. */
const created = new Map<string, number>();
let outbox: Op[] = [];
/** Request ids of our writes that a sync batch showed committed. */
const committed = new Set<string>();
/** Counts the notes upserted from any answer or batch ... */
let upserts = 0;
/** ... and when each one last was, so a `GET /notes` sent before does not forget it. */
const upsertedAt = new Map<number, number>();
let sending = false;
let retryTimer: ReturnType<typeof setTimeout> | undefined;
let live: Live | undefined;
let user: User | null = null;
/** Which note is open in its editor (its id or local key). */
let editing: number | string | undefined;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

// ---- errors ---------------------------------------------------------------

function showError(message: string): void {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError(): void {
  $("error").hidden = true;
}

/** Whether a failed request may succeed later unchanged (server away or busy). */
function isTransient(error: unknown): boolean {
  if (!(error instanceof PodhostError)) return true; // fetch itself failed: no answer
  return error.status >= 500 || error.status === 408 || error.status === 429;
}

// ---- the outbox -----------------------------------------------------------

function outboxKey(): string {
  return `podhost-notes-outbox:${user?.id ?? ""}`;
}

function saveOutbox(): void {
  sessionStorage.setItem(outboxKey(), JSON.stringify(outbox));
}

function loadOutbox(): void {
  try {
    const saved = JSON.parse(sessionStorage.getItem(outboxKey()) ?? "[]");
    outbox = Array.isArray(saved) ? saved : [];
  } catch {
    outbox = [];
  }
}

function newRequestId(): string {
  return `r-${crypto.randomUUID()}`;
}

function enqueue(op: Op): void {
  op.clientId = tabClientId();
  outbox.push(op);
  saveOutbox();
  render();
  void sendOutbox();
}

/** The server id of a note, or undefined while this tab is still creating it. */
function serverId(target: number | string): number | undefined {
  return typeof target === "number" ? target : created.get(target);
}

/** Sends the outbox in order until it is empty or the server is away. */
async function sendOutbox(): Promise<void> {
  if (sending || !user) return;
  sending = true;
  clearTimeout(retryTimer);
  try {
    while (outbox.length > 0) {
      const op = outbox[0]!;
      try {
        if (!committed.has(op.requestId)) await send(op);
      } catch (error) {
        // Unless its answer was lost but a sync batch showed it committed.
        if (!committed.has(op.requestId)) {
          if (isTransient(error)) {
            // Try again when the connection opens, or in a while.
            retryTimer = setTimeout(() => void sendOutbox(), 2000);
            return;
          }
          if (error instanceof PodhostError && error.status === 401) {
            // The session ended: keep the outbox (it is in sessionStorage)
            // for when this user logs in again.
            sessionEnded();
            return;
          }
          rollBack(op, error as PodhostError);
        }
      }
      committed.delete(op.requestId);
      outbox = outbox.filter((queued) => queued.requestId !== op.requestId);
      saveOutbox();
      render();
    }
  } finally {
    sending = false;
    render();
  }
}

async function send(op: Op): Promise<void> {
  const headers = { "podhost-client-id": op.clientId ?? tabClientId(), "podhost-request-id": op.requestId };
  if (op.kind === "create") {
    const answer = await notesApi.json<{ note: Note }>("/notes", {
      method: "POST",
      body: { title: op.title, body: op.body },
      headers,
    });
    created.set(op.target as string, answer.note.id);
    confirm(answer.note);
    return;
  }
  const id = serverId(op.target);
  if (id === undefined) return; // its create was refused: nothing to do
  if (op.kind === "update") {
    const answer = await notesApi.json<{ note: Note }>(`/notes/${id}`, {
      method: "PUT",
      body: { title: op.title, body: op.body, version: op.version ?? notes.get(id)?.version ?? 1 },
      headers,
    });
    confirm(answer.note);
  } else {
    try {
      await notesApi.json(`/notes/${id}`, { method: "DELETE", headers });
    } catch (error) {
      // Deleted elsewhere first: what this tab wanted.
      if (!(error instanceof PodhostError && error.status === 404)) throw error;
    }
    forget(id);
  }
}

/** A write of ours went through: later edits of the note build on it. */
function confirm(note: Note): void {
  upsert(note);
  for (const op of outbox) {
    if (op.kind === "update" && serverId(op.target) === note.id) op.version = note.version;
  }
}

/** The server refused `op`: undo it locally and say why. */
function rollBack(op: Op, error: PodhostError): void {
  const id = serverId(op.target);
  if (error.status === 409 && id !== undefined) {
    const current = (error.body as { current?: Note } | undefined)?.current;
    if (current) upsert(current);
    showError(`“${current?.title ?? "A note"}” was changed elsewhere; your edit was undone. (${error.message})`);
  } else if (error.status === 404 && id !== undefined) {
    forget(id);
    showError("That note was deleted elsewhere.");
  } else {
    showError(`Not saved: ${error.message}`);
  }
  // Later edits of a note whose creation was refused cannot go anywhere.
  if (op.kind === "create") {
    outbox = outbox.filter((queued) => queued.target !== op.target);
  }
}

// ---- the server's state ---------------------------------------------------

function upsert(note: Note): void {
  if (deleted.has(note.id)) return;
  const known = notes.get(note.id);
  if (!known || note.version > known.version) {
    notes.set(note.id, note);
    upsertedAt.set(note.id, ++upserts);
  }
}

function forget(id: number): void {
  deleted.add(id);
  notes.delete(id);
}

async function refetch(): Promise<void> {
  const sent = upserts;
  const answer = await notesApi.json<{ notes: Note[] }>("/notes");
  const present = new Set(answer.notes.map((note) => note.id));
  for (const id of [...notes.keys()]) {
    // A note that came after the list left may be newer than the list.
    if (!present.has(id) && (upsertedAt.get(id) ?? 0) <= sent) forget(id);
  }
  for (const note of answer.notes) {
    // Deleted since the list was read (ids are never reused).
    if (deleted.has(note.id)) continue;
    const known = notes.get(note.id);
    if (!known || note.version >= known.version) notes.set(note.id, note);
  }
  render();
}

function onSync(message: unknown): Promise<void> | void {
  const sync = message as SyncMessage;
  if (sync.type === "resync") return refetch();
  if (sync.type !== "sync" || !("changes" in sync)) return;
  for (const change of sync.changes) {
    if (change.op === "upsert") upsert(change.note);
    else forget(change.id);
    // Our own write, confirmed by the batch (its answer may have been lost).
    if (change.client_id && change.request_id) {
      const op = outbox.find(
        (queued) => queued.requestId === change.request_id && (queued.clientId ?? tabClientId()) === change.client_id,
      );
      if (op) {
        committed.add(op.requestId);
        if (op.kind === "create" && change.op === "upsert") created.set(op.target as string, change.note.id);
        if (change.op === "upsert") confirm(change.note);
      }
    }
  }
  render();
}

/** Close code of a socket replaced by a newer one with the same client id. */
const REPLACED = 4000;
const CLIENT_ID_KEY = "podhost-notes-client-id";

/**
 * This tab's client id: the client's own (one per tab, kept across
 * reloads), unless it was replaced because a duplicated tab copied it.
 */
function tabClientId(): string {
  return sessionStorage.getItem(CLIENT_ID_KEY) ?? client.clientId;
}

function connect(): void {
  live?.close();
  live = client.live("/me/notes/ws", {
    clientId: tabClientId(),
    // A local server: come back quickly after a restart.
    reconnect: { initialMs: 100, maxMs: 1000 },
    onMessage: onSync,
    onState: (state, info) => {
      const indicator = $("connection");
      indicator.textContent = state;
      indicator.dataset.state = state;
      if (state === "closed" && info.code === REPLACED) {
        // Another tab has this id (a duplicated tab): take a new one.
        sessionStorage.setItem(CLIENT_ID_KEY, `tab-${crypto.randomUUID()}`);
        connect();
        return;
      }
      if (state === "open") {
        void refetch()
          .then(() => sendOutbox())
          .catch(() => undefined);
      }
    },
  });
}

// ---- the view -------------------------------------------------------------

interface Shown {
  key: number | string;
  title: string;
  body: string;
  pending: boolean;
  updated: number;
}

/** The server's notes with this tab's pending writes laid over them. */
function shownNotes(): Shown[] {
  const shown = new Map<number | string, Shown>();
  for (const note of notes.values()) {
    shown.set(note.id, { key: note.id, title: note.title, body: note.body, pending: false, updated: note.updated_at });
  }
  for (const op of outbox) {
    const id = serverId(op.target);
    const key = id ?? op.target;
    if (op.kind === "delete") {
      shown.delete(key);
    } else if (op.kind === "create" && id === undefined) {
      shown.set(key, { key, title: op.title ?? "", body: op.body ?? "", pending: true, updated: Date.now() });
    } else if (op.kind === "update" && shown.has(key)) {
      shown.set(key, { ...shown.get(key)!, title: op.title ?? "", body: op.body ?? "", pending: true });
    }
  }
  return [...shown.values()].sort((a, b) => b.updated - a.updated);
}

function render(): void {
  const list = $("notes");
  const template = $<HTMLTemplateElement>("note-template");
  const items: HTMLElement[] = [];
  for (const note of shownNotes()) {
    const item = (template.content.firstElementChild as HTMLElement).cloneNode(true) as HTMLElement;
    item.dataset.key = String(note.key);
    item.classList.toggle("pending", note.pending);
    item.querySelector(".title")!.textContent = note.title;
    item.querySelector(".body")!.textContent = note.body;
    const editor = item.querySelector<HTMLFormElement>(".editor")!;
    if (editing === note.key) {
      // Keep what is being typed across re-renders.
      const open = list.querySelector<HTMLElement>(`li[data-key="${CSS.escape(String(note.key))}"] .editor`);
      if (open && !open.hidden) {
        items.push(open.closest("li") as HTMLElement);
        continue;
      }
      editor.hidden = false;
      item.querySelector<HTMLElement>(".show")!.hidden = true;
      editor.querySelector<HTMLInputElement>(".edit-title")!.value = note.title;
      editor.querySelector<HTMLTextAreaElement>(".edit-body")!.value = note.body;
    }
    items.push(item);
  }
  list.replaceChildren(...items);
  const pending = $("pending");
  pending.hidden = outbox.length === 0;
  pending.textContent = `${outbox.length} change${outbox.length === 1 ? "" : "s"} waiting to be saved`;
}

/** The session ended under this tab (expired, or logged out elsewhere). */
function sessionEnded(): void {
  if (!user) return;
  const waiting = outbox.length;
  showSignedIn(null);
  showError(
    waiting > 0
      ? `Your session ended. Log in again to save ${waiting} waiting change${waiting === 1 ? "" : "s"}.`
      : "Your session ended. Log in again.",
  );
}

function showSignedIn(signedIn: User | null): void {
  user = signedIn;
  $("sign-in").hidden = signedIn !== null;
  $("account").hidden = signedIn === null;
  $("notes-view").hidden = signedIn === null;
  $("who").textContent = signedIn?.email ?? "";
  if (signedIn) {
    loadOutbox();
    render();
    connect();
  } else {
    live?.close();
    live = undefined;
    clearTimeout(retryTimer);
    // Note ids are per user: what this tab knew of the last user's notes
    // must not hide or confirm the next user's.
    notes.clear();
    deleted.clear();
    created.clear();
    committed.clear();
    upsertedAt.clear();
    editing = undefined;
    outbox = [];
    render();
  }
}

// ---- wiring ---------------------------------------------------------------

async function signIn(kind: "login" | "signup"): Promise<void> {
  clearError();
  const credentials = { email: $<HTMLInputElement>("email").value, password: $<HTMLInputElement>("password").value };
  try {
    const session = kind === "login" ? await client.auth.login(credentials) : await client.auth.signup(credentials);
    showSignedIn(session.user);
  } catch (error) {
    showError(error instanceof PodhostError ? error.message : `Cannot reach the server: ${String(error)}`);
  }
}

$("sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  void signIn("login");
});
$("signup").addEventListener("click", () => void signIn("signup"));
$("logout").addEventListener("click", () => {
  // Logging out on purpose drops what this tab had not saved.
  sessionStorage.removeItem(outboxKey());
  showSignedIn(null);
  void client.auth.logout();
});
client.auth.onChange((signedIn) => {
  if (signedIn === null) sessionEnded();
});
$("reconnect").addEventListener("click", () => live?.reconnect());

$("new-note").addEventListener("submit", (event) => {
  event.preventDefault();
  clearError();
  const title = $<HTMLInputElement>("new-title");
  const body = $<HTMLTextAreaElement>("new-body");
  enqueue({ requestId: newRequestId(), kind: "create", target: `new-${crypto.randomUUID()}`, title: title.value, body: body.value });
  title.value = "";
  body.value = "";
});

function keyOf(element: Element): number | string | undefined {
  const raw = element.closest<HTMLElement>("li.note")?.dataset.key;
  if (raw === undefined) return undefined;
  return /^\d+$/.test(raw) ? Number(raw) : raw;
}

$("notes").addEventListener("click", (event) => {
  const button = (event.target as Element).closest("button");
  const key = button ? keyOf(button) : undefined;
  if (!button || key === undefined) return;
  clearError();
  if (button.classList.contains("edit")) {
    editing = key;
    render();
  } else if (button.classList.contains("cancel")) {
    editing = undefined;
    render();
  } else if (button.classList.contains("delete")) {
    enqueue({ requestId: newRequestId(), kind: "delete", target: key });
  }
});

$("notes").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.target as HTMLFormElement;
  const key = keyOf(form);
  if (key === undefined) return;
  const title = form.querySelector<HTMLInputElement>(".edit-title")!.value;
  const body = form.querySelector<HTMLTextAreaElement>(".edit-body")!.value;
  const id = serverId(key);
  editing = undefined;
  enqueue({
    requestId: newRequestId(),
    kind: "update",
    target: key,
    title,
    body,
    version: id === undefined ? undefined : notes.get(id)?.version,
  });
});

client.auth.me().then(
  (me) => showSignedIn(me.user),
  (error) => {
    showSignedIn(null);
    if (!(error instanceof PodhostError && error.status === 401)) {
      showError(`Cannot reach the server: ${String(error)}`);
    }
  },
);
