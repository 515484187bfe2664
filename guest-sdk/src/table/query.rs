//! The query builder of a table's rows in one scope.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Record, Table, schema};
use crate::sql::{self, Value};
use crate::{Error, Result};

/// Rows of one scope, filtered, sorted and paged:
///
/// ```ignore
/// let page = tasks.query()
///     .where_eq("project_id", 3)
///     .order_by("created_at", true)     // newest first
///     .after(last_id_seen)              // the next page
///     .limit(50)
///     .all()?;
/// ```
///
/// Rows that sort alike are ordered by id (the same way round), so pages
/// neither repeat nor skip rows. A cursor is the id of the last row of the
/// previous page; if that row was deleted meanwhile the page is empty.
pub struct Query<'t, T> {
    table: &'t Table<T>,
    scope: String,
    filters: Vec<(String, Value)>,
    order: Option<(String, bool)>,
    limit: Option<u32>,
    after: Option<i64>,
}

impl<'t, T: Serialize + DeserializeOwned> Query<'t, T> {
    pub(super) fn new(table: &'t Table<T>, scope: String) -> Self {
        Query {
            table,
            scope,
            filters: Vec::new(),
            order: None,
            limit: None,
            after: None,
        }
    }

    /// Only rows whose `column` equals `value` (NULL matches NULL).
    pub fn where_eq(mut self, column: &str, value: impl Into<Value>) -> Self {
        self.filters.push((column.to_string(), value.into()));
        self
    }

    /// Sorts by `column`, descending if `desc` (by id, ascending, if never
    /// called).
    pub fn order_by(mut self, column: &str, desc: bool) -> Self {
        self.order = Some((column.to_string(), desc));
        self
    }

    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The rows after the row with id `cursor` in this order.
    pub fn after(mut self, cursor: i64) -> Self {
        self.after = Some(cursor);
        self
    }

    /// Every matching row.
    pub fn all(self) -> Result<Vec<Record<T>>> {
        let (statement, params) = self.sql()?;
        self.table.decode(&sql::exec(&statement, params)?)
    }

    /// At most `limit` rows, and the cursor for the rows after them
    /// (`None` when there are no more): pass it to [`after`](Self::after)
    /// for the next page.
    pub fn page(self, limit: u32) -> Result<(Vec<Record<T>>, Option<i64>)> {
        let mut rows = self.limit(limit.saturating_add(1)).all()?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = if more {
            rows.last().map(|row| row.id)
        } else {
            None
        };
        Ok((rows, next))
    }

    /// The first matching row.
    pub fn first(self) -> Result<Option<Record<T>>> {
        Ok(self.limit(1).all()?.pop())
    }

    /// The statement and its parameters.
    fn sql(&self) -> Result<(String, Vec<Value>)> {
        let table = self.table;
        let known = |column: &str| {
            if ["id", "created_at", "updated_at"].contains(&column)
                || table.declared(column).is_some()
            {
                Ok(schema::quote(column))
            } else {
                Err(Error::bad_request(format!(
                    "table {} has no column `{column}`",
                    table.name
                )))
            }
        };
        let quoted_table = schema::quote(&table.name);
        let mut statement = format!(
            "SELECT {} FROM {quoted_table} WHERE scope = ?",
            table.select_list()
        );
        let mut params = vec![Value::Text(self.scope.clone())];
        for (column, value) in &self.filters {
            let column = known(column)?;
            if matches!(value, Value::Null) {
                statement.push_str(&format!(" AND {column} IS NULL"));
            } else {
                statement.push_str(&format!(" AND {column} = ?"));
                params.push(value.clone());
            }
        }
        let (order, desc) = match &self.order {
            Some((column, desc)) => (known(column)?, *desc),
            None => (schema::quote("id"), false),
        };
        let (direction, beyond) = if desc { ("DESC", "<") } else { ("ASC", ">") };
        let by_id = order == schema::quote("id");
        if let Some(cursor) = self.after {
            if by_id {
                statement.push_str(&format!(" AND id {beyond} ?"));
            } else {
                statement.push_str(&format!(
                    " AND ({order}, id) {beyond} (SELECT {order}, id FROM {quoted_table} WHERE id = ? AND scope = ?)"
                ));
                params.push(Value::Integer(cursor));
                params.push(Value::Text(self.scope.clone()));
                return Ok(finish(
                    statement, params, &order, direction, by_id, self.limit,
                ));
            }
            params.push(Value::Integer(cursor));
        }
        Ok(finish(
            statement, params, &order, direction, by_id, self.limit,
        ))
    }
}

