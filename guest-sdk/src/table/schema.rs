//! A table's columns as declared, the SQL that creates and migrates it,
//! and the conversions between a field's JSON and its column.

use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::sql::Value;
use crate::{Error, Result};

/// Names every table has, which a declared column cannot take.
const RESERVED: [&str; 4] = ["id", "scope", "created_at", "updated_at"];
/// `table:` plus the name must fit an event name (64 bytes).
const MAX_NAME_BYTES: usize = 58;

/// How a field is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// A string.
    Text,
    /// An integer (`i64` or smaller).
    Integer,
    /// A floating-point number.
    Real,
    /// A `bool`, stored as 0 or 1.
    Bool,
    /// Any JSON value (a nested struct, a list, `serde_json::Value`),
    /// stored as its text.
    Json,
}

#[derive(Debug, Clone)]
pub(super) struct Column {
    pub name: String,
    pub ty: Type,
    pub nullable: bool,
}

impl Type {
    fn sql(self) -> &'static str {
        match self {
            Type::Text | Type::Json => "TEXT",
            Type::Integer | Type::Bool => "INTEGER",
            Type::Real => "REAL",
        }
    }

    /// What rows written before the column existed hold.
    fn default(self) -> &'static str {
        match self {
            Type::Text => "''",
            Type::Integer | Type::Bool | Type::Real => "0",
            Type::Json => "'null'",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Type::Text => "a string",
            Type::Integer => "an integer",
            Type::Real => "a number",
            Type::Bool => "true or false",
            Type::Json => "JSON",
        }
    }

    /// The stored value as the JSON the field deserializes from.
    pub(super) fn to_json(self, value: &Value) -> Json {
        match (self, value) {
            (_, Value::Null) => Json::Null,
            (Type::Bool, Value::Integer(i)) => Json::Bool(*i != 0),
            (Type::Json, Value::Text(text)) => {
                serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.clone()))
            }
            (_, Value::Integer(i)) => Json::from(*i),
            (_, Value::Real(f)) => {
                serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number)
            }
            (_, Value::Text(text)) => Json::String(text.clone()),
            (_, Value::Blob(bytes)) => Json::from(bytes.clone()),
        }
    }
}

impl Column {
    pub(super) fn new(name: &str, ty: Type, nullable: bool) -> Self {
        Column {
            name: name.to_string(),
            ty,
            nullable,
        }
    }

    /// The field's JSON as the column's value; a 400 naming the field if
    /// it has another type.
    pub(super) fn to_sql(&self, value: Option<&Json>) -> Result<Value> {
        let wrong =
            || Error::bad_request(format!("`{}` must be {}", self.name, self.ty.expected()));
        match (self.ty, value) {
            (_, None | Some(Json::Null)) if self.nullable => Ok(Value::Null),
            (Type::Json, Some(json)) => Ok(Value::Text(json.to_string())),
            (_, None | Some(Json::Null)) => Err(Error::bad_request(format!(
                "`{}` is required: {}",
                self.name,
                self.ty.expected()
            ))),
            (Type::Text, Some(Json::String(text))) => Ok(Value::Text(text.clone())),
            (Type::Integer, Some(Json::Number(n))) => {
                n.as_i64().map(Value::Integer).ok_or_else(wrong)
            }
            (Type::Real, Some(Json::Number(n))) => n.as_f64().map(Value::Real).ok_or_else(wrong),
            (Type::Bool, Some(Json::Bool(b))) => Ok(Value::Integer((*b).into())),
            _ => Err(wrong()),
        }
    }
}

/// `value` serialized as a JSON object (a struct, a map).
pub(super) fn object_of(value: &impl Serialize) -> Result<Map<String, Json>> {
    match serde_json::to_value(value)? {
        Json::Object(fields) => Ok(fields),
        other => Err(Error::bad_request(format!(
            "expected an object of fields, not {other}"
        ))),
    }
}

/// A checked name, quoted for SQL.
pub(super) fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

fn check_name(what: &str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_NAME_BYTES
        && !name.starts_with("_podhost");
    if valid {
        Ok(())
    } else {
        Err(Error::internal(format!(
            "{what} {name:?}: names are letters, digits and _, at most {MAX_NAME_BYTES} bytes"
        )))
    }
}

