//! Typed tables: rows of a `serde` struct with an id and timestamps, kept
//! per user or per organization, with a change event for every write.
//!
//! ```ignore
//! #[derive(Serialize, Deserialize)]
//! struct Post { title: String, content: String }
//!
//! let posts = Table::<Post>::new("posts")
//!     .column("title", Type::Text)
//!     .column("content", Type::Text)
//!     .scope(Scope::User);
//! posts.migrate()?;                         // in `activate`
//!
//! let mine = posts.of(&req)?;               // the caller's rows only
//! let post = mine.insert(&Post { .. })?;    // Record { id, created_at, updated_at, data }
//! let newest = mine.query().order_by("created_at", true).limit(20).all()?;
//! ```
//!
//! The columns are declared once, next to the struct: the SDK creates the
//! table, adds columns declared later (`ALTER TABLE ... ADD COLUMN`) and
//! the indexes. Each row also has `id` (an integer, growing), `created_at`
//! and `updated_at` (milliseconds since the epoch) and the scope it belongs
//! to. Every write publishes `{"table", "op": "create" | "update" |
//! "delete", "row"}` as event `table:<name>` to the object's event stream
//! (SSE) and to its sockets tagged `table:<name>` (or all of its sockets,
//! see [`Table::notify_all_sockets`]); like any output, only once the
//! event commits.

mod change;
mod query;
mod schema;

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Map;

pub use query::Query;
pub use schema::Type;

use crate::caller::Caller;
use crate::sql::{self, Value};
use crate::{Error, Request, Result, StatusCode};
use schema::Column;

/// Whose rows a table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One set of rows for the object, whoever calls.
    Object,
    /// Each signed-in user's own rows (`/me` or `/orgs` callers).
    User,
    /// The rows of the organization the caller works in (`/orgs` callers):
    /// a member of org A never sees org B's rows.
    Org,
}

/// A row with its id and timestamps. It serializes flat:
/// `{"id", "created_at", "updated_at", ...the struct's fields}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record<T> {
    pub id: i64,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(flatten)]
    pub data: T,
}

/// A table of `T`, declared once. See the [module](self) docs.
pub struct Table<T> {
    name: String,
    columns: Vec<Column>,
    indexes: Vec<Vec<String>>,
    scope: Scope,
    all_sockets: bool,
    rows: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Table<T> {
    /// A table named `name` (letters, digits and `_`, at most 58 bytes),
    /// scoped to the object until [`scope`](Self::scope) says otherwise.
    pub fn new(name: &str) -> Self {
        Table {
            name: name.to_string(),
            columns: Vec::new(),
            indexes: Vec::new(),
            scope: Scope::Object,
            all_sockets: false,
            rows: PhantomData,
        }
    }

    /// A required field of `T` stored as a column of type `ty`.
    pub fn column(mut self, name: &str, ty: Type) -> Self {
        self.columns.push(Column::new(name, ty, false));
        self
    }

    /// An optional field of `T` (an `Option`), NULL when absent.
    pub fn optional(mut self, name: &str, ty: Type) -> Self {
        self.columns.push(Column::new(name, ty, true));
        self
    }

    /// An index on `columns` (within the scope) for queries that filter or
    /// sort by them.
    pub fn index(mut self, columns: &[&str]) -> Self {
        self.indexes
            .push(columns.iter().map(|column| column.to_string()).collect());
        self
    }

    pub fn scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// Sends changes to every socket of the object instead of those tagged
    /// `table:<name>`.
    pub fn notify_all_sockets(mut self) -> Self {
        self.all_sockets = true;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The change event's name and socket tag: `table:<name>`.
    pub fn topic(&self) -> String {
        format!("table:{}", self.name)
    }

    /// Creates the table and its indexes, and adds the columns declared
    /// since it was created. Call it in `activate`; it is cheap when
    /// nothing changed.
    pub fn migrate(&self) -> Result<()> {
        let existing: Vec<String> = sql::query(
            "SELECT name FROM pragma_table_info(?)",
            (self.name.as_str(),),
        )?;
        for statement in schema::migration(&self.name, &self.columns, &self.indexes, &existing)? {
            sql::execute(&statement, ())?;
        }
        Ok(())
    }

    /// The rows the caller of `request` may see and write: theirs, their
    /// organization's, or the object's (see [`Scope`]).
    pub fn of(&self, request: &Request) -> Result<Rows<'_, T>> {
        self.for_caller(request.caller())
    }

    /// [`of`](Self::of) for a caller (a socket's, say).
    pub fn for_caller(&self, caller: Option<&Caller>) -> Result<Rows<'_, T>> {
        let scope = match (self.scope, caller) {
            (Scope::Object, _) => String::new(),
            (Scope::User, Some(Caller::User(user))) => user.id.clone(),
            (Scope::User, Some(Caller::Member(member))) => member.user.id.clone(),
            (Scope::Org, Some(Caller::Member(member))) => member.org.clone(),
            // The operator sees the rows of the object's own user or org,
            // which names it.
            (Scope::User | Scope::Org, Some(Caller::Admin)) => crate::context::this_object().name,
            (Scope::User, _) => {
                return Err(Error::new(
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "table {} holds users' rows: this needs a signed-in user",
                        self.name
                    ),
                ));
            }
            (Scope::Org, _) => {
                return Err(Error::forbidden(format!(
                    "table {} holds an organization's rows: reach it through /orgs/{{org}}",
                    self.name
                )));
            }
        };
        Ok(self.in_scope(scope))
    }

    /// The rows of one scope by its value (a user or org id; empty for
    /// [`Scope::Object`]), for code that knows it already.
    pub fn in_scope(&self, scope: impl Into<String>) -> Rows<'_, T> {
        Rows {
            table: self,
            scope: scope.into(),
        }
    }

    fn declared(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|column| column.name == name)
    }

    /// `id, created_at, updated_at, "a", "b"`: what every read selects.
    fn select_list(&self) -> String {
        let mut list = String::from("id, created_at, updated_at");
        for column in &self.columns {
            list.push_str(", ");
            list.push_str(&schema::quote(&column.name));
        }
        list
    }

    fn decode(&self, rows: &sql::Rows) -> Result<Vec<Record<T>>> {
        rows.iter()
            .map(|row| {
                let values = row.values();
                let number = |index: usize| match values.get(index) {
                    Some(Value::Integer(i)) => Ok(*i),
                    _ => Err(Error::internal(format!(
                        "table {}: a row without its id or timestamps",
                        self.name
                    ))),
                };
                let mut fields = Map::new();
                for (column, value) in self.columns.iter().zip(values.iter().skip(3)) {
                    fields.insert(column.name.clone(), column.ty.to_json(value));
                }
                let data = serde_path_to_error::deserialize(serde_json::Value::Object(fields))
                    .map_err(|e| {
                        Error::internal(format!(
                            "table {}: cannot decode column `{}`: {}",
                            self.name,
                            e.path(),
                            e.inner()
                        ))
                    })?;
                Ok(Record {
                    id: number(0)?,
                    created_at: number(1)?,
                    updated_at: number(2)?,
                    data,
                })
            })
            .collect()
    }
}

