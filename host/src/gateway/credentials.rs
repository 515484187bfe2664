//! Where a request carries its credentials: `Authorization: Bearer …` and
//! the session cookies, which the gateway sets and reads, and keeps from
//! the objects.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Request, header};

use crate::config::AuthSettings;

/// The access token's cookie, sent with every request.
pub const SESSION_COOKIE: &str = "podhost_session";
/// The refresh token's cookie, sent only to `/auth`.
pub const REFRESH_COOKIE: &str = "podhost_refresh";

/// The bearer token of `Authorization`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The value of cookie `name`, if the request has it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
}

/// The session's access token: the bearer token, else the cookie.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    bearer(headers).or_else(|| cookie(headers, SESSION_COOKIE))
}

/// A `Cookie` header without podhost's cookies; `None` if none are left.
pub fn without_session_cookies(value: &HeaderValue) -> Option<String> {
    let Ok(text) = value.to_str() else {
        return Some(String::from_utf8_lossy(value.as_bytes()).into_owned());
    };
    let kept: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(key, _)| key);
            !pair.is_empty() && key != SESSION_COOKIE && key != REFRESH_COOKIE
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// `Set-Cookie` values for a session: the access token for every path,
/// the refresh token for `/auth` only. Both are out of scripts' reach.
pub fn session_cookies(
    settings: &AuthSettings,
    token: &str,
    token_ttl: Duration,
    refresh_token: &str,
    session_ttl: Duration,
) -> [String; 2] {
    [
        set_cookie(settings, SESSION_COOKIE, token, "/", "Lax", token_ttl),
        set_cookie(
            settings,
            REFRESH_COOKIE,
            refresh_token,
            "/auth",
            "Strict",
            session_ttl,
        ),
    ]
}

/// `Set-Cookie` values that remove both cookies.
pub fn cleared_cookies(settings: &AuthSettings) -> [String; 2] {
    [
        set_cookie(settings, SESSION_COOKIE, "", "/", "Lax", Duration::ZERO),
        set_cookie(
            settings,
            REFRESH_COOKIE,
            "",
            "/auth",
            "Strict",
            Duration::ZERO,
        ),
    ]
}

fn set_cookie(
    settings: &AuthSettings,
    name: &str,
    value: &str,
    path: &str,
    same_site: &str,
    max_age: Duration,
) -> String {
    let secure = if settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite={same_site}{secure}",
        max_age.as_secs()
    )
}

/// Whether a browser's request comes from the server's own site: an
/// `Origin` header, when present, must name the `Host` the request was
/// sent to. This stops other sites from posting to `/auth` on a visitor's
/// behalf (login CSRF); clients other than browsers send no `Origin`.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let authority = origin.to_str().ok().and_then(|origin| {
        origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
    });
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok());
    matches!((authority, host), (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host))
}

/// The client's address, when the server knows it.
pub fn client_address<B>(request: &Request<B>) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_tokens_and_cookies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; podhost_session=abc; x=1"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(session_token(&headers), Some("abc"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz"),
        );
        assert_eq!(
            session_token(&headers),
            Some("xyz"),
            "the bearer token wins"
        );
    }

    #[test]
    fn only_same_site_browsers_may_post_to_auth() {
        let headers = |origin: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_static("example.com:8787"));
            if let Some(origin) = origin {
                headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
            }
            headers
        };
        assert!(same_origin(&headers(None)));
        assert!(same_origin(&headers(Some("http://example.com:8787"))));
        assert!(same_origin(&headers(Some("https://EXAMPLE.com:8787"))));
        assert!(!same_origin(&headers(Some("https://evil.example"))));
        assert!(!same_origin(&headers(Some("null"))));
    }

    #[test]
    fn keeps_podhost_cookies_from_objects() {
        let value = HeaderValue::from_static("theme=dark; podhost_session=abc; podhost_refresh=r");
        assert_eq!(
            without_session_cookies(&value).as_deref(),
            Some("theme=dark")
        );
        let only_ours = HeaderValue::from_static("podhost_session=abc");
        assert_eq!(without_session_cookies(&only_ours), None);
    }
}
