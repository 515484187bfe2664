//! Parent and children: a lobby (class `game`) creates matches (class
//! `match`, objects named `{lobby}-{n}`) and routes moves to them through
//! `objects.call`. One component serves both classes; it tells which it is
//! from its own address.
//!
//! Routes below `/objects/game/{lobby}`:
//!
//! - `POST /matches`: creates match `{lobby}-{n}` through a call; `201`
//!   with the match.
//! - `GET /matches?limit=&cursor=`: the lobby's matches, from the host's
//!   catalog (`objects.list`): listing wakes none of them.
//! - `GET /matches/{id}`: the match, asked of the child (`id` is `{n}` or
//!   `{lobby}-{n}`).
//! - `POST /matches/{id}/moves` with `{"player", "move"}` (or any JSON, the
//!   move): rate-limited per lobby by the `ratelimit` class (30 at once,
//!   then 5 a second; `429` with `Retry-After` when over), then routed to
//!   the child, whose answer comes back as is.
//! - `DELETE /`: deletes every match of the lobby, its rate-limit bucket,
//!   then the lobby itself (once this event commits).
//!
//! A match only takes writes from a `game` object: a client cannot skip the
//! lobby's rate limit by calling `/objects/match/...` directly.

use podhost_sdk::caller::Caller;
use podhost_sdk::objects::{self, CallError};
use podhost_sdk::{
    Error, Method, Object, Request, Response, Result, StatusCode, context, kv, time,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Most moves one match keeps; then it is over.
const MAX_MOVES: usize = 500;
/// Most names one `GET /matches` returns.
const PAGE: u32 = 100;
/// Moves a lobby takes at once, and then per second (all its matches).
const MOVES_BURST: u32 = 30;
const MOVES_PER_SECOND: u32 = 5;

enum Game {
    Lobby(String),
    Match(String),
}

impl Object for Game {
    fn activate() -> Result<Self> {
        let me = context::this_object();
        Ok(if me.class == "game" {
            Game::Lobby(me.name)
        } else {
            Game::Match(me.name)
        })
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        match self {
            Game::Lobby(lobby) => lobby_fetch(&lobby.clone(), &req),
            Game::Match(name) => match_fetch(&name.clone(), &req),
        }
    }
}

// The lobby.

fn lobby_fetch(lobby: &str, req: &Request) -> Result<Response> {
    match (req.method().clone(), req.segments().as_slice()) {
        (Method::GET, []) => Ok(Response::json(&json!({
            "lobby": lobby,
            "matches_created": next_number()? - 1,
        }))),
        (Method::DELETE, []) => delete_lobby(lobby),
        (Method::POST, ["matches"]) => create_match(lobby),
        (Method::GET, ["matches"]) => list_matches(lobby, req),
        (Method::GET, ["matches", id]) => {
            let child = child(lobby, id)?;
            Ok(child
                .call(Method::GET, "/", Vec::new())
                .map_err(CallError::into_error)?)
        }
        (Method::POST, ["matches", id, "moves"]) => {
            let child = child(lobby, id)?;
            if let Some(limited) = rate_limit(lobby)? {
                return Ok(limited);
            }
            let body = req.body().to_vec();
            Ok(child
                .call(Method::POST, "/moves", body)
                .map_err(CallError::into_error)?)
        }
        _ => Err(Error::not_found("no such route")),
    }
}

/// The number the next match gets.
fn next_number() -> Result<u64> {
    Ok(kv::get::<u64>("next")?.unwrap_or(1))
}

/// Creates the next match. The counter moves in this event's transaction
/// and the match commits in its own, first: a lobby that failed after the
/// call finds that match taken (409) next time and moves on.
fn create_match(lobby: &str) -> Result<Response> {
    let mut number = next_number()?;
    for _ in 0..8 {
        let name = format!("{lobby}-{number}");
        let created = objects::get("match", &name).call_json::<_, serde_json::Value>(
            Method::POST,
            "/create",
            &json!({ "lobby": lobby, "number": number }),
        );
        number += 1;
        match created {
            Ok(state) => {
                kv::put("next", &number)?;
                return Ok(Response::json(&state).with_status(StatusCode::CREATED));
            }
            Err(error) if error.status() == StatusCode::CONFLICT => continue,
            Err(error) => return Err(error),
        }
    }
    Err(Error::internal("cannot find a free match number"))
}

fn list_matches(lobby: &str, req: &Request) -> Result<Response> {
    let limit = match req.query_param("limit") {
        Some(limit) => limit
            .parse::<u32>()
            .map_err(|_| Error::bad_request("limit must be a number"))?
            .clamp(1, PAGE),
        None => PAGE,
    };
    let cursor = req.query_param("cursor");
    let prefix = format!("{lobby}-");
    let page =
        objects::list("match", &prefix, limit, cursor.as_deref()).map_err(CallError::into_error)?;
    // `a-` is also the prefix of lobby `a-b`'s matches: keep `{lobby}-{n}`.
    let matches: Vec<&String> = page
        .names
        .iter()
        .filter(|name| is_match_of(name, &prefix))
        .collect();
    Ok(Response::json(
        &json!({ "matches": matches, "cursor": page.cursor }),
    ))
}

/// The child `id` names, if this lobby created it.
fn child(lobby: &str, id: &str) -> Result<objects::Stub> {
    let number = match id.strip_prefix(lobby).and_then(|n| n.strip_prefix('-')) {
        Some(n) => n,
        None => id,
    };
    let created = is_number(number)
        && number
            .parse::<u64>()
            .is_ok_and(|n| n >= 1 && n < next_number().unwrap_or(1));
    if !created {
        return Err(Error::not_found(format!("no match {id:?} in this lobby")));
    }
    Ok(objects::get("match", &format!("{lobby}-{number}")))
}

/// Takes a token from the lobby's bucket (sized on the lobby's first
/// move: `MOVES_BURST`, refilling `MOVES_PER_SECOND`); the 429 to answer if
/// none is left.
fn rate_limit(lobby: &str) -> Result<Option<Response>> {
    let bucket = objects::get("ratelimit", &format!("game:{lobby}"));
    if kv::get::<bool>("bucket_sized")?.is_none() {
        bucket.call_json::<_, serde_json::Value>(
            Method::PUT,
            "/",
            &json!({ "capacity": MOVES_BURST, "refill_per_second": MOVES_PER_SECOND }),
        )?;
        kv::put("bucket_sized", &true)?;
    }
    let answer = bucket
        .call(Method::POST, "/take?cost=1", Vec::new())
        .map_err(CallError::into_error)?;
    if answer.status() == StatusCode::TOO_MANY_REQUESTS {
        let mut limited = Response::json(&json!({ "error": "too many moves in this lobby" }))
            .with_status(StatusCode::TOO_MANY_REQUESTS);
        if let Some(retry) = answer.headers().get("retry-after") {
            limited = limited.with_header(http_retry_after(), retry.clone());
        }
        return Ok(Some(limited));
    }
    if !answer.status().is_success() {
        return Err(Error::new(answer.status(), "the rate limiter failed"));
    }
    Ok(None)
}

fn http_retry_after() -> podhost_sdk::HeaderName {
    podhost_sdk::HeaderName::from_static("retry-after")
}

/// Deletes every match (page by page, from the catalog), the lobby's
/// bucket, then the lobby itself once this event commits.
fn delete_lobby(lobby: &str) -> Result<Response> {
    let prefix = format!("{lobby}-");
    let mut deleted = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = objects::list("match", &prefix, 1000, cursor.as_deref())
            .map_err(CallError::into_error)?;
        for name in &page.names {
            if is_match_of(name, &prefix) {
                objects::delete("match", name).map_err(CallError::into_error)?;
                deleted.push(name.clone());
            }
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    objects::delete("ratelimit", &format!("game:{lobby}")).map_err(CallError::into_error)?;
    objects::delete("game", lobby).map_err(CallError::into_error)?;
    Ok(Response::json(
        &json!({ "deleted": lobby, "matches": deleted }),
    ))
}

/// Whether `name` is `{prefix}{n}`.
fn is_match_of(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(is_number)
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit())
}

// A match.

#[derive(Serialize, Deserialize)]
struct Match {
    id: String,
    lobby: String,
    number: u64,
    created_ms: i64,
    moves: Vec<Move>,
}

#[derive(Serialize, Deserialize)]
struct Move {
    player: String,
    #[serde(rename = "move")]
    play: serde_json::Value,
    at_ms: i64,
}

#[derive(Deserialize)]
struct Create {
    lobby: String,
    number: u64,
}

fn match_fetch(name: &str, req: &Request) -> Result<Response> {
    let from_lobby = matches!(req.caller(), Some(Caller::Object(o)) if o.class == "game");
    let state = kv::get::<Match>("match")?;
    match (req.method().clone(), req.segments().as_slice()) {
        (Method::GET, []) => match state {
            Some(state) => Ok(Response::json(&state)),
            None => Err(Error::not_found("no such match")),
        },
        _ if !from_lobby => Err(Error::new(
            StatusCode::FORBIDDEN,
            "matches take writes from their lobby only",
        )),
        (Method::POST, ["create"]) => {
            if state.is_some() {
                return Err(Error::conflict("the match exists"));
            }
            let create: Create = req.json()?;
            let state = Match {
                id: name.to_string(),
                lobby: create.lobby,
                number: create.number,
                created_ms: time::now_ms(),
                moves: Vec::new(),
            };
            kv::put("match", &state)?;
            Ok(Response::json(&state).with_status(StatusCode::CREATED))
        }
        (Method::POST, ["moves"]) => {
            let Some(mut state) = state else {
                return Err(Error::not_found("no such match"));
            };
            if state.moves.len() >= MAX_MOVES {
                return Err(Error::conflict("the match is over: it has all its moves"));
            }
            // `{"player", "move"}`; any other JSON (or none) is the move.
            let body: serde_json::Value = if req.body().is_empty() {
                serde_json::Value::Null
            } else {
                req.json()?
            };
            let player = body["player"].as_str().unwrap_or_default().to_string();
            if player.len() > 64 {
                return Err(Error::bad_request("player must be at most 64 bytes"));
            }
            let play = match body.get("move") {
                Some(play) => play.clone(),
                None => body,
            };
            state.moves.push(Move {
                player,
                play,
                at_ms: time::now_ms(),
            });
            kv::put("match", &state)?;
            Ok(Response::json(&json!({
                "id": state.id,
                "moves": state.moves.len(),
                "last": state.moves.last(),
            })))
        }
        _ => Err(Error::not_found("no such route")),
    }
}

podhost_sdk::export!(Game);
