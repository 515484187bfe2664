//! A team's projects and tasks, one object per organization at
//! `/orgs/{org}/team` (`access = "org"`): members read and write, people
//! outside the organization get 404 from the host, and only owners and
//! admins may delete a project. Both tables are org-scoped: every row
//! carries its organization and reads are filtered by the caller's.
//!
//! Routes below `/orgs/{org}/team`:
//!
//! - `POST /projects {"name"}`: `201 {"project": {...}}`.
//! - `GET /projects[?limit=N&after=ID]`: `{"projects": [...]}`, newest
//!   first, up to 1000 at a time; when there are more, `"next"` is the
//!   cursor of the next page.
//! - `GET /projects/{id}`: `{"project", "tasks"}`; `PUT /projects/{id}
//!   {"name"}`: `{"project"}`.
//! - `DELETE /projects/{id}` (owner or admin; a member gets 403): deletes
//!   the project and its tasks, `{"deleted": true, "project", "tasks_deleted"}`.
//! - `POST /tasks {"project_id", "title", "done"?}`: `201 {"task": {...}}`;
//!   a `project_id` that names no project of the organization is a 400.
//! - `GET /tasks[?project_id=ID&limit=N&after=ID]`: `{"tasks": [...]}`,
//!   newest first, paged as projects are.
//! - `GET /tasks/{id}`, `PUT /tasks/{id} {"title"?, "done"?,
//!   "project_id"?}`, `DELETE /tasks/{id}`: `{"task": {...}}`.
//! - `GET /_events` (SSE) and a WebSocket on `/ws`: changes as events
//!   `table:projects` and `table:tasks`, `{"table", "op", "row"}`.

use std::sync::LazyLock;

