//! Short links: a slug that redirects to a URL, counting who followed it.
//!
//! Every click is counted; the object keeps the last [`CLICKS_KEPT`] clicks
//! of a link in full (time, referrer, user agent, client address) and a
//! count per referrer for [`REFERRERS_KEPT`] referrers (later ones count
//! as `"(other)"`), so a popular link cannot fill the database.

use podhost_sdk::{Error, HeaderValue, Request, Response, Result, StatusCode, sql, time};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS links (
    slug TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    title TEXT,
    expires_at INTEGER,
    clicks INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS link_clicks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL,
    at INTEGER NOT NULL,
    referrer TEXT,
    user_agent TEXT,
    client_address TEXT
);
CREATE INDEX IF NOT EXISTS link_clicks_by_slug ON link_clicks (slug, id);
CREATE TABLE IF NOT EXISTS link_referrers (
    slug TEXT NOT NULL,
    referrer TEXT NOT NULL,
    clicks INTEGER NOT NULL,
    PRIMARY KEY (slug, referrer)
);";

const MAX_URL_BYTES: usize = 4096;
const MAX_TITLE_BYTES: usize = 1024;
const MAX_HEADER_BYTES: usize = 1024;
const CLICKS_KEPT: i64 = 1000;
const REFERRERS_KEPT: i64 = 100;
const RECENT: i64 = 20;
const NO_REFERRER: &str = "(none)";
const OTHER_REFERRER: &str = "(other)";

/// The body of `POST /links`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLink {
    slug: String,
    url: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    expires_at: Option<Value>,
}

#[derive(Serialize, Deserialize)]
struct Link {
    slug: String,
    url: String,
    title: Option<String>,
    expires_at: Option<i64>,
    clicks: i64,
    created_at: i64,
}

#[derive(Serialize, Deserialize)]
struct Click {
    at: i64,
    referrer: Option<String>,
    user_agent: Option<String>,
    client_address: Option<String>,
}

fn ensure() -> Result<()> {
    sql::script(SCHEMA)?;
    Ok(())
}

fn find(slug: &str) -> Result<Option<Link>> {
    ensure()?;
    Ok(sql::query_as(
        "SELECT slug, url, title, expires_at, clicks, created_at FROM links WHERE slug = ?",
        (slug,),
    )?
    .pop())
}

pub fn create(new: NewLink) -> Result<Response> {
    check_slug(&new.slug)?;
    check_url(&new.url)?;
    if new
        .title
        .as_ref()
        .is_some_and(|t| t.len() > MAX_TITLE_BYTES)
    {
        return Err(Error::bad_request(format!(
            "`title` has at most {MAX_TITLE_BYTES} bytes"
        )));
    }
    let expires_at = match &new.expires_at {
        None | Some(Value::Null) => None,
        Some(value) => Some(expiry(value)?),
    };
    if find(&new.slug)?.is_some() {
        return Err(
            Error::conflict(format!("the slug {:?} is taken", new.slug)).with_code("slug_taken")
        );
    }
    let link = Link {
        slug: new.slug,
        url: new.url,
        title: new.title,
        expires_at,
        clicks: 0,
        created_at: time::now_ms(),
    };
    sql::execute(
        "INSERT INTO links (slug, url, title, expires_at, clicks, created_at) VALUES (?, ?, ?, ?, 0, ?)",
        (
            &link.slug,
            &link.url,
            link.title.as_deref(),
            link.expires_at,
            link.created_at,
        ),
    )?;
    Ok(Response::json(&json!({ "link": link })).with_status(StatusCode::CREATED))
}

/// `GET /links/{slug}`: a 302 to the URL, counting the click; 410 once
/// the link has expired.
pub fn follow(slug: &str, req: &Request) -> Result<Response> {
    let link = find(slug)?.ok_or_else(|| Error::not_found("no such link"))?;
    let now = time::now_ms();
    if link.expires_at.is_some_and(|at| at <= now) {
        return Err(Error::new(StatusCode::GONE, "the link has expired").with_code("link_expired"));
    }
    let header = |name: &str| {
        req.header(name)
            .filter(|v| !v.is_empty())
            .map(|v| truncated(v, MAX_HEADER_BYTES))
    };
    let referrer = header("referer");
    sql::execute(
        "UPDATE links SET clicks = clicks + 1 WHERE slug = ?",
        (slug,),
    )?;
    sql::execute(
        "INSERT INTO link_clicks (slug, at, referrer, user_agent, client_address) VALUES (?, ?, ?, ?, ?)",
        (
            slug,
            now,
            referrer.clone(),
            header("user-agent"),
            req.client_address().map(|a| a.to_string()),
        ),
    )?;
    sql::execute(
        "DELETE FROM link_clicks WHERE slug = ? AND id <= (SELECT max(id) FROM link_clicks WHERE slug = ?) - ?",
        (slug, slug, CLICKS_KEPT),
    )?;
    count_referrer(slug, referrer.as_deref().unwrap_or(NO_REFERRER))?;
    let location = HeaderValue::from_str(&link.url)
        .map_err(|_| Error::internal("the link's URL is not a valid header value"))?;
    Ok(Response::new(StatusCode::FOUND)
        .with_header(podhost_sdk::HeaderName::from_static("location"), location))
}

