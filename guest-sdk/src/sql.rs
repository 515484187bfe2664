//! The object's SQLite database.
//!
//! ```ignore
//! sql::execute("INSERT INTO posts (title, body) VALUES (?, ?)", (title, body))?;
//! let titles: Vec<String> = sql::query("SELECT title FROM posts ORDER BY id", ())?;
//! let (id, title): (i64, String) = sql::query_one("SELECT id, title FROM posts WHERE id = ?", (7,))?
//!     .ok_or_else(|| Error::not_found("no post 7"))?;
//! ```
//!
//! Statements run inside the current event's transaction.

use serde::de::DeserializeOwned;

use crate::bindings::podhost::object::sql as wit;

mod decode;
use crate::{StorageError, StorageErrorCode};

pub use wit::Value;

/// The rows and counters a statement returned.
#[derive(Debug, Clone)]
pub struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
    rows_written: u64,
    last_insert_rowid: i64,
}

/// One row of [`Rows`].
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl Rows {
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|values| Row {
            columns: &self.columns,
            values,
        })
    }

    /// Rows inserted, updated or deleted by the statement.
    pub fn rows_written(&self) -> u64 {
        self.rows_written
    }

    pub fn last_insert_rowid(&self) -> i64 {
        self.last_insert_rowid
    }

    /// Every row converted with [`FromRow`].
    pub fn decode<T: FromRow>(&self) -> Result<Vec<T>, StorageError> {
        self.iter().map(|row| T::from_row(&row)).collect()
    }
}

impl<'a> Row<'a> {
    pub fn values(&self) -> &'a [Value] {
        self.values
    }

    /// The value at `index`, converted.
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T, StorageError> {
        let value = self.values.get(index).ok_or_else(|| {
            invalid(format!(
                "the row has {} columns, not {}",
                self.values.len(),
                index + 1
            ))
        })?;
        T::from_value(value).map_err(|e| invalid(format!("column {index}: {e}")))
    }

    /// The value of the column named `name`, converted.
    pub fn get_by_name<T: FromValue>(&self, name: &str) -> Result<T, StorageError> {
        let index = self
            .columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| invalid(format!("the row has no column named {name:?}")))?;
        self.get(index)
    }

    /// The row as a JSON object keyed by column name; blobs become arrays
    /// of bytes.
    pub fn to_json(&self) -> serde_json::Value {
        let map = self
            .columns
            .iter()
            .zip(self.values)
            .map(|(column, value)| (column.clone(), value_to_json(value)))
            .collect();
        serde_json::Value::Object(map)
    }

    /// The row deserialized by column name, e.g. into a
    /// `#[derive(Deserialize)]` struct. SQLite integers decode into `bool`
    /// fields (0 is false); an error names the column at fault.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, StorageError> {
        T::deserialize(decode::RowDeserializer::new(self.columns, self.values))
            .map_err(|e| invalid(format!("cannot decode row: {e}")))
    }
}

/// Runs one statement and returns everything it produced.
pub fn exec(query: &str, params: impl Params) -> Result<Rows, StorageError> {
    crate::only_in_podhost();
    let set = wit::exec(query, &params.into_values())?;
    Ok(Rows {
        columns: set.columns,
        rows: set.rows,
        rows_written: set.rows_written,
        last_insert_rowid: set.last_insert_rowid,
    })
}

/// Runs one statement and returns how many rows it wrote.
pub fn execute(query: &str, params: impl Params) -> Result<u64, StorageError> {
    Ok(exec(query, params)?.rows_written)
}

/// Runs a query and converts every row: into a value for one column, a
/// tuple for several.
pub fn query<T: FromRow>(query: &str, params: impl Params) -> Result<Vec<T>, StorageError> {
    exec(query, params)?.decode()
}

/// Runs a query and converts its first row, if any.
pub fn query_one<T: FromRow>(query: &str, params: impl Params) -> Result<Option<T>, StorageError> {
    exec(query, params)?
        .iter()
        .next()
        .map(|row| T::from_row(&row))
        .transpose()
}