fn finish(
    mut statement: String,
    mut params: Vec<Value>,
    order: &str,
    direction: &str,
    by_id: bool,
    limit: Option<u32>,
) -> (String, Vec<Value>) {
    if by_id {
        statement.push_str(&format!(" ORDER BY id {direction}"));
    } else {
        statement.push_str(&format!(" ORDER BY {order} {direction}, id {direction}"));
    }
    if let Some(limit) = limit {
        statement.push_str(" LIMIT ?");
        params.push(Value::Integer(limit.into()));
    }
    (statement, params)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::super::{Scope, Table, Type};
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Task {
        title: String,
        done: bool,
    }

    fn table() -> Table<Task> {
        Table::new("tasks")
            .column("title", Type::Text)
            .column("done", Type::Bool)
            .scope(Scope::Org)
    }

    fn texts(params: &[Value]) -> Vec<String> {
        params
            .iter()
            .map(|value| match value {
                Value::Null => "NULL".to_string(),
                Value::Integer(i) => i.to_string(),
                Value::Real(f) => f.to_string(),
                Value::Text(s) => format!("'{s}'"),
                Value::Blob(_) => "blob".to_string(),
            })
            .collect()
    }

    const SELECT: &str =
        "SELECT id, created_at, updated_at, \"title\", \"done\" FROM \"tasks\" WHERE scope = ?";

    #[test]
    fn a_plain_query_is_the_scope_by_id() {
        let table = table();
        let rows = table.in_scope("o_1");
        let (statement, params) = rows.query().sql().expect("valid");
        assert_eq!(statement, format!("{SELECT} ORDER BY id ASC"));
        assert_eq!(texts(&params), ["'o_1'"]);
    }

    #[test]
    fn filters_order_limit_and_cursor() {
        let table = table();
        let rows = table.in_scope("o_1");
        let query = rows
            .query()
            .where_eq("done", true)
            .where_eq("title", None::<String>)
            .order_by("created_at", true)
            .after(7)
            .limit(20);
        let (statement, params) = query.sql().expect("valid");
        assert_eq!(
            statement,
            format!(
                "{SELECT} AND \"done\" = ? AND \"title\" IS NULL AND (\"created_at\", id) < \
                 (SELECT \"created_at\", id FROM \"tasks\" WHERE id = ? AND scope = ?) \
                 ORDER BY \"created_at\" DESC, id DESC LIMIT ?"
            )
        );
        assert_eq!(texts(&params), ["'o_1'", "1", "7", "'o_1'", "20"]);
    }

    #[test]
    fn a_cursor_by_id() {
        let table = table();
        let rows = table.in_scope("o_1");
        let (statement, params) = rows
            .query()
            .order_by("id", false)
            .after(3)
            .sql()
            .expect("valid");
        assert_eq!(statement, format!("{SELECT} AND id > ? ORDER BY id ASC"));
        assert_eq!(texts(&params), ["'o_1'", "3"]);
    }

    #[test]
    fn unknown_columns_are_a_400_naming_them() {
        let table = table();
        let rows = table.in_scope("o_1");
        let err = rows
            .query()
            .order_by("x\" --", true)
            .sql()
            .expect_err("unknown");
        assert_eq!(err.status(), crate::StatusCode::BAD_REQUEST);
        assert!(err.message().contains("x\" --"), "{}", err.message());
        assert!(rows.query().where_eq("scope", "o_2").sql().is_err());
    }
}
