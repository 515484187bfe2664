//! `/admin/`: the operator's page (classes, objects, an object's tables,
//! queries and logs), plain HTML, JavaScript and CSS embedded in the
//! binary. The page itself is public; everything it shows comes from the
//! `/admin/*` JSON API with the token the operator types in. Its policy
//! allows no inline script and no framing, and the script renders every
//! value as text, since object data and names are tenants' input.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};

const INDEX: &str = include_str!("admin_page/index.html");
const SCRIPT: &str = include_str!("admin_page/admin.js");
const STYLE: &str = include_str!("admin_page/admin.css");

/// Scripts, styles and fetches from this origin only; no plugins, no
/// `<base>`, no form posts elsewhere, never inside a frame.
const POLICY: &str = "default-src 'self'; object-src 'none'; base-uri 'none'; \
                      form-action 'none'; frame-ancestors 'none'";

pub async fn redirect() -> Redirect {
    Redirect::permanent("/admin/")
}

pub async fn index() -> Response {
    page(INDEX, "text/html; charset=utf-8")
}

pub async fn script() -> Response {
    page(SCRIPT, "text/javascript; charset=utf-8")
}

pub async fn style() -> Response {
    page(STYLE, "text/css; charset=utf-8")
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        // A new binary's page shows at once.
        (header::CACHE_CONTROL, "no-cache"),
    ]
    .map(|(name, value)| (name, HeaderValue::from_static(value)));
    (headers, body).into_response()
}