/// Runs a query and deserializes every row by column name.
pub fn query_as<T: DeserializeOwned>(
    query: &str,
    params: impl Params,
) -> Result<Vec<T>, StorageError> {
    exec(query, params)?
        .iter()
        .map(|row| row.deserialize())
        .collect()
}

/// Runs several `;`-separated statements without parameters, e.g. a schema.
pub fn script(script: &str) -> Result<(), StorageError> {
    crate::only_in_podhost();
    wit::exec_script(script)
}

/// The database's size in bytes.
pub fn database_size() -> u64 {
    crate::only_in_podhost();
    wit::database_size()
}

fn invalid(message: String) -> StorageError {
    StorageError::new(StorageErrorCode::Invalid, message)
}

fn value_to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => (*i).into(),
        Value::Real(f) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Text(s) => s.clone().into(),
        Value::Blob(b) => b.clone().into(),
    }
}

/// Statement parameters: `()`, a tuple, an array or a `Vec` of values.
pub trait Params {
    fn into_values(self) -> Vec<Value>;
}

impl Params for () {
    fn into_values(self) -> Vec<Value> {
        Vec::new()
    }
}

impl Params for Vec<Value> {
    fn into_values(self) -> Vec<Value> {
        self
    }
}

impl Params for &[Value] {
    fn into_values(self) -> Vec<Value> {
        self.to_vec()
    }
}

impl<T: Into<Value>, const N: usize> Params for [T; N] {
    fn into_values(self) -> Vec<Value> {
        self.into_iter().map(Into::into).collect()
    }
}

macro_rules! tuple_params {
    ($($name:ident $index:tt),+) => {
        impl<$($name: Into<Value>),+> Params for ($($name,)+) {
            fn into_values(self) -> Vec<Value> {
                vec![$(self.$index.into()),+]
            }
        }

        impl<$($name: FromValue),+> FromRow for ($($name,)+) {
            fn from_row(row: &Row<'_>) -> Result<Self, StorageError> {
                Ok(($(row.get::<$name>($index)?,)+))
            }
        }
    };
}

tuple_params!(A 0);
tuple_params!(A 0, B 1);
tuple_params!(A 0, B 1, C 2);
tuple_params!(A 0, B 1, C 2, D 3);
tuple_params!(A 0, B 1, C 2, D 3, E 4);
tuple_params!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_params!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_params!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

macro_rules! into_value {
    ($($ty:ty => |$v:ident| $make:expr),+ $(,)?) => {
        $(impl From<$ty> for Value {
            fn from($v: $ty) -> Self {
                $make
            }
        })+
    };
}

into_value! {
    i64 => |v| Value::Integer(v),
    i32 => |v| Value::Integer(v.into()),
    u32 => |v| Value::Integer(v.into()),
    bool => |v| Value::Integer(v.into()),
    f64 => |v| Value::Real(v),
    String => |v| Value::Text(v),
    &str => |v| Value::Text(v.to_string()),
    &String => |v| Value::Text(v.clone()),
    Vec<u8> => |v| Value::Blob(v),
    &[u8] => |v| Value::Blob(v.to_vec()),
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// A Rust value read from a SQLite value.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Result<Self, String>;
}

