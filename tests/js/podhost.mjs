// Starting and stopping a real podhost for tests written in JavaScript
// (the client library's, the browser tests). The cargo test
// `node_tests` runs them with:
//   PODHOST_BIN          the podhost binary under test;
//   PODHOST_GUEST_<NAME> each guest component, e.g. PODHOST_GUEST_BLOG.
// A server writes its log to `<dir>/server.log`; its data stays in `dir`
// across `restart()`.

import { spawn } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

export const ADMIN_TOKEN = "test-admin-token-that-is-long-enough-0123456789";

/** The component of guest `name` (`blog`, `notes`, ...). */
export function guest(name) {
  const path = process.env[`PODHOST_GUEST_${name.toUpperCase()}`];
  if (!path) {
    throw new Error(`PODHOST_GUEST_${name.toUpperCase()} is not set: run these tests through \`cargo test\``);
  }
  return path;
}

function binary() {
  const bin = process.env.PODHOST_BIN;
  if (!bin) throw new Error("PODHOST_BIN is not set: run these tests through `cargo test`");
  return bin;
}

/**
 * The config file for `options`:
 *   classes: { name: { path, access?, ...more keys as TOML values } }
 *   config:  more TOML appended as is (sections such as `[assets]`)
 *   adminToken: the operator's token (default ADMIN_TOKEN; null for none)
 */
function configFile(options, listen) {
  const lines = [`listen = ${JSON.stringify(listen)}`, `data_dir = "data"`];
  const token = options.adminToken === undefined ? ADMIN_TOKEN : options.adminToken;
  if (token) lines.push(`admin_token = ${JSON.stringify(token)}`);
  if (options.topLevel) lines.push(options.topLevel);
  if (options.config) lines.push(options.config);
  for (const [name, table] of Object.entries(options.classes ?? {})) {
    lines.push(`[classes.${name}]`);
    for (const [key, value] of Object.entries(table)) {
      lines.push(`${key} = ${JSON.stringify(value)}`);
    }
  }
  return lines.join("\n") + "\n";
}

export class Podhost {
  constructor(options, dir) {
    this.options = options;
    this.dir = dir;
    this.child = null;
    this.url = null;
  }

  /** Starts a server on a fresh data directory. */
  static async start(options = {}) {
    const dir = mkdtempSync(join(tmpdir(), "podhost-js-"));
    const server = new Podhost(options, dir);
    await server.#spawn("127.0.0.1:0");
    return server;
  }

  async #spawn(listen) {
    const configPath = join(this.dir, "podhost.toml");
    writeFileSync(configPath, configFile(this.options, listen));
    const log = join(this.dir, "server.log");
    const child = spawn(binary(), ["serve", "--config", configPath], {
      cwd: this.dir,
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "info" },
      stdio: ["ignore", "pipe", openSync(log, "a")],
    });
    this.child = child;
    const lines = createInterface({ input: child.stdout });
    const url = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`podhost did not start:\n${this.log()}`)), 60_000);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`podhost exited with ${code}:\n${this.log()}`));
      });
      lines.once("line", (line) => {
        clearTimeout(timer);
        const prefix = "podhost listening on ";
        if (line.startsWith(prefix)) resolve(line.slice(prefix.length).trim());
        else reject(new Error(`unexpected first line ${JSON.stringify(line)}:\n${this.log()}`));
      });
    });
    child.removeAllListeners("exit");
    this.url = url;
  }

  /** The server's log so far. */
  log() {
    try {
      return readFileSync(join(this.dir, "server.log"), "utf8");
    } catch {
      return "";
    }
  }

  /** The operator's headers. */
  adminHeaders() {
    return { authorization: `Bearer ${this.options.adminToken ?? ADMIN_TOKEN}` };
  }

  /** Stops the server as an operator would (SIGTERM) and waits for it. */
  async stop() {
    await this.#signal("SIGTERM");
  }

  /** Kills the server (SIGKILL) and waits for it. */
  async kill() {
    await this.#signal("SIGKILL");
  }

  async #signal(signal) {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    await exited;
    clearTimeout(timer);
    this.child = null;
  }

  /** Stops the server and starts it again on the same data and address. */
  async restart({ downFor = 0 } = {}) {
    const address = new URL(this.url).host;
    await this.stop();
    if (downFor > 0) await new Promise((resolve) => setTimeout(resolve, downFor));
    await this.#spawn(address);
  }

  /** Stops the server and removes its directory. */
  async close() {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
