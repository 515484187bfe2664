//! `stats/global`: totals across inboxes. Inboxes and the registry report
//! through `objects.call` (`POST /signup`, `POST /delivered {"bytes"}`);
//! each report is one event of this one object, so the counts stay exact
//! however many inboxes report at once. `GET /` answers them to the
//! operator (`GET /objects/stats/global` with the admin token).

use podhost_sdk::caller::Caller;
use podhost_sdk::{Error, Method, Request, Response, Result, context, kv};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const TOTALS: &str = "totals";

#[derive(Default, Serialize, Deserialize)]
struct Totals {
    inboxes: u64,
    messages: u64,
    bytes: u64,
}

pub fn fetch(req: Request) -> Result<Response> {
    if context::this_object().name != "global" {
        return Err(Error::not_found("the totals are at /objects/stats/global"));
    }
    let mut totals: Totals = kv::get(TOTALS)?.unwrap_or_default();
    match (req.method(), req.caller()) {
        (&Method::GET, Some(Caller::Admin)) if req.path() == "/" => {}
        (&Method::POST, Some(Caller::Object(from)))
            if from.class == "inbox" || from.class == "inboxes" =>
        {
            match req.path() {
                "/signup" => totals.inboxes += 1,
                "/delivered" => {
                    let body: Map<String, Value> = req.json()?;
                    totals.messages += 1;
                    totals.bytes += body.get("bytes").and_then(Value::as_u64).unwrap_or(0);
                }
                _ => return Err(Error::not_found("stats take /signup and /delivered")),
            }
            kv::put(TOTALS, &totals)?;
        }
        (&Method::GET, _) => {
            return Err(Error::unauthorized(
                "the totals are the operator's: send the admin token",
            ));
        }
        _ => return Err(Error::forbidden("only inboxes report to the stats")),
    }
    Ok(Response::json(&totals))
}
