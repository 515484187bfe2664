//! Where a request carries its credentials: `Authorization: Bearer …` and
//! the session cookies, which the gateway sets and reads, and keeps from
//! the objects; and what keeps an object's content from reaching them in
//! a visitor's browser (the sandbox on object responses, the same-origin
//! checks on cookie-authenticated requests).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, header};
use cookie::{Cookie, SameSite};

use crate::config::{AuthSettings, IpRange};

/// The access token's cookie, sent with every request.
pub const SESSION_COOKIE: &str = "podhost_session";
/// The refresh token's cookie, sent only to `/auth`.
pub const REFRESH_COOKIE: &str = "podhost_refresh";
/// Cookie names starting with this (in any case) are the host's: removed
/// from requests to objects, and objects may not set them.
const RESERVED_COOKIE_PREFIX: &str = "podhost_";

/// What object responses are served with unless their class is trusted:
/// the page runs in an opaque origin, so it can neither read the host's
/// responses nor send its `SameSite` cookies, and cannot touch
/// `document.cookie`. Scripts, forms, popups, modals and downloads work.
pub const SANDBOX_POLICY: &str =
    "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

/// The bearer token of `Authorization`, if any (the scheme in any case).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    bearer_of(headers.get(header::AUTHORIZATION)?)
}

/// The token of one `Authorization` value, if its scheme is `Bearer`.
fn bearer_of(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?.trim();
    let (scheme, token) = text.split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether an `Authorization` value holds a bearer token that
/// `is_credential` says is podhost's.
pub fn holds_credential(value: &HeaderValue, is_credential: impl Fn(&str) -> bool) -> bool {
    bearer_of(value).is_some_and(is_credential)
}

/// The value of cookie `name`, if the request has it (in a `Cookie` header
/// that is visible ASCII; others are ignored whole).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .and_then(|cookie| cookie.value_raw())
}

/// The session's access token: the bearer token, else the cookie when
/// the request may use it (see `may_use_cookies`).
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    bearer(headers).or_else(|| {
        may_use_cookies(headers)
            .then(|| cookie(headers, SESSION_COOKIE))
            .flatten()
    })
}

/// A `Cookie` header as an object may see it: without podhost's cookies;
/// `None` if none are left, or if the header is not visible ASCII (it
/// cannot be parsed the way every object would, so it goes whole).
pub fn without_session_cookies(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let kept: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && !is_reserved_cookie(pair))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Whether a cookie (`name=value`, or a nameless `value`, with or without
/// `Set-Cookie` attributes) would reach the host as one of its own:
/// browsers trim names and send a nameless cookie as its bare value, so
/// `=podhost_session=x` is read as `podhost_session`.
fn is_reserved_cookie(text: &str) -> bool {
    let name = match Cookie::parse(text) {
        Ok(cookie) => cookie.name_raw().unwrap_or_default(),
        // No name: the pair is its value, which may read as `name=...`.
        Err(_) => {
            let pair = text.split(';').next().unwrap_or_default().trim();
            let value = pair.strip_prefix('=').unwrap_or(pair);
            value.split_once('=').map_or(value, |(name, _)| name)
        }
    };
    let name = name.trim();
    name.len() >= RESERVED_COOKIE_PREFIX.len()
        && name.as_bytes()[..RESERVED_COOKIE_PREFIX.len()]
            .eq_ignore_ascii_case(RESERVED_COOKIE_PREFIX.as_bytes())
}

/// Drops the `Set-Cookie` values of an object's response that would set
/// one of podhost's cookies (session fixation), or that are not visible
/// ASCII (a browser might read them either way).
pub fn drop_reserved_set_cookies(headers: &mut HeaderMap) {
    let values: Vec<HeaderValue> = match headers.entry(header::SET_COOKIE) {
        header::Entry::Occupied(entry) => entry.remove_entry_mult().1.collect(),
        header::Entry::Vacant(_) => return,
    };
    for value in values {
        let allowed = value.to_str().is_ok_and(|text| !is_reserved_cookie(text));
        if allowed {
            headers.append(header::SET_COOKIE, value);
        } else {
            tracing::debug!("an object's Set-Cookie for a podhost cookie was dropped");
        }
    }
}

/// Puts an object's response in the sandbox (see `SANDBOX_POLICY`). The
/// policy is added to any the object sent: browsers enforce all of them,
/// so an object can only tighten it.
pub fn sandbox(headers: &mut HeaderMap) {
    headers.append(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(SANDBOX_POLICY),
    );
    // Without it a browser may sniff a `text/plain` answer into HTML.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
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
        set_cookie(
            settings,
            SESSION_COOKIE,
            token,
            "/",
            SameSite::Lax,
            token_ttl,
        ),
        set_cookie(
            settings,
            REFRESH_COOKIE,
            refresh_token,
            "/auth",
            SameSite::Strict,
            session_ttl,
        ),
    ]
}