fn count_referrer(slug: &str, referrer: &str) -> Result<()> {
    let known: i64 = sql::query_one(
        "SELECT count(*) FROM link_referrers WHERE slug = ? AND referrer = ?",
        (slug, referrer),
    )?
    .unwrap_or(0);
    let referrer = if known == 0 {
        let distinct: i64 = sql::query_one(
            "SELECT count(*) FROM link_referrers WHERE slug = ?",
            (slug,),
        )?
        .unwrap_or(0);
        if distinct >= REFERRERS_KEPT {
            OTHER_REFERRER
        } else {
            referrer
        }
    } else {
        referrer
    };
    sql::execute(
        "INSERT INTO link_referrers (slug, referrer, clicks) VALUES (?, ?, 1)
         ON CONFLICT (slug, referrer) DO UPDATE SET clicks = clicks + 1",
        (slug, referrer),
    )?;
    Ok(())
}

/// `GET /links/{slug}/stats`: the click count, clicks by referrer (most
/// first) and the most recent clicks.
pub fn stats(slug: &str) -> Result<Response> {
    let link = find(slug)?.ok_or_else(|| Error::not_found("no such link"))?;
    let referrers: Vec<(String, i64)> = sql::query(
        "SELECT referrer, clicks FROM link_referrers WHERE slug = ? ORDER BY clicks DESC, referrer",
        (slug,),
    )?;
    let by_referrer: Vec<Value> = referrers
        .into_iter()
        .map(|(referrer, clicks)| json!({ "referrer": referrer, "clicks": clicks }))
        .collect();
    let recent: Vec<Click> = sql::query_as(
        "SELECT at, referrer, user_agent, client_address FROM link_clicks WHERE slug = ?
         ORDER BY id DESC LIMIT ?",
        (slug, RECENT),
    )?;
    Ok(Response::json(&json!({
        "slug": link.slug,
        "url": link.url,
        "clicks": link.clicks,
        "by_referrer": by_referrer,
        "recent": recent,
    })))
}

pub fn list() -> Result<Response> {
    ensure()?;
    let links: Vec<Link> = sql::query_as(
        "SELECT slug, url, title, expires_at, clicks, created_at FROM links ORDER BY created_at DESC, slug",
        (),
    )?;
    Ok(Response::json(&json!({ "links": links })))
}

pub fn delete(slug: &str) -> Result<Response> {
    ensure()?;
    if sql::execute("DELETE FROM links WHERE slug = ?", (slug,))? == 0 {
        return Err(Error::not_found("no such link"));
    }
    sql::execute("DELETE FROM link_clicks WHERE slug = ?", (slug,))?;
    sql::execute("DELETE FROM link_referrers WHERE slug = ?", (slug,))?;
    Ok(Response::json(&json!({ "deleted": true, "slug": slug })))
}

fn check_slug(slug: &str) -> Result<()> {
    let ok = (1..=64).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(
            "`slug` must be 1 to 64 letters, digits, `-` or `_`",
        ))
    }
}

/// An absolute `http` or `https` URL with a host, printable ASCII only (it
/// goes into a `Location` header as it is).
fn check_url(url: &str) -> Result<()> {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    let has_host = rest.is_some_and(|rest| {
        rest.split(['/', '?', '#'])
            .next()
            .is_some_and(|host| !host.is_empty())
    });
    if !has_host {
        return Err(Error::bad_request(
            "`url` must be an absolute http:// or https:// URL",
        ));
    }
    if url.len() > MAX_URL_BYTES || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::bad_request(format!(
            "`url` must be at most {MAX_URL_BYTES} bytes of printable ASCII (percent-encode the rest)"
        )));
    }
    Ok(())
}

/// `expires_at`: milliseconds since the epoch (a number below 10^11 is
/// taken as seconds), or an RFC 3339 time (`2030-01-01T00:00:00Z`).
fn expiry(value: &Value) -> Result<i64> {
    let bad = || {
        Error::bad_request("`expires_at` must be milliseconds since the epoch or an RFC 3339 time")
    };
    match value {
        Value::Number(n) => {
            let n = n.as_i64().ok_or_else(bad)?;
            Ok(if n.abs() < 100_000_000_000 {
                n.saturating_mul(1000)
            } else {
                n
            })
        }
        Value::String(text) => rfc3339_ms(text).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]` as milliseconds since the epoch.
fn rfc3339_ms(text: &str) -> Option<i64> {
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let bytes = text.as_bytes();
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (hours * 60 + minutes)
        }
        _ => return None,
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

fn truncated(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}
