// podhost's admin page: reads the /admin JSON API with the token typed in
// once (kept in sessionStorage). Class names, object names, rows and log
// lines are tenants' data: every one is put in the page with textContent
// (through `el`), never parsed as HTML.
"use strict";

const TOKEN_KEY = "podhost.adminToken";
const LOG_POLL_MS = 1500;
/** Log lines kept on the page; older ones are dropped as new ones come. */
const MAX_LOG_LINES = 2000;
const MAX_OBJECT_ROWS = 500;

const $ = (id) => document.getElementById(id);

/** An element with text children only: strings become text nodes. */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A call to the admin API; a podhost error becomes an ApiFailure. */
async function api(path, options = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(options.headers ?? {}) };
  const response = await fetch(path, { ...options, headers });
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: reported below with the status.
  }
  if (!response.ok) {
    const error = body?.error ?? {};
    const failure = new ApiFailure(response.status, error.code ?? "http_error", error.message ?? `HTTP ${response.status}`);
    if (response.status === 401) signOut(errorText(failure));
    throw failure;
  }
  return body;
}

const objectPath = (object) =>
  `/admin/objects/${encodeURIComponent(object.class)}/${encodeURIComponent(object.name)}`;

const when = (millis) => (millis == null ? "—" : new Date(millis).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC"));

function bytes(count) {
  if (count == null) return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** A cell's text: SQL NULL shown apart from the string "NULL". */
function cell(value) {
  if (value === null || value === undefined) return el("td", { class: "null" }, "NULL");
  if (typeof value === "object") return el("td", {}, JSON.stringify(value));
  return el("td", {}, String(value));
}

function errorText(error) {
  return error instanceof ApiFailure ? `${error.code}: ${error.message}` : String(error);
}

// ---- signing in -----------------------------------------------------------

function signOut(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  current = null;
  $("main").hidden = true;
  $("forget").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
}

async function signIn() {
  try {
    await loadClasses();
  } catch (error) {
    if (!(error instanceof ApiFailure && error.status === 401)) {
      signOut(errorText(error));
    }
    return;
  }
  $("login").hidden = true;
  $("login-error").textContent = "";
  $("main").hidden = false;
  $("forget").hidden = false;
  await loadObjects();
}

// ---- classes --------------------------------------------------------------

async function loadClasses() {
  const { classes } = await api("/admin/classes");
  const rows = classes.map((entry) =>
    el(
      "tr",
      { class: "pick", onclick: () => showClass(entry.name) },
      el("td", {}, entry.name),
      el("td", {}, entry.active_version ?? "—"),
      el("td", {}, entry.versions?.length ?? 0),
      el("td", {}, JSON.stringify(entry.config ?? {})),
    ),
  );
  $("classes").tBodies[0].replaceChildren(...rows);
}

async function showClass(name) {
  const panel = $("versions");
  try {
    const entry = await api(`/admin/classes/${encodeURIComponent(name)}`);
    $("versions-title").textContent = `Versions of ${entry.name}`;
    const rows = (entry.versions ?? []).map((version) =>
      el(
        "tr",
        {},
        el("td", {}, version.version),
        el("td", {}, version.active ? "active" : ""),
        el("td", {}, when(version.deployed_at)),
        el("td", {}, version.deployed_by ?? ""),
        el("td", {}, bytes(version.size_bytes)),
        el("td", {}, el("code", {}, String(version.hash ?? "").slice(0, 16))),
      ),
    );
    panel.querySelector("tbody").replaceChildren(...rows);
    panel.hidden = false;
  } catch (error) {
    $("versions-title").textContent = errorText(error);
    panel.querySelector("tbody").replaceChildren();
    panel.hidden = false;
  }
  $("search").value = `${name}/`;
  renderObjects();
}

// ---- objects --------------------------------------------------------------

let objects = [];

async function loadObjects() {
  try {
    ({ objects } = await api("/admin/objects"));
  } catch (error) {
    objects = [];
    $("objects-count").textContent = errorText(error);
    return;
  }
  renderObjects();
}

/** The objects whose `class/name` holds the search text. */
function renderObjects() {
  const needle = $("search").value.trim().toLowerCase();
  const found = objects.filter((object) => `${object.class}/${object.name}`.toLowerCase().includes(needle));
  const shown = found.slice(0, MAX_OBJECT_ROWS);
  const count = `${found.length} object${found.length === 1 ? "" : "s"}`;
  $("objects-count").textContent = found.length > shown.length ? `${count}, the first ${shown.length} shown` : count;
  const rows = shown.map((object) =>
    el(
      "tr",
      { class: "pick", onclick: () => openObject(object) },
      el("td", {}, object.class),
      el("td", {}, object.name),
      el("td", {}, when(object.created_at)),
      el("td", {}, when(object.last_active_at)),
    ),
  );
  $("objects").tBodies[0].replaceChildren(...rows);
}

// ---- one object -----------------------------------------------------------

/** The object on show; `generation` tells a stale log poll to stop. */
let current = null;
let generation = 0;

async function openObject(object) {
  generation += 1;
  current = { class: object.class, name: object.name, generation, lastSeq: 0 };
  $("object").hidden = false;
  $("object-title").textContent = `${object.class} / ${object.name}`;
  $("object-error").textContent = "";
  $("query-error").textContent = "";
  $("query-note").textContent = "";
  $("query-result").replaceChildren();
  $("logs").replaceChildren();
  await inspect();
  followLogs(current);
}

async function inspect() {
  const object = current;
  let facts;
  try {
    facts = await api(objectPath(object));
  } catch (error) {
    $("object-error").textContent = errorText(error);
    $("object-facts").replaceChildren();
    $("tables").tBodies[0].replaceChildren();
    return;
  }
  if (object !== current) return;
  const sockets = facts.sockets ?? { count: 0, tags: {} };
  const tags = Object.entries(sockets.tags ?? {}).map(([tag, count]) => `${tag} (${count})`);
  const range = facts.event_log ? `${facts.event_log.first} – ${facts.event_log.last}` : "empty";
  const pairs = [
    ["State", facts.state],
    ["Id", facts.id],
    ["Class version", String(facts.class_hash ?? "").slice(0, 16)],
    ["Created", when(facts.created_at)],
    ["Last active", when(facts.last_active_at)],
    ["Size", bytes(facts.size_bytes)],
    ["Migrations run", facts.migrations],
    ["Alarm", alarmText(facts.alarm)],
    ["Sockets", tags.length ? `${sockets.count}: ${tags.join(", ")}` : String(sockets.count)],
    ["Event log", range],
  ];
  $("object-facts").replaceChildren(...pairs.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]));
  const tables = [...(facts.tables ?? []), ...(facts.internal_tables ?? [])];
  const rows = tables.map((table) =>
    el(
      "tr",
      {},
      el("td", {}, table.name),
      el("td", {}, table.rows ?? "—"),
      el("td", {}, el("button", { type: "button", onclick: () => browse(table.name) }, "Rows")),
    ),
  );
  $("tables").tBodies[0].replaceChildren(...rows);
}