/// `Set-Cookie` values that remove both cookies.
pub fn cleared_cookies(settings: &AuthSettings) -> [String; 2] {
    [
        set_cookie(
            settings,
            SESSION_COOKIE,
            "",
            "/",
            SameSite::Lax,
            Duration::ZERO,
        ),
        set_cookie(
            settings,
            REFRESH_COOKIE,
            "",
            "/auth",
            SameSite::Strict,
            Duration::ZERO,
        ),
    ]
}

fn set_cookie(
    settings: &AuthSettings,
    name: &str,
    value: &str,
    path: &str,
    same_site: SameSite,
    max_age: Duration,
) -> String {
    let max_age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
    Cookie::build((name, value))
        .path(path)
        .max_age(cookie::time::Duration::seconds(max_age))
        .http_only(true)
        .same_site(same_site)
        .secure(settings.secure_cookies)
        .to_string()
}

/// Whether a browser's request comes from the server's own origin: an
/// `Origin` header, when present, must name the `Host` the request was
/// sent to (so `null`, the origin of sandboxed pages, never does), and
/// `Sec-Fetch-Site`, when present, must be `same-origin` or `none`. This
/// stops other sites' pages, and the sandboxed pages of objects, from
/// using `/auth` on a visitor's behalf; clients other than browsers send
/// neither header.
pub fn same_origin(headers: &HeaderMap) -> bool {
    origin_matches_host(headers) && fetch_site_is(headers, &["same-origin", "none"])
}

/// Whether the session cookie may authenticate this request: it comes
/// from the server's own origin (see `same_origin`), or it is a top-level
/// navigation (a link followed), which `SameSite=Lax` allows too and whose
/// answer only the visitor sees. A sandboxed page's `fetch`, WebSocket or
/// form post carries `Origin: null` and is refused.
pub fn may_use_cookies(headers: &HeaderMap) -> bool {
    let top_level_navigation = header_is(headers, "sec-fetch-mode", "navigate")
        && header_is(headers, "sec-fetch-dest", "document");
    origin_matches_host(headers)
        && (top_level_navigation || fetch_site_is(headers, &["same-origin", "none"]))
}

fn origin_matches_host(headers: &HeaderMap) -> bool {
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

/// Whether `Sec-Fetch-Site` is absent or one of `allowed`.
fn fetch_site_is(headers: &HeaderMap, allowed: &[&str]) -> bool {
    match headers.get(HeaderName::from_static("sec-fetch-site")) {
        None => true,
        Some(value) => value
            .to_str()
            .is_ok_and(|site| allowed.iter().any(|a| site.eq_ignore_ascii_case(a))),
    }
}

fn header_is(headers: &HeaderMap, name: &'static str, expected: &str) -> bool {
    headers
        .get(HeaderName::from_static(name))
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case(expected))
}

/// The client's address, when the server knows it: the peer's, or, when
/// the peer is one of `trusted_proxies`, the right-most address the
/// proxies forwarded that is not a trusted proxy itself (the left part of
/// the header is whatever the client wrote). The hops come from
/// `X-Forwarded-For`, or from the `for=` of `Forwarded` (RFC 7239) when
/// there is no `X-Forwarded-For`. The per-address throttles and the
/// object's `client-address` both use this.
pub fn client_address(
    headers: &HeaderMap,
    extensions: &Extensions,
    trusted_proxies: &[IpRange],
) -> Option<IpAddr> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())?;
    Some(forwarded_client(peer, headers, trusted_proxies))
}

fn forwarded_client(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpRange]) -> IpAddr {
    let trusted = |address: IpAddr| trusted_proxies.iter().any(|range| range.contains(address));
    if !trusted(peer) {
        return peer;
    }
    let hops = forwarded_hops(headers);
    let mut client = peer;
    for hop in hops.iter().rev() {
        // A hop that is not an address (junk, `unknown`, an obfuscated
        // `_node`) ends the walk: the trusted proxy that passed it on is
        // the best known client.
        let Some(address) = node_address(hop) else {
            break;
        };
        client = address;
        if !trusted(address) {
            break;
        }
    }
    client
}

/// The forwarded hops, left (the original client, as claimed) to right
/// (the proxy nearest to us).
fn forwarded_hops(headers: &HeaderMap) -> Vec<&str> {
    let values = |name: &'static str| {
        headers
            .get_all(HeaderName::from_static(name))
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
    };
    let xff: Vec<&str> = values("x-forwarded-for").map(str::trim).collect();
    if !xff.is_empty() {
        return xff;
    }
    // `Forwarded: for=192.0.2.1;proto=https, for="[2001:db8::1]:4711"`:
    // one element per hop, each with `;`-separated parameters. A hop
    // without `for=` is kept as an empty (unusable) node.
    values("forwarded")
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                .map_or("", |(_, value)| value.trim())
        })
        .collect()
}

