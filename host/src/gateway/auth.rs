//! `/auth/*`: sign up, log in, refresh, log out, and who am I. Sessions
//! come back both as JSON (for API clients: `Authorization: Bearer`) and
//! as HttpOnly cookies (for browsers); a refresh by cookie answers with
//! cookies only, so no page's script ever reads a token.

use std::net::IpAddr;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::credentials::{self, REFRESH_COOKIE};
use super::{ApiError, Gateway};
use crate::accounts::{Accounts, AuthError, Authenticated, Issued};
use crate::runtime::Runtime;
use crate::storage::catalog::now_ms;

/// The largest body `/auth` reads.
const MAX_BODY_BYTES: usize = 16 << 10;

#[derive(Deserialize)]
struct Credentials {
    email: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize, Default)]
struct RefreshBody {
    refresh_token: Option<String>,
}

/// `POST /auth/signup {email, password}`: 201 with a session.
pub async fn signup(
    State(gateway): State<Gateway>,
    request: Request,
) -> Result<Response, ApiError> {
    let accounts = gateway.accounts()?;
    let (email, password, address) = email_and_password(gateway.runtime(), request).await?;
    let issued = accounts.signup(&email, password, address).await?;
    Ok(with_session(accounts, StatusCode::CREATED, issued, true))
}

/// `POST /auth/login {email, password}`: a new session.
pub async fn login(State(gateway): State<Gateway>, request: Request) -> Result<Response, ApiError> {
    let accounts = gateway.accounts()?;
    let (email, password, address) = email_and_password(gateway.runtime(), request).await?;
    let issued = accounts.login(&email, password, address).await?;
    Ok(with_session(accounts, StatusCode::OK, issued, true))
}

/// `POST /auth/refresh [{refresh_token}]` (or the refresh cookie): a new
/// access token and refresh token for the same session, in the body only
/// when the refresh token came in the body.
pub async fn refresh(
    State(gateway): State<Gateway>,
    request: Request,
) -> Result<Response, ApiError> {
    let accounts = gateway.accounts()?;
    let headers = request.headers().clone();
    same_site(&headers)?;
    let body = read_body(request).await?;
    let given: RefreshBody = if body.is_empty() {
        RefreshBody::default()
    } else {
        json_body(&body)?
    };
    let in_body = given.refresh_token.is_some();
    let refresh_token = given
        .refresh_token
        .or_else(|| credentials::cookie(&headers, REFRESH_COOKIE).map(str::to_string))
        .ok_or_else(|| {
            ApiError::BadRequest(
                "`refresh_token` is required (in the body or the podhost_refresh cookie)".into(),
            )
        })?;
    let issued = accounts.refresh(&refresh_token).await?;
    Ok(with_session(accounts, StatusCode::OK, issued, in_body))
}

/// `POST /auth/logout`: ends the session of the access token (or refresh
/// cookie) and clears the cookies.
pub async fn logout(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let accounts = gateway.accounts()?;
    same_site(&headers)?;
    let ended = accounts
        .logout(
            credentials::session_token(&headers),
            credentials::cookie(&headers, REFRESH_COOKIE),
        )
        .await;
    // The cookies go whatever happened: a client logging out wants rid
    // of them even if they no longer name a live session.
    let mut response = match ended {
        Ok(ended) => Json(json!({ "logged_out": ended })).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    };
    for cookie in credentials::cleared_cookies(accounts.settings()) {
        append_cookie(&mut response, &cookie);
    }
    Ok(response)
}

/// `GET /auth/me`: the signed-in user, their session and organizations.
pub async fn me(
    State(gateway): State<Gateway>,
    SignedIn(caller): SignedIn,
) -> Result<Json<Value>, ApiError> {
    let accounts = gateway.accounts()?;
    let orgs = accounts.orgs_of(&caller.user).await?;
    Ok(Json(json!({
        "user": caller.user,
        "token_expires_at": caller.expires_at,
        "orgs": orgs,
    })))
}

/// The `{email, password}` of a signup or login, and where it came from.
async fn email_and_password(
    runtime: &Runtime,
    request: Request,
) -> Result<(String, String, Option<IpAddr>), ApiError> {
    same_site(request.headers())?;
    let address = credentials::client_address(
        request.headers(),
        request.extensions(),
        &runtime.config().trusted_proxies,
    );
    let given: Credentials = json_body(&read_body(request).await?)?;
    let email = required(given.email, "email")?;
    let password = required(given.password, "password")?;
    Ok((email, password, address))
}

/// Refuses requests from other sites' pages (see `same_origin`).
pub(super) fn same_site(headers: &HeaderMap) -> Result<(), ApiError> {
    if credentials::same_origin(headers) {
        Ok(())
    } else {
        Err(ApiError::CrossOrigin)
    }
}

/// The signed-in caller of an `/auth/*` route: the request comes from the
/// server's own origin (see `same_site`) and carries a live session.
pub struct SignedIn(pub Authenticated);

impl FromRequestParts<Gateway> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gateway: &Gateway) -> Result<Self, ApiError> {
        same_site(&parts.headers)?;
        let (_, caller) = signed_in(gateway, &parts.headers)?;
        Ok(SignedIn(caller))
    }
}

/// A JSON request body of at most `MAX_BODY_BYTES`, with errors that
/// name what is wrong with it. Last among a handler's extractors, as
/// bodies are.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        Ok(JsonBody(json_body(&read_body(request).await?)?))
    }
}

/// The request's signed-in user.
pub(super) fn signed_in<'a>(
    gateway: &'a Gateway,
    headers: &HeaderMap,
) -> Result<(&'a Accounts, Authenticated), ApiError> {
    let accounts = gateway.accounts()?;
    let token = credentials::session_token(headers).ok_or(AuthError::Unauthenticated)?;
    Ok((accounts, accounts.authenticate(token)?))
}

/// Parses a JSON body, naming what is wrong with it.
pub(super) fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::BodyTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    serde_json::from_slice(body)
        .map_err(|error| ApiError::BadRequest(format!("the body must be a JSON object: {error}")))
}

/// A field that must be present and not empty.
pub(super) fn required(value: Option<String>, field: &str) -> Result<String, ApiError> {
    value
        .filter(|value| !value.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("`{field}` is required")))
}

pub(super) async fn read_body(request: Request) -> Result<Bytes, ApiError> {
    let (parts, body) = request.into_parts();
    super::body::read_capped(body, &parts.headers, MAX_BODY_BYTES).await
}

/// The answer with a session's cookies, and its tokens in the body when
/// `tokens_in_body` (the client sent credentials in the body, so it is
/// not a page riding on the cookies).
fn with_session(
    accounts: &Accounts,
    status: StatusCode,
    issued: Issued,
    tokens_in_body: bool,
) -> Response {
    let now = now_ms();
    let remaining = |at: i64| Duration::from_millis(u64::try_from(at - now).unwrap_or(0));
    let cookies = credentials::session_cookies(
        accounts.settings(),
        &issued.token,
        remaining(issued.token_expires_at),
        &issued.refresh_token,
        remaining(issued.session_expires_at),
    );
    let body = if tokens_in_body {
        json!(issued)
    } else {
        json!({
            "user": issued.user,
            "token_expires_at": issued.token_expires_at,
            "session_expires_at": issued.session_expires_at,
        })
    };
    let mut response = (status, Json(body)).into_response();
    for cookie in cookies {
        append_cookie(&mut response, &cookie);
    }
    response
}

fn append_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}