function alarmText(alarm) {
  if (alarm == null) return "none";
  return typeof alarm === "number" ? when(alarm) : JSON.stringify(alarm);
}

/** Shows a table's first rows through the query route. */
function browse(table) {
  $("sql").value = `SELECT * FROM "${table.replaceAll('"', '""')}" LIMIT 100`;
  return runQuery();
}

async function runQuery() {
  const object = current;
  const sql = $("sql").value;
  $("query-error").textContent = "";
  $("query-note").textContent = "running…";
  let result;
  try {
    result = await api(`${objectPath(object)}/query`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sql, params: [] }),
    });
  } catch (error) {
    if (object !== current) return;
    $("query-note").textContent = "";
    $("query-error").textContent = errorText(error);
    $("query-result").replaceChildren();
    return;
  }
  if (object !== current) return;
  const rows = result.rows ?? [];
  $("query-note").textContent = `${rows.length} rows${result.truncated ? " (truncated)" : ""}`;
  const table = el(
    "table",
    { id: "query-table" },
    el("thead", {}, el("tr", {}, ...(result.columns ?? []).map((column) => el("th", {}, column)))),
    el("tbody", {}, ...rows.map((row) => el("tr", {}, ...row.map(cell)))),
  );
  $("query-result").replaceChildren(table);
}

/** Reads the object's log, then its new records every LOG_POLL_MS while
 *  "Follow" is checked and the object is still the one on show. */
async function followLogs(object) {
  while (object === current && object.generation === generation) {
    try {
      const { records } = await api(`${objectPath(object)}/logs?after=${object.lastSeq}`);
      if (object !== current) return;
      for (const record of records) {
        object.lastSeq = Math.max(object.lastSeq, record.seq);
        const line = el("li", {}, `${when(record.time)}  ${record.level}  ${record.source}  ${record.message}`);
        if (record.level === "warn" || record.level === "error") line.classList.add(record.level);
        $("logs").append(line);
      }
      // A chatty object must not grow the page without end.
      const logs = $("logs");
      while (logs.childElementCount > MAX_LOG_LINES) logs.firstElementChild.remove();
    } catch (error) {
      if (object !== current) return;
      $("logs").append(el("li", { class: "error" }, errorText(error)));
      // An answer (signed out, object deleted) ends following; no answer
      // (the server restarting) is tried again at the next poll.
      if (error instanceof ApiFailure) return;
    }
    do {
      await new Promise((resolve) => setTimeout(resolve, LOG_POLL_MS));
    } while (object === current && !$("follow").checked);
  }
}

// ---- wiring ---------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    signIn();
  });
  $("forget").addEventListener("click", () => signOut());
  $("search").addEventListener("input", renderObjects);
  $("reload-objects").addEventListener("click", loadObjects);
  $("refresh-object").addEventListener("click", () => current && inspect());
  $("query-form").addEventListener("submit", (event) => {
    event.preventDefault();
    runQuery();
  });
  if (sessionStorage.getItem(TOKEN_KEY)) signIn();
});