use podhost_sdk::caller::{Caller, Role};
use podhost_sdk::sockets::{self, Accept, Socket};
use podhost_sdk::table::Query;
use podhost_sdk::{
    Error, Object, Params, Record, Request, Response, Result, Router, Scope, StatusCode, Table,
    Type,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

const MAX_PAGE: u32 = 1000;

struct Team {
    projects: Table<Project>,
    tasks: Table<Task>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Project {
    #[serde(alias = "title")]
    name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Task {
    project_id: i64,
    title: String,
    done: bool,
}

/// `POST /tasks`: `done` is optional, and the project may be named by
/// `project_id` or `project`, as a number or a numeric string.
#[derive(Deserialize)]
struct NewTask {
    #[serde(alias = "project")]
    project_id: Id,
    title: String,
    #[serde(default)]
    done: bool,
}

#[derive(Serialize, Deserialize)]
struct TaskPatch {
    #[serde(default, alias = "project", skip_serializing_if = "Option::is_none")]
    project_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    done: Option<bool>,
}

/// An id sent as `3` or `"3"`.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(try_from = "IdForm", into = "i64")]
struct Id(i64);

#[derive(Deserialize)]
#[serde(untagged)]
enum IdForm {
    Number(i64),
    Text(String),
}

impl TryFrom<IdForm> for Id {
    type Error = String;

    fn try_from(form: IdForm) -> std::result::Result<Self, String> {
        match form {
            IdForm::Number(id) => Ok(Id(id)),
            IdForm::Text(text) => text
                .parse()
                .map(Id)
                .map_err(|_| format!("{text:?} is not an id")),
        }
    }
}

impl From<Id> for i64 {
    fn from(id: Id) -> i64 {
        id.0
    }
}

static ROUTES: LazyLock<Router<Team>> = LazyLock::new(|| {
    Router::<Team>::new()
        .post("/projects", |team, req, _| {
            let project: Project = req.json()?;
            let project = team.projects.of(&req)?.insert(&project)?;
            Ok(created(json!({ "project": project })))
        })
        .get("/projects", |team, req, _| {
            let query = team.projects.of(&req)?.query().order_by("created_at", true);
            let (projects, next) = page(&req, query)?;
            Ok(listed("projects", projects, next))
        })
        .get("/projects/:id", |team, req, params| {
            let project = team.project(&req, id(params, "project")?)?;
            let tasks = team
                .tasks
                .of(&req)?
                .query()
                .where_eq("project_id", project.id)
                .order_by("created_at", true)
                .all()?;
            Ok(Response::json(
                &json!({ "project": project, "tasks": tasks }),
            ))
        })
        .put("/projects/:id", |team, req, params| {
            let project: Project = req.json()?;
            let project = team
                .projects
                .of(&req)?
                .update(id(params, "project")?, &project)?;
            found(project, "project").map(|project| Response::json(&json!({ "project": project })))
        })
        .delete("/projects/:id", |team, req, params| {
            team.delete_project(&req, params)
        })
        .post("/tasks", |team, req, _| {
            let new: NewTask = req.json()?;
            team.project_named(&req, new.project_id)?;
            let task = Task {
                project_id: new.project_id.0,
                title: new.title,
                done: new.done,
            };
            let task = team.tasks.of(&req)?.insert(&task)?;
            Ok(created(json!({ "task": task })))
        })
        .get("/tasks", |team, req, _| {
            let mut query = team.tasks.of(&req)?.query().order_by("created_at", true);
            if let Some(project) = req.query_param("project_id") {
                let project: i64 = project
                    .parse()
                    .map_err(|_| Error::bad_request("`project_id` must be a project id"))?;
                query = query.where_eq("project_id", project);
            }
            let (tasks, next) = page(&req, query)?;
            Ok(listed("tasks", tasks, next))
        })
        .get("/tasks/:id", |team, req, params| {
            let task = team.tasks.of(&req)?.get(id(params, "task")?)?;
            found(task, "task").map(|task| Response::json(&json!({ "task": task })))
        })
        .put("/tasks/:id", |team, req, params| {
            let patch: TaskPatch = req.json()?;
            if let Some(project) = patch.project_id {
                team.project_named(&req, project)?;
            }
            let task = team.tasks.of(&req)?.update(id(params, "task")?, &patch)?;
            found(task, "task").map(|task| Response::json(&json!({ "task": task })))
        })
        .delete("/tasks/:id", |team, req, params| {
            let task = team.tasks.of(&req)?.delete(id(params, "task")?)?;
            found(task, "task")
                .map(|task| Response::json(&json!({ "deleted": true, "task": task })))
        })
});

impl Object for Team {
    fn activate() -> Result<Self> {
        let projects = Table::<Project>::new("projects")
            .column("name", Type::Text)
            .scope(Scope::Org);
        let tasks = Table::<Task>::new("tasks")
            .column("project_id", Type::Integer)
            .column("title", Type::Text)
            .column("done", Type::Bool)
            .index(&["project_id"])
            .scope(Scope::Org);
        projects.migrate()?;
        tasks.migrate()?;
        Ok(Team { projects, tasks })
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        ROUTES.handle(self, req)
    }

    /// `/ws`: a live feed of the organization's projects and tasks.
    fn socket_open(&mut self, _socket: Socket, req: Request) -> Result<Accept> {
        if req.segments().as_slice() != ["ws"] {
            return Err(Error::not_found("WebSockets open on /ws"));
        }
        // Only the organization's members (or the operator) get a feed.
        self.projects.of(&req)?;
        sockets::set_auto_response(Some(("ping", "pong")));
        Ok(Accept::new()
            .tag(self.projects.topic())
            .tag(self.tasks.topic()))
    }
}

impl Team {
    fn project(&self, req: &Request, id: i64) -> Result<Record<Project>> {
        found(self.projects.of(req)?.get(id)?, "project")
    }

    /// The project a task names; a 400 naming the field if there is none.
    fn project_named(&self, req: &Request, id: Id) -> Result<()> {
        match self.projects.of(req)?.get(id.0)? {
            Some(_) => Ok(()),
            None => Err(Error::bad_request(format!(
                "`project_id`: there is no project {} in this organization",
                id.0
            ))),
        }
    }

    fn delete_project(&mut self, req: &Request, params: &Params) -> Result<Response> {
        let may_delete = match req.caller() {
            Some(Caller::Member(member)) => matches!(member.role, Role::Owner | Role::Admin),
            Some(Caller::Admin) => true,
            _ => false,
        };
        let id = id(params, "project")?;
        // A member learns whether the project exists only if they may see
        // it anyway: check existence first, then the role.
        self.project(req, id)?;
        if !may_delete {
            return Err(
                Error::forbidden("only an owner or admin may delete a project")
                    .with_code("role_too_low"),
            );
        }
        let tasks = self.tasks.of(req)?;
        let doomed = tasks.query().where_eq("project_id", id).all()?;
        for task in &doomed {
            tasks.delete(task.id)?;
        }
        let project = found(self.projects.of(req)?.delete(id)?, "project")?;
        Ok(Response::json(&json!({
            "deleted": true,
            "project": project,
            "tasks_deleted": doomed.len(),
        })))
    }
}

/// One page of a list: `?limit=` (1 to 1000, 1000 by default) rows after
/// `?after=` (the `next` of the previous page).
fn page<T: Serialize + serde::de::DeserializeOwned>(
    req: &Request,
    mut query: Query<'_, T>,
) -> Result<(Vec<Record<T>>, Option<i64>)> {
    let number = |name: &str| {
        req.query_param(name)
            .map(|value| {
                value
                    .parse::<i64>()
                    .map_err(|_| Error::bad_request(format!("`{name}` must be a number")))
            })
            .transpose()
    };
    if let Some(after) = number("after")? {
        query = query.after(after);
    }
    let limit = match number("limit")? {
        None => MAX_PAGE,
        Some(limit) => u32::try_from(limit)
            .ok()
            .filter(|limit| (1..=MAX_PAGE).contains(limit))
            .ok_or_else(|| Error::bad_request(format!("`limit` must be 1 to {MAX_PAGE}")))?,
    };
    query.page(limit)
}

/// `{"<name>": [...]}`, with `"next"` when there are more.
fn listed<T: Serialize>(name: &str, rows: Vec<Record<T>>, next: Option<i64>) -> Response {
    let mut body = json!({ name: rows });
    if let Some(next) = next {
        body["next"] = next.into();
    }
    Response::json(&body)
}

fn created(body: serde_json::Value) -> Response {
    Response::json(&body).with_status(StatusCode::CREATED)
}

/// The `{id}` of the path; anything but a number names nothing.
fn id(params: &Params, what: &str) -> Result<i64> {
    params
        .number("id")?
        .ok_or_else(|| Error::not_found(format!("no such {what}")))
}

fn found<T>(row: Option<T>, what: &str) -> Result<T> {
    row.ok_or_else(|| Error::not_found(format!("no such {what}")))
}

podhost_sdk::export!(Team);