/// The statements that bring table `name` from the columns it has
/// (`existing`, empty if it does not exist) to the declared ones.
pub(super) fn migration(
    name: &str,
    columns: &[Column],
    indexes: &[Vec<String>],
    existing: &[String],
) -> Result<Vec<String>> {
    check_name("table", name)?;
    for column in columns {
        check_name("column", &column.name)?;
        if RESERVED.contains(&column.name.as_str()) {
            return Err(Error::internal(format!(
                "table {name}: every row has a column {:?} already",
                column.name
            )));
        }
    }
    let table = quote(name);
    let definition = |column: &Column, with_default: bool| {
        let mut sql = format!("{} {}", quote(&column.name), column.ty.sql());
        if !column.nullable {
            sql.push_str(" NOT NULL");
            if with_default {
                sql.push_str(" DEFAULT ");
                sql.push_str(column.ty.default());
            }
        }
        sql
    };
    let mut statements = Vec::new();
    if existing.is_empty() {
        let mut sql = format!(
            "CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY AUTOINCREMENT, \
             scope TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL"
        );
        for column in columns {
            sql.push_str(", ");
            sql.push_str(&definition(column, false));
        }
        sql.push(')');
        statements.push(sql);
    } else {
        for column in columns {
            if !existing.contains(&column.name) {
                statements.push(format!(
                    "ALTER TABLE {table} ADD COLUMN {}",
                    definition(column, true)
                ));
            }
        }
    }
    let mut all = vec![vec!["created_at".to_string()]];
    all.extend(indexes.iter().cloned());
    for index in &all {
        for column in index {
            check_name("index column", column)?;
        }
        let index_name = format!("{name}_by_{}", index.join("_"));
        let list: Vec<String> = index.iter().map(|column| quote(column)).collect();
        statements.push(format!(
            "CREATE INDEX IF NOT EXISTS {} ON {table} (scope, {})",
            quote(&index_name),
            list.join(", ")
        ));
    }
    Ok(statements)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<Column> {
        vec![
            Column::new("title", Type::Text, false),
            Column::new("done", Type::Bool, false),
            Column::new("due", Type::Integer, true),
        ]
    }

    #[test]
    fn a_new_table_is_created_with_its_indexes() {
        let statements =
            migration("tasks", &columns(), &[vec!["done".into()]], &[]).expect("valid");
        assert_eq!(
            statements,
            [
                "CREATE TABLE IF NOT EXISTS \"tasks\" (id INTEGER PRIMARY KEY AUTOINCREMENT, \
                 scope TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, \
                 \"title\" TEXT NOT NULL, \"done\" INTEGER NOT NULL, \"due\" INTEGER)",
                "CREATE INDEX IF NOT EXISTS \"tasks_by_created_at\" ON \"tasks\" (scope, \"created_at\")",
                "CREATE INDEX IF NOT EXISTS \"tasks_by_done\" ON \"tasks\" (scope, \"done\")",
            ]
        );
    }

    #[test]
    fn columns_declared_later_are_added_with_a_default() {
        let existing: Vec<String> = ["id", "scope", "created_at", "updated_at", "title"]
            .map(String::from)
            .to_vec();
        let statements = migration("tasks", &columns(), &[], &existing).expect("valid");
        assert_eq!(
            &statements[..2],
            [
                "ALTER TABLE \"tasks\" ADD COLUMN \"done\" INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE \"tasks\" ADD COLUMN \"due\" INTEGER",
            ]
        );
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(migration("bad name", &[], &[], &[]).is_err());
        assert!(migration("_podhost_kv", &[], &[], &[]).is_err());
        let reserved = [Column::new("id", Type::Text, false)];
        assert!(migration("t", &reserved, &[], &[]).is_err());
        let quote = [Column::new("a\"b", Type::Text, false)];
        assert!(migration("t", &quote, &[], &[]).is_err());
        assert!(migration("t", &[], &[vec!["x; DROP".into()]], &[]).is_err());
    }

    #[test]
    fn a_field_of_the_wrong_type_is_a_400_naming_it() {
        let title = Column::new("title", Type::Text, false);
        let err = title
            .to_sql(Some(&Json::from(5)))
            .expect_err("not a string");
        assert_eq!(err.status(), crate::StatusCode::BAD_REQUEST);
        assert!(err.message().contains("`title`"), "{}", err.message());
        assert!(title.to_sql(None).is_err());
        let done = Column::new("done", Type::Bool, false);
        assert!(matches!(
            done.to_sql(Some(&Json::Bool(true))),
            Ok(Value::Integer(1))
        ));
        let due = Column::new("due", Type::Integer, true);
        assert!(matches!(due.to_sql(None), Ok(Value::Null)));
        assert_eq!(Type::Bool.to_json(&Value::Integer(0)), Json::Bool(false));
        assert_eq!(
            Type::Json.to_json(&Value::Text("[1]".into())),
            serde_json::json!([1])
        );
    }
}
