//! The `Content-Type` of a static file, by its extension.

use std::path::Path;

/// What a browser needs for the files a web app ships; anything else is
/// `application/octet-stream` (downloaded, never rendered).
pub fn of(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json; charset=utf-8",
        Some("webmanifest") => "application/manifest+json; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml; charset=utf-8",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("avif") => "image/avif",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("pdf") => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_a_web_apps_files_and_defaults_to_bytes() {
        assert_eq!(of(Path::new("index.html")), "text/html; charset=utf-8");
        assert_eq!(of(Path::new("a/app.MJS")), "text/javascript; charset=utf-8");
        assert_eq!(
            of(Path::new("app.js.map")),
            "application/json; charset=utf-8"
        );
        assert_eq!(of(Path::new("logo.svg")), "image/svg+xml; charset=utf-8");
        assert_eq!(of(Path::new("font.woff2")), "font/woff2");
        assert_eq!(of(Path::new("guest.wasm")), "application/wasm");
        assert_eq!(of(Path::new("README")), "application/octet-stream");
        assert_eq!(of(Path::new("data.bin")), "application/octet-stream");
    }
}