/// The IP address of a forwarded node: `192.0.2.1`, `192.0.2.1:80`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:443`, quoted or not.
fn node_address(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    let node = node
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(node);
    if let Ok(address) = node.parse::<IpAddr>() {
        return Some(address);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|port| port.parse::<u16>().is_ok() || port.starts_with('_'));
        return port_ok
            .then(|| inner.parse::<std::net::Ipv6Addr>().ok())
            .flatten()
            .map(IpAddr::V6);
    }
    let (host, port) = node.split_once(':')?;
    if port.parse::<u16>().is_err() && !port.starts_with('_') {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
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
    fn matches_the_bearer_scheme_in_any_case() {
        for value in [
            "Bearer t",
            "bearer t",
            "BEARER t",
            "bEaReR  t ",
            "Bearer\tt",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer(&headers), Some("t"), "{value:?}");
        }
        for value in ["Basic t", "Bearer", "Bearer ", "Bearert", "t"] {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer(&headers), None, "{value:?}");
        }
    }

    #[test]
    fn only_same_site_browsers_may_post_to_auth() {
        let headers = |origin: Option<&'static str>, site: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_static("example.com:8787"));
            if let Some(origin) = origin {
                headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
            }
            if let Some(site) = site {
                headers.insert("sec-fetch-site", HeaderValue::from_static(site));
            }
            headers
        };
        assert!(same_origin(&headers(None, None)));
        assert!(same_origin(&headers(Some("http://example.com:8787"), None)));
        assert!(same_origin(&headers(
            Some("https://EXAMPLE.com:8787"),
            None
        )));
        assert!(!same_origin(&headers(Some("https://evil.example"), None)));
        assert!(!same_origin(&headers(Some("null"), None)));
        assert!(same_origin(&headers(None, Some("same-origin"))));
        assert!(same_origin(&headers(None, Some("none"))));
        for site in ["cross-site", "same-site", "junk"] {
            assert!(!same_origin(&headers(None, Some(site))), "{site}");
        }
    }

    #[test]
    fn cookies_authenticate_same_origin_requests_and_navigations_only() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_static("example.com"));
            headers.insert(
                header::COOKIE,
                HeaderValue::from_static("podhost_session=abc"),
            );
            for (name, value) in pairs {
                headers.insert(*name, HeaderValue::from_static(value));
            }
            headers
        };
        assert_eq!(session_token(&headers(&[])), Some("abc"));
        assert_eq!(
            session_token(&headers(&[
                ("origin", "http://example.com"),
                ("sec-fetch-site", "same-origin")
            ])),
            Some("abc")
        );
        // A link followed from elsewhere.
        assert_eq!(
            session_token(&headers(&[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document"),
            ])),
            Some("abc")
        );
        // A sandboxed page's fetch or WebSocket, another site's iframe.
        for pairs in [
            &[("origin", "null"), ("sec-fetch-site", "cross-site")][..],
            &[("origin", "null")][..],
            &[("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "cors")][..],
            &[
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "iframe"),
            ][..],
        ] {
            assert_eq!(session_token(&headers(pairs)), None, "{pairs:?}");
        }
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
        for sneaky in [
            " podhost_session =abc;theme=dark",
            "PODHOST_SESSION=abc; theme=dark",
            "=podhost_session=abc; theme=dark",
            "podhost_session; theme=dark",
        ] {
            let value = HeaderValue::from_str(sneaky).expect("a header value");
            assert_eq!(
                without_session_cookies(&value).as_deref(),
                Some("theme=dark"),
                "{sneaky:?}"
            );
        }
        // Not visible ASCII: the whole header goes.
        let value = HeaderValue::from_bytes("theme=café; podhost_session=abc".as_bytes())
            .expect("a header value");
        assert_eq!(without_session_cookies(&value), None);
    }

    #[test]
    fn session_cookies_carry_their_attributes() {
        let mut settings = AuthSettings::default();
        let hour = Duration::from_secs(3600);
        let [session, refresh] = session_cookies(&settings, "t", hour, "r", 2 * hour);
        let attributes = |text: &str| {
            let mut parts: Vec<String> = text.split("; ").map(str::to_string).collect();
            parts[1..].sort();
            parts
        };
        assert_eq!(
            attributes(&session),
            [
                "podhost_session=t",
                "HttpOnly",
                "Max-Age=3600",
                "Path=/",
                "SameSite=Lax"
            ]
        );
        assert_eq!(
            attributes(&refresh),
            [
                "podhost_refresh=r",
                "HttpOnly",
                "Max-Age=7200",
                "Path=/auth",
                "SameSite=Strict"
            ]
        );
        settings.secure_cookies = true;
        let [cleared, _] = cleared_cookies(&settings);
        assert_eq!(
            attributes(&cleared),
            [
                "podhost_session=",
                "HttpOnly",
                "Max-Age=0",
                "Path=/",
                "SameSite=Lax",
                "Secure"
            ]
        );
    }

    #[test]
    fn objects_cannot_set_podhost_cookies() {
        let mut headers = HeaderMap::new();
        for value in [
            "podhost_session=evil; Path=/",
            "Podhost_Session=evil",
            " podhost_refresh = evil; Path=/auth",
            "=podhost_session=evil",
            "podhost_session",
            "theme=dark; Path=/",
            "lang=en",
        ] {
            headers.append(header::SET_COOKIE, HeaderValue::from_static(value));
        }
        headers.append(
            header::SET_COOKIE,
            HeaderValue::from_bytes("x=caf\u{e9}".as_bytes()).expect("a header value"),
        );
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        drop_reserved_set_cookies(&mut headers);
        let kept: Vec<&str> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(kept, ["theme=dark; Path=/", "lang=en"]);
        assert!(headers.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let ranges: Vec<IpRange> = ["10.0.0.0/8", "192.0.2.1"]
            .iter()
            .map(|r| r.parse().expect("a range"))
            .collect();
        let ip = |text: &str| text.parse::<IpAddr>().expect("an address");
        let with = |xff: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", HeaderValue::from_static(xff));
            headers
        };
        let spoofed = with("1.1.1.1, 203.0.113.9");
        assert_eq!(
            forwarded_client(ip("198.51.100.7"), &spoofed, &ranges),
            ip("198.51.100.7"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            forwarded_client(ip("10.0.0.2"), &spoofed, &ranges),
            ip("203.0.113.9"),
            "the right-most untrusted hop"
        );
        assert_eq!(
            forwarded_client(
                ip("10.0.0.2"),
                &with("1.1.1.1, 203.0.113.9, 192.0.2.1"),
                &ranges
            ),
            ip("203.0.113.9")
        );
        assert_eq!(
            forwarded_client(ip("10.0.0.2"), &with("junk, 10.0.0.3"), &ranges),
            ip("10.0.0.3"),
            "a malformed hop stops at the last trusted one"
        );
        assert_eq!(
            forwarded_client(ip("10.0.0.2"), &HeaderMap::new(), &ranges),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn reads_forwarded_nodes_with_ports_brackets_and_quotes() {
        let ip = |text: &str| text.parse::<IpAddr>().ok();
        for (node, expected) in [
            ("192.0.2.43", ip("192.0.2.43")),
            ("192.0.2.43:8080", ip("192.0.2.43")),
            ("\"192.0.2.43:_hidden\"", ip("192.0.2.43")),
            ("2001:db8::17", ip("2001:db8::17")),
            ("\"[2001:db8:cafe::17]:4711\"", ip("2001:db8:cafe::17")),
            ("[2001:db8::1]", ip("2001:db8::1")),
            ("unknown", None),
            ("_hidden", None),
            ("[2001:db8::1]x", None),
            ("192.0.2.43:99999", None),
            ("\"", None),
            ("", None),
        ] {
            assert_eq!(node_address(node), expected, "{node}");
        }
    }

    #[test]
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let ranges: Vec<IpRange> = vec!["10.0.0.0/8".parse().expect("a range")];
        let ip = |text: &str| text.parse::<IpAddr>().expect("an address");
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("forwarded", HeaderValue::from_static(value));
            headers
        };
        let two = with("for=198.51.100.1;proto=http, For=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1");
        assert_eq!(
            forwarded_client(ip("10.0.0.2"), &two, &ranges),
            ip("2001:db8:cafe::17"),
            "the right-most untrusted hop"
        );
        assert_eq!(
            forwarded_client(ip("203.0.113.5"), &two, &ranges),
            ip("203.0.113.5"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            forwarded_client(
                ip("10.0.0.2"),
                &with("for=192.0.2.1, for=10.0.0.9"),
                &ranges
            ),
            ip("192.0.2.1"),
            "trusted hops are skipped"
        );
        assert_eq!(
            forwarded_client(ip("10.0.0.2"), &with("for=unknown"), &ranges),
            ip("10.0.0.2")
        );
        let mut both = with("for=192.0.2.1");
        both.insert("x-forwarded-for", HeaderValue::from_static("192.0.2.2"));
        assert_eq!(
            forwarded_client(ip("10.0.0.2"), &both, &ranges),
            ip("192.0.2.2"),
            "X-Forwarded-For wins"
        );
    }
}