/// The rows of a table in one scope: what a caller may read and write.
pub struct Rows<'t, T> {
    table: &'t Table<T>,
    scope: String,
}

impl<'t, T: Serialize + DeserializeOwned> Rows<'t, T> {
    /// Stores `value` as a new row and announces it (`op: "create"`).
    pub fn insert(&self, value: &T) -> Result<Record<T>> {
        let fields = schema::object_of(value)?;
        let now = crate::time::now_ms();
        let mut names = vec!["scope", "created_at", "updated_at"];
        let mut params = vec![
            Value::Text(self.scope.clone()),
            Value::Integer(now),
            Value::Integer(now),
        ];
        let quoted: Vec<String> = self
            .table
            .columns
            .iter()
            .map(|column| schema::quote(&column.name))
            .collect();
        for (column, name) in self.table.columns.iter().zip(&quoted) {
            names.push(name);
            params.push(column.to_sql(fields.get(&column.name))?);
        }
        let placeholders = vec!["?"; names.len()].join(", ");
        let statement = format!(
            "INSERT INTO {} ({}) VALUES ({placeholders})",
            schema::quote(&self.table.name),
            names.join(", ")
        );
        let id = sql::exec(&statement, params)?.last_insert_rowid();
        let record = self
            .get(id)?
            .ok_or_else(|| Error::internal("an inserted row is gone"))?;
        change::announce(self.table, "create", &record)?;
        Ok(record)
    }

    /// The row `id`, if it exists in this scope.
    pub fn get(&self, id: i64) -> Result<Option<Record<T>>> {
        Ok(self.query().where_eq("id", id).limit(1).all()?.pop())
    }

    /// Sets the fields in `patch` (a struct or JSON object holding some of
    /// `T`'s fields) on row `id` and announces it (`op: "update"`). `None`
    /// if the row is not in this scope. A field that is not a column, or
    /// has the wrong type, is a 400 naming it.
    pub fn update(&self, id: i64, patch: &impl Serialize) -> Result<Option<Record<T>>> {
        let fields = schema::object_of(patch)?;
        let mut sets = vec!["updated_at = ?".to_string()];
        let mut params = vec![Value::Integer(crate::time::now_ms())];
        for (name, value) in &fields {
            let column = self.table.declared(name).ok_or_else(|| {
                Error::bad_request(format!("`{name}` is not a field of {}", self.table.name))
            })?;
            sets.push(format!("{} = ?", schema::quote(name)));
            params.push(column.to_sql(Some(value))?);
        }
        params.push(Value::Integer(id));
        params.push(Value::Text(self.scope.clone()));
        let statement = format!(
            "UPDATE {} SET {} WHERE id = ? AND scope = ?",
            schema::quote(&self.table.name),
            sets.join(", ")
        );
        if sql::execute(&statement, params)? == 0 {
            return Ok(None);
        }
        let record = self
            .get(id)?
            .ok_or_else(|| Error::internal("an updated row is gone"))?;
        change::announce(self.table, "update", &record)?;
        Ok(Some(record))
    }

    /// Deletes row `id` and announces it (`op: "delete"`, with the row as
    /// it was). `None` if the row is not in this scope.
    pub fn delete(&self, id: i64) -> Result<Option<Record<T>>> {
        let Some(record) = self.get(id)? else {
            return Ok(None);
        };
        sql::execute(
            &format!(
                "DELETE FROM {} WHERE id = ? AND scope = ?",
                schema::quote(&self.table.name)
            ),
            (id, self.scope.as_str()),
        )?;
        change::announce(self.table, "delete", &record)?;
        Ok(Some(record))
    }

    /// A query over this scope's rows.
    pub fn query(&self) -> Query<'t, T> {
        Query::new(self.table, self.scope.clone())
    }
}
