//! Acknowledged delivery of batches to client ids.
//!
//! A batch is a row of `batches` (its `seq` and its changes as JSON text;
//! no changes = a `resync`). Each client id the object knows (`clients`)
//! has a row in `deliveries` per batch it has not acknowledged: how often
//! it was sent and when to send it again (`next_at`, `NULL` = held until
//! the client id connects). All of it is SQL, so it outlives
//! hibernation and restarts; the `resend` task on the object's alarm
//! (through `schedule`) drives the retries.

use std::time::Duration;

use podhost_sdk::sockets::{self, Socket};
use podhost_sdk::time::{duration_ms, from_ms, now_ms, to_ms};
use podhost_sdk::{Result, schedule, sql};

/// The tag of every notes socket: a new batch is published to it once.
pub const ALL: &str = "notes";
/// The task that resends unacknowledged batches.
pub const RESEND: &str = "resend";
/// How long a client has to acknowledge a batch before it is sent again.
const RESEND_AFTER: Duration = Duration::from_secs(2);
/// Sends of one batch to a connected client before the server gives up
/// (the first and 5 resends).
const MAX_SENDS: i64 = 6;
/// Batches that may wait for one client id; beyond it they become one
/// `resync`.
const MAX_PENDING: i64 = 64;
/// Client ids one object remembers; a new one beyond it forgets the one
/// seen least recently.
const MAX_CLIENTS: i64 = 2000;
/// A client id not seen (connected, acknowledging) for this long is
/// forgotten with its pending batches.
const FORGET_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// Client ids served per `resend` run, so one run stays short.
const RESEND_PAGE: i64 = 100;

/// The tag of the sockets of one client id.
pub fn client_tag(client_id: &str) -> String {
    format!("client:{client_id}")
}

/// Makes a batch of `changes` (a JSON array), sends it to every open
/// socket and keeps it pending for every known client id.
pub fn deliver(changes: &str) -> Result<()> {
    let now = now_ms();
    forget_stale(now)?;
    let seq =
        sql::exec("INSERT INTO batches (changes) VALUES (?)", (changes,))?.last_insert_rowid();
    let next = now + duration_ms(RESEND_AFTER);
    sql::execute(
        "INSERT INTO deliveries (client_id, seq, sends, next_at) SELECT client_id, ?, 1, ? FROM clients",
        (seq, next),
    )?;
    sockets::publish(ALL, message(seq, Some(changes)));
    resend_by(next)?;
    compact_overflowing()?;
    sql::execute(
        "DELETE FROM batches WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.seq = batches.seq)",
        (),
    )?;
    Ok(())
}

/// A client id connected on `socket`: other sockets of that id are
/// closed (4000), and everything pending for it is sent at once.
pub fn connect(client_id: &str, socket: Socket) -> Result<()> {
    let now = now_ms();
    forget_stale(now)?;
    for other in sockets::sockets(Some(&client_tag(client_id))) {
        if other.socket != socket {
            other.socket.close(4000, "replaced")?;
        }
    }
    let known = sql::execute(
        "UPDATE clients SET last_seen = ? WHERE client_id = ?",
        (now, client_id),
    )? > 0;
    if !known {
        make_room()?;
        sql::execute(
            "INSERT INTO clients (client_id, last_seen) VALUES (?, ?)",
            (client_id, now),
        )?;
        // It may have missed anything: a new tab fetches the list anyway,
        // a forgotten one must.
        hold_resync(client_id)?;
    }
    let pending: Vec<(i64, Option<String>)> = sql::query(
        "SELECT d.seq, b.changes FROM deliveries d JOIN batches b ON b.seq = d.seq
         WHERE d.client_id = ? ORDER BY d.seq",
        (client_id,),
    )?;
    if pending.is_empty() {
        return Ok(());
    }
    for (seq, changes) in &pending {
        socket.send(message(*seq, changes.as_deref()))?;
    }
    let next = now + duration_ms(RESEND_AFTER);
    sql::execute(
        "UPDATE deliveries SET sends = 1, next_at = ? WHERE client_id = ?",
        (next, client_id),
    )?;
    resend_by(next)
}

/// The client acknowledged batch `seq` and every one before it that it
/// was sent. A batch held for its next connection (`next_at` `NULL`: the
/// `resync` of a [`give_up`] while it stays connected) was not sent, so
/// an ack of a later batch does not drop it.
pub fn ack(client_id: &str, seq: i64) -> Result<()> {
    sql::execute(
        "DELETE FROM deliveries WHERE client_id = ? AND seq <= ? AND next_at IS NOT NULL",
        (client_id, seq),
    )?;
    seen(client_id)
}

/// The client id was just active (a socket closed, say).
pub fn seen(client_id: &str) -> Result<()> {
    sql::execute(
        "UPDATE clients SET last_seen = ? WHERE client_id = ?",
        (now_ms(), client_id),
    )?;
    Ok(())
}

