//! A blog per user (the "UserDO" pattern): each signed-in user has their
//! own object at `/me/blog`, holding their posts in a typed table and one
//! JSON document of their own data. Every change to a post reaches the
//! user's live streams, and no one else's.
//!
//! Routes below `/me/blog` (`access = "user"`):
//!
//! - `POST /posts {"title", "content"}`: `201 {"post": {...}}`.
//! - `GET /posts[?limit=N&after=ID]`: `{"posts": [...]}`, newest first, 100
//!   at most; when there are more, `"next"` is the cursor of the next page.
//! - `GET /posts/{id}`, `PUT /posts/{id} {"title"?, "content"?}`,
//!   `DELETE /posts/{id}`: `{"post": {...}}` (404 if there is no such
//!   post of yours).
//! - `GET /data`, `POST /data {...}`: a JSON document of the user's, `{}`
//!   until the first `POST`, which replaces it whole.
//! - `GET /_events` (Server-Sent Events) and a WebSocket on `/ws`: every
//!   change to a post as `{"table": "posts", "op", "row"}` (the event
//!   `table:posts`).
//!
//! A missing or non-string `title` or `content` is a 400 naming it.

use std::sync::LazyLock;

use podhost_sdk::sockets::{self, Accept, Socket};
use podhost_sdk::{
    Error, Object, Params, Request, Response, Result, Router, Scope, StatusCode, Table, Type, kv,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const DATA_KEY: &str = "data";
const MAX_PAGE: u32 = 100;

struct Blog {
    posts: Table<Post>,
}

/// A post as stored and as `POST /posts` takes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Post {
    title: String,
    content: String,
}

/// What `PUT /posts/{id}` changes.
#[derive(Serialize, Deserialize)]
struct PostPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content: Option<String>,
}

static ROUTES: LazyLock<Router<Blog>> = LazyLock::new(|| {
    Router::<Blog>::new()
        .post("/posts", |blog, req, _| blog.create(&req))
        .get("/posts", |blog, req, _| blog.list(&req))
        .get("/posts/:id", |blog, req, params| {
            let post = blog.posts.of(&req)?.get(id(params)?)?;
            found(post).map(|post| Response::json(&json!({ "post": post })))
        })
        .put("/posts/:id", |blog, req, params| {
            let patch: PostPatch = req.json()?;
            if patch.title.is_none() && patch.content.is_none() {
                return Err(Error::bad_request(
                    "nothing to change: send `title` and/or `content` as strings",
                ));
            }
            let post = blog.posts.of(&req)?.update(id(params)?, &patch)?;
            found(post).map(|post| Response::json(&json!({ "post": post })))
        })
        .delete("/posts/:id", |blog, req, params| {
            let post = blog.posts.of(&req)?.delete(id(params)?)?;
            found(post).map(|post| Response::json(&json!({ "deleted": true, "post": post })))
        })
        .get("/data", |_, req, _| {
            req.require_user()?;
            let data: Value = kv::get(DATA_KEY)?.unwrap_or_else(|| json!({}));
            Ok(Response::json(&data))
        })
        .post("/data", |_, req, _| {
            req.require_user()?;
            let data: Value = req.json()?;
            kv::put(DATA_KEY, &data)?;
            Ok(Response::json(&data))
        })
});

impl Object for Blog {
    fn activate() -> Result<Self> {
        let posts = Table::<Post>::new("posts")
            .column("title", Type::Text)
            .column("content", Type::Text)
            .scope(Scope::User);
        posts.migrate()?;
        Ok(Blog { posts })
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        ROUTES.handle(self, req)
    }

    /// `/ws`: a live feed of the user's post changes.
    fn socket_open(&mut self, _socket: Socket, req: Request) -> Result<Accept> {
        if req.segments().as_slice() != ["ws"] {
            return Err(Error::not_found("WebSockets open on /ws"));
        }
        req.require_user()?;
        sockets::set_auto_response(Some(("ping", "pong")));
        Ok(Accept::new().tag(self.posts.topic()))
    }
}

impl Blog {
    fn create(&mut self, req: &Request) -> Result<Response> {
        let post: Post = req.json()?;
        let post = self.posts.of(req)?.insert(&post)?;
        Ok(Response::json(&json!({ "post": post })).with_status(StatusCode::CREATED))
    }

    fn list(&mut self, req: &Request) -> Result<Response> {
        let limit = match req.query_param("limit") {
            Some(limit) => limit
                .parse::<u32>()
                .ok()
                .filter(|limit| (1..=MAX_PAGE).contains(limit))
                .ok_or_else(|| Error::bad_request(format!("`limit` must be 1 to {MAX_PAGE}")))?,
            None => MAX_PAGE,
        };
        let mut query = self.posts.of(req)?.query().order_by("created_at", true);
        if let Some(after) = req.query_param("after") {
            let after = after
                .parse()
                .map_err(|_| Error::bad_request("`after` must be a post id"))?;
            query = query.after(after);
        }
        let (posts, next) = query.page(limit)?;
        let mut body = json!({ "posts": posts });
        if let Some(next) = next {
            body["next"] = next.into();
        }
        Ok(Response::json(&body))
    }
}

/// The `{id}` of the path; a post id is a number, so anything else is a
/// post that does not exist.
fn id(params: &Params) -> Result<i64> {
    params
        .number("id")?
        .ok_or_else(|| Error::not_found("no such post"))
}

fn found<T>(post: Option<T>) -> Result<T> {
    post.ok_or_else(|| Error::not_found("no such post"))
}

podhost_sdk::export!(Blog);