/// A Rust value read from a row: any [`FromValue`] (the first column) or a
/// tuple of them (one per column).
pub trait FromRow: Sized {
    fn from_row(row: &Row<'_>) -> Result<Self, StorageError>;
}

macro_rules! from_value {
    ($($ty:ty: $($pat:pat => $out:expr),+;)+) => {
        $(impl FromValue for $ty {
            fn from_value(value: &Value) -> Result<Self, String> {
                match value {
                    $($pat => $out,)+
                    other => Err(format!("expected {}, found {}", stringify!($ty), kind(other))),
                }
            }
        }

        impl FromRow for $ty {
            fn from_row(row: &Row<'_>) -> Result<Self, StorageError> {
                row.get(0)
            }
        })+
    };
}

from_value! {
    i64: Value::Integer(i) => Ok(*i);
    i32: Value::Integer(i) => i32::try_from(*i).map_err(|_| format!("{i} does not fit in i32"));
    u32: Value::Integer(i) => u32::try_from(*i).map_err(|_| format!("{i} does not fit in u32"));
    u64: Value::Integer(i) => u64::try_from(*i).map_err(|_| format!("{i} does not fit in u64"));
    bool: Value::Integer(i) => Ok(*i != 0);
    f64: Value::Real(f) => Ok(*f), Value::Integer(i) => Ok(*i as f64);
    String: Value::Text(s) => Ok(s.clone());
    Vec<u8>: Value::Blob(b) => Ok(b.clone()), Value::Text(s) => Ok(s.clone().into_bytes());
}

impl FromValue for Value {
    fn from_value(value: &Value) -> Result<Self, String> {
        Ok(value.clone())
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

impl<T: FromValue> FromRow for Option<T> {
    fn from_row(row: &Row<'_>) -> Result<Self, StorageError> {
        row.get(0)
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "NULL",
        Value::Integer(_) => "an integer",
        Value::Real(_) => "a real",
        Value::Text(_) => "text",
        Value::Blob(_) => "a blob",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_decode_into_bools_and_errors_name_the_column() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Task {
            done: bool,
            late: Option<bool>,
            note: Option<String>,
            score: f64,
            tags: serde_json::Value,
        }
        let columns: Vec<String> = ["done", "late", "note", "score", "tags", "extra"]
            .map(String::from)
            .to_vec();
        let values = vec![
            Value::Integer(1),
            Value::Integer(0),
            Value::Null,
            Value::Integer(3),
            Value::Text("a".into()),
            Value::Blob(vec![1, 2]),
        ];
        let row = Row {
            columns: &columns,
            values: &values,
        };
        let task: Task = row.deserialize().expect("a task");
        assert_eq!(
            task,
            Task {
                done: true,
                late: Some(false),
                note: None,
                score: 3.0,
                tags: "a".into(),
            }
        );
        let values = vec![Value::Text("yes".into()), Value::Null];
        let row = Row {
            columns: &columns[..2],
            values: &values,
        };
        let message = row
            .deserialize::<Task>()
            .expect_err("text is no bool")
            .message;
        assert!(message.contains("column `done`"), "{message}");
    }

    #[test]
    fn params_convert() {
        let values = (1i64, "a", Some(2.5), None::<i64>, vec![1u8]).into_values();
        assert!(matches!(values[0], Value::Integer(1)));
        assert!(matches!(&values[1], Value::Text(s) if s == "a"));
        assert!(matches!(values[2], Value::Real(f) if f == 2.5));
        assert!(matches!(values[3], Value::Null));
        assert!(matches!(&values[4], Value::Blob(b) if b == &[1]));
    }

    #[test]
    fn rows_decode_into_tuples_values_and_structs() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Post {
            id: i64,
            title: Option<String>,
        }
        let rows = Rows {
            columns: vec!["id".into(), "title".into()],
            rows: vec![
                vec![Value::Integer(1), Value::Text("hi".into())],
                vec![Value::Integer(2), Value::Null],
            ],
            rows_written: 0,
            last_insert_rowid: 0,
        };
        let pairs: Vec<(i64, Option<String>)> = rows.decode().expect("tuples");
        assert_eq!(pairs, [(1, Some("hi".into())), (2, None)]);
        let ids: Vec<i64> = rows.decode().expect("first column");
        assert_eq!(ids, [1, 2]);
        let posts: Vec<Post> = rows
            .iter()
            .map(|r| r.deserialize())
            .collect::<Result<_, _>>()
            .expect("structs");
        assert_eq!(posts[1], Post { id: 2, title: None });
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Flag {
            id: i64,
            title: bool,
        }
        let err = rows.iter().next().map(|r| r.deserialize::<Flag>());
        let message = err
            .and_then(Result::err)
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(message.contains("column `title`"), "{message}");
        let err = rows.decode::<(String,)>().expect_err("ids are not text");
        assert_eq!(err.code, StorageErrorCode::Invalid);
        assert!(
            err.message.contains("expected String, found an integer"),
            "{}",
            err.message
        );
    }
}
