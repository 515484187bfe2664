//! The operator's static files (`[assets] dir`), served at `/` as the
//! router's fallback, so every API route wins over a file of the same name.
//!
//! Files are opened beneath one `cap_std` directory handle taken at start,
//! never by a path joined from the request: a `..`, an absolute path or a
//! symlink that leads out of the directory fails inside the open itself
//! (no check-then-open race). Requests are checked before that too, so an
//! encoded `..` or `/`, a backslash or a NUL gets a clear `400`. Only
//! regular files are served: a directory answers with its `index.html`,
//! never a listing; dotfiles are not served.

mod content_type;

use std::io::{self, Read as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _};
use percent_encoding::percent_decode_str;
use tokio::io::AsyncReadExt as _;
use tokio_util::io::ReaderStream;

use super::{API_ROOTS, ApiError, Gateway};
use crate::config::AssetSettings;

/// Files up to this size are read whole; larger ones are streamed.
const READ_WHOLE_MAX_BYTES: u64 = 1024 * 1024;

/// What a streamed file is read in.
const STREAM_CHUNK_BYTES: usize = 64 * 1024;

/// The directory of static files, opened once at start.
pub struct Assets {
    dir: Dir,
}

impl Assets {
    pub fn open(settings: &AssetSettings) -> anyhow::Result<Self> {
        let dir = Dir::open_ambient_dir(&settings.dir, cap_std::ambient_authority())
            .with_context(|| {
                format!(
                    "cannot open the assets directory {} ([assets] dir): create it, or remove the [assets] section",
                    settings.dir.display()
                )
            })?;
        Ok(Assets { dir })
    }

    /// The file a request names, opened, with what was read of it.
    fn find(&self, request: &FileRequest) -> io::Result<Found> {
        let mut path = request.path.clone();
        let mut file = self.open_file(&path)?;
        let mut metadata = file.metadata()?;
        if metadata.is_dir() {
            if !request.trailing_slash {
                return Ok(Found::Directory);
            }
            path.push("index.html");
            file = self.open_file(&path)?;
            metadata = file.metadata()?;
        } else if request.trailing_slash {
            // `/app.js/` is not `/app.js`: its relative links would break.
            return Err(io::ErrorKind::NotFound.into());
        }
        if !metadata.is_file() {
            return Err(io::ErrorKind::NotFound.into());
        }
        let body = if metadata.len() <= READ_WHOLE_MAX_BYTES && !request.head {
            let mut bytes = Vec::with_capacity(metadata.len() as usize);
            (&file).read_to_end(&mut bytes)?;
            Some(bytes)
        } else {
            None
        };
        Ok(Found::File(OpenFile {
            content_type: content_type::of(&path),
            etag: etag(&metadata),
            len: metadata.len(),
            body,
            file,
        }))
    }

    fn open_file(&self, path: &Path) -> io::Result<std::fs::File> {
        // The root itself ("" is not a name cap_std opens).
        let path = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        let mut options = OpenOptions::new();
        // A FIFO put in the directory must not hang the open.
        options.read(true).custom_flags(libc::O_NONBLOCK);
        Ok(self.dir.open_with(path, &options)?.into_std())
    }
}

/// A request's path, checked and decoded.
struct FileRequest {
    path: PathBuf,
    trailing_slash: bool,
    head: bool,
}

enum Found {
    File(OpenFile),
    /// A directory named without its trailing slash.
    Directory,
}

struct OpenFile {
    file: std::fs::File,
    content_type: &'static str,
    etag: String,
    len: u64,
    /// The whole file, when small and the request is a `GET`.
    body: Option<Vec<u8>>,
}

/// `GET` or `HEAD` of any path no API route matched.
pub async fn serve(
    State(gateway): State<Gateway>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some(assets) = gateway.assets() else {
        return ApiError::RouteNotFound.into_response();
    };
    if method != Method::GET && method != Method::HEAD {
        return ApiError::MethodNotAllowed.into_response();
    }
    let request = match file_request(uri.path(), method == Method::HEAD) {
        Ok(Some(request)) => request,
        Ok(None) => return ApiError::RouteNotFound.into_response(),
        Err(error) => return error.into_response(),
    };
    let assets = std::sync::Arc::clone(assets);
    let found = tokio::task::spawn_blocking(move || {
        let found = assets.find(&request);
        (found, request)
    })
    .await;
    let (found, request) = match found {
        Ok(found) => found,
        Err(error) => return ApiError::Internal(error.to_string()).into_response(),
    };
    match found {
        Ok(Found::File(file)) => respond(file, request.head, &headers),
        Ok(Found::Directory) => redirect_to_directory(uri.path()),
        Err(error) => {
            // Missing, not a directory on the way, or outside the
            // directory (cap_std's refusal): all look the same to a client.
            tracing::debug!(path = uri.path(), %error, "no static file");
            ApiError::RouteNotFound.into_response()
        }
    }
}