/// The `resend` task: sends again what is due to connected client ids,
/// holds it for disconnected ones, and gives up on those that had all
/// their sends.
pub fn resend_due() -> Result<()> {
    let now = now_ms();
    let due: Vec<String> = sql::query(
        "SELECT DISTINCT client_id FROM deliveries WHERE next_at <= ? LIMIT ?",
        (now, RESEND_PAGE),
    )?;
    let next = now + duration_ms(RESEND_AFTER);
    for client_id in &due {
        let tag = client_tag(client_id);
        if sockets::count(Some(&tag)) == 0 {
            sql::execute(
                "UPDATE deliveries SET next_at = NULL WHERE client_id = ? AND next_at <= ?",
                (client_id, now),
            )?;
            continue;
        }
        let batches: Vec<(i64, i64, Option<String>)> = sql::query(
            "SELECT d.seq, d.sends, b.changes FROM deliveries d JOIN batches b ON b.seq = d.seq
             WHERE d.client_id = ? AND d.next_at <= ? ORDER BY d.seq",
            (client_id, now),
        )?;
        if batches.iter().any(|(_, sends, _)| *sends >= MAX_SENDS) {
            give_up(client_id)?;
            continue;
        }
        for (seq, _, changes) in &batches {
            sockets::publish(&tag, message(*seq, changes.as_deref()));
        }
        sql::execute(
            "UPDATE deliveries SET sends = sends + 1, next_at = ? WHERE client_id = ? AND next_at <= ?",
            (next, client_id, now),
        )?;
    }
    if i64::try_from(due.len()).unwrap_or(i64::MAX) >= RESEND_PAGE {
        // More are due: continue right after this run commits.
        return schedule::at(RESEND, from_ms(now), &()).map_err(Into::into);
    }
    let earliest: Option<Option<i64>> = sql::query_one("SELECT min(next_at) FROM deliveries", ())?;
    match earliest.flatten() {
        Some(at) => schedule::at(RESEND, from_ms(at), &())?,
        None => drop(schedule::cancel(RESEND)?),
    }
    Ok(())
}

/// The text of batch `seq`: a `sync` with its changes, or a `resync`.
fn message(seq: i64, changes: Option<&str>) -> String {
    match changes {
        Some(changes) => format!(r#"{{"type":"sync","seq":{seq},"changes":{changes}}}"#),
        None => format!(r#"{{"type":"resync","seq":{seq}}}"#),
    }
}

/// Keeps the `resend` task at `at` or earlier.
fn resend_by(at: i64) -> Result<()> {
    match schedule::when(RESEND)? {
        Some(when) if to_ms(when) <= at => Ok(()),
        _ => Ok(schedule::at(RESEND, from_ms(at), &())?),
    }
}

/// The client did not acknowledge through all its sends: what it missed
/// becomes one `resync`, held for its next connection.
fn give_up(client_id: &str) -> Result<()> {
    sql::execute("DELETE FROM deliveries WHERE client_id = ?", (client_id,))?;
    hold_resync(client_id)
}

/// Queues a `resync` for `client_id`, sent when it (re)connects.
fn hold_resync(client_id: &str) -> Result<()> {
    let seq = sql::exec("INSERT INTO batches (changes) VALUES (NULL)", ())?.last_insert_rowid();
    sql::execute(
        "INSERT INTO deliveries (client_id, seq, sends, next_at) VALUES (?, ?, 0, NULL)",
        (client_id, seq),
    )?;
    Ok(())
}

/// Client ids with more than [`MAX_PENDING`] batches waiting get one
/// `resync` instead, sent with the next resend.
fn compact_overflowing() -> Result<()> {
    let over: Vec<String> = sql::query(
        "SELECT client_id FROM deliveries GROUP BY client_id HAVING count(*) > ?",
        (MAX_PENDING,),
    )?;
    for client_id in &over {
        sql::execute("DELETE FROM deliveries WHERE client_id = ?", (client_id,))?;
        let seq = sql::exec("INSERT INTO batches (changes) VALUES (NULL)", ())?.last_insert_rowid();
        sql::execute(
            "INSERT INTO deliveries (client_id, seq, sends, next_at) VALUES (?, ?, 0, ?)",
            (client_id, seq, now_ms()),
        )?;
    }
    if !over.is_empty() {
        resend_by(now_ms())?;
    }
    Ok(())
}

/// Forgets client ids not seen for [`FORGET_AFTER`].
fn forget_stale(now: i64) -> Result<()> {
    let before = now - duration_ms(FORGET_AFTER);
    sql::execute(
        "DELETE FROM deliveries WHERE client_id IN (SELECT client_id FROM clients WHERE last_seen < ?)",
        (before,),
    )?;
    sql::execute("DELETE FROM clients WHERE last_seen < ?", (before,))?;
    Ok(())
}

/// Forgets the least recently seen client id when there are
/// [`MAX_CLIENTS`].
fn make_room() -> Result<()> {
    let count: i64 = sql::query_one("SELECT count(*) FROM clients", ())?.unwrap_or(0);
    if count < MAX_CLIENTS {
        return Ok(());
    }
    let oldest: Option<String> = sql::query_one(
        "SELECT client_id FROM clients ORDER BY last_seen LIMIT 1",
        (),
    )?;
    if let Some(client_id) = oldest {
        sql::execute(
            "DELETE FROM deliveries WHERE client_id = ?",
            (client_id.as_str(),),
        )?;
        sql::execute(
            "DELETE FROM clients WHERE client_id = ?",
            (client_id.as_str(),),
        )?;
    }
    Ok(())
}