/// The file a request path names, relative to the assets directory;
/// `None` for a dotfile (not served); `400` for what no file name holds.
fn file_request(path: &str, head: bool) -> Result<Option<FileRequest>, ApiError> {
    let refused = |why: &str| ApiError::BadRequest(format!("the path {why}"));
    let mut relative = PathBuf::new();
    for raw in path.split('/') {
        let segment = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| refused("is not UTF-8 once decoded"))?;
        match &*segment {
            "" | "." => continue,
            ".." => return Err(refused("may not contain `..`")),
            _ if segment.contains(['/', '\\', '\0']) => {
                return Err(refused(
                    "may not contain an encoded `/`, a backslash or a NUL",
                ));
            }
            // `.git`, `.env`: an operator's directory may hold them.
            name if name.starts_with('.') && name != ".well-known" => return Ok(None),
            name if relative.as_os_str().is_empty() && API_ROOTS.contains(&name) => {
                return Ok(None);
            }
            name => relative.push(name),
        }
    }
    Ok(Some(FileRequest {
        path: relative,
        trailing_slash: path.ends_with('/'),
        head,
    }))
}

/// Strong: the inode, size and modification time (to the nanosecond) of
/// the file. Any rewrite changes the time or, for a deploy by rename, the
/// inode; unlike a content hash it costs no read, so a `304` for a large
/// file is as cheap as for a small one.
fn etag(metadata: &std::fs::Metadata) -> String {
    format!(
        "\"{:x}-{:x}-{:x}.{:x}\"",
        metadata.ino(),
        metadata.size(),
        metadata.mtime(),
        metadata.mtime_nsec()
    )
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110
/// wants for this header) or is `*`.
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn respond(file: OpenFile, head: bool, request_headers: &HeaderMap) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(etag) = HeaderValue::from_str(&file.etag) {
        headers.insert(header::ETAG, etag);
    }
    // HTML is revalidated every time, so a new deploy shows at once; the
    // files it loads may be reused for a minute.
    let cache = if file.content_type.starts_with("text/html") {
        "no-cache"
    } else {
        "public, max-age=60"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if not_modified(request_headers, &file.etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.content_type),
    );
    // The length sent is the length of what is sent: a small file's bytes
    // as read; a streamed one is cut at the size it had when opened (a
    // file rewritten meanwhile must not outrun its Content-Length).
    let len = match &file.body {
        Some(bytes) => bytes.len() as u64,
        None => file.len,
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let body = match (head, file.body) {
        (true, _) => Body::empty(),
        (false, Some(bytes)) => Body::from(bytes),
        (false, None) => {
            let file = tokio::fs::File::from_std(file.file).take(len);
            Body::from_stream(ReaderStream::with_capacity(file, STREAM_CHUNK_BYTES))
        }
    };
    (StatusCode::OK, headers, body).into_response()
}

/// `/docs` names a directory: send the browser to `/docs/`, so the links
/// in its `index.html` resolve inside it. The `Location` is relative to
/// the request's own last segment, so no request path can make it point
/// at another host.
fn redirect_to_directory(path: &str) -> Response {
    let last = path.rsplit('/').next().unwrap_or_default();
    match HeaderValue::from_str(&format!("./{last}/")) {
        Ok(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => ApiError::RouteNotFound.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(path: &str) -> Option<PathBuf> {
        file_request(path, false)
            .expect("a valid path")
            .map(|request| request.path)
    }

    #[test]
    fn decodes_a_request_path_into_a_relative_file_name() {
        assert_eq!(path_of("/"), Some(PathBuf::new()));
        assert_eq!(path_of("/a/b.js"), Some(PathBuf::from("a/b.js")));
        assert_eq!(path_of("//a/./b%20c.js"), Some(PathBuf::from("a/b c.js")));
        assert_eq!(
            path_of("/.well-known/x"),
            Some(PathBuf::from(".well-known/x"))
        );
        assert_eq!(path_of("/.git/config"), None);
        assert_eq!(path_of("/a/.env"), None);
        assert_eq!(path_of("/objects/counter/a/"), None, "the API's");
        assert_eq!(path_of("/%61dmin/x.js"), None, "the API's");
        assert_eq!(path_of("/docs/admin"), Some(PathBuf::from("docs/admin")));
    }

    #[test]
    fn refuses_what_could_leave_the_directory() {
        for path in [
            "/../etc/passwd",
            "/a/../../b",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/x",
            "/a%2f..%2f..%2fetc",
            "/a%5c..%5cb",
            "/a\\b",
            "/a%00.html",
            "/%ff",
        ] {
            assert!(
                matches!(file_request(path, false), Err(ApiError::BadRequest(_))),
                "{path} must be refused"
            );
        }
    }

    #[test]
    fn if_none_match_compares_weakly_and_takes_lists() {
        let tag = "\"1-2-3.4\"";
        let mut headers = HeaderMap::new();
        assert!(!not_modified(&headers, tag));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"x\""));
        assert!(!not_modified(&headers, tag));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"1-2-3.4\""),
        );
        assert!(not_modified(&headers, tag));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&headers, tag));
    }
}
