//! A sorted key-value store in the object's database, written in the same
//! transaction as its SQL.
//!
//! [`get`] and [`put`] store any serde type as JSON; the `*_bytes`
//! functions store raw bytes.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::podhost::object::kv as wit;
use crate::{StorageError, StorageErrorCode};

pub use wit::ListOptions;

/// Reads a JSON value.
pub fn get<T: DeserializeOwned>(key: &str) -> Result<Option<T>, StorageError> {
    get_bytes(key)?.map(|bytes| decode(key, &bytes)).transpose()
}

/// Writes a value as JSON.
pub fn put<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), StorageError> {
    put_bytes(key, &encode(key, value)?)
}

pub fn get_bytes(key: &str) -> Result<Option<Vec<u8>>, StorageError> {
    crate::only_in_podhost();
    wit::get(key)
}

pub fn put_bytes(key: &str, value: &[u8]) -> Result<(), StorageError> {
    crate::only_in_podhost();
    wit::put(key, value)
}

/// Reads several JSON values at once; missing keys give `None`.
pub fn get_many<T: DeserializeOwned>(keys: &[&str]) -> Result<Vec<Option<T>>, StorageError> {
    let owned: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    crate::only_in_podhost();
    let values = wit::get_many(&owned)?;
    keys.iter()
        .zip(values)
        .map(|(key, value)| value.map(|bytes| decode(key, &bytes)).transpose())
        .collect()
}

/// Writes several JSON values at once.
pub fn put_many<T: Serialize>(entries: &[(&str, T)]) -> Result<(), StorageError> {
    let encoded = entries
        .iter()
        .map(|(key, value)| Ok((key.to_string(), encode(key, value)?)))
        .collect::<Result<Vec<_>, StorageError>>()?;
    crate::only_in_podhost();
    wit::put_many(&encoded)
}

/// Deletes a key; returns whether it existed.
pub fn delete(key: &str) -> Result<bool, StorageError> {
    crate::only_in_podhost();
    wit::delete(key)
}

/// Deletes every key.
pub fn delete_all() -> Result<(), StorageError> {
    crate::only_in_podhost();
    wit::delete_all()
}

/// Lists entries in key order (raw bytes), as chosen by `options`.
pub fn list(options: &ListOptions) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
    crate::only_in_podhost();
    wit::list(options)
}

/// Lists the JSON values whose keys start with `prefix`, in key order.
pub fn list_prefix<T: DeserializeOwned>(prefix: &str) -> Result<Vec<(String, T)>, StorageError> {
    let options = ListOptions {
        prefix: Some(prefix.to_string()),
        start: None,
        end: None,
        limit: None,
        reverse: false,
    };
    list(&options)?
        .into_iter()
        .map(|(key, bytes)| {
            let value = decode(&key, &bytes)?;
            Ok((key, value))
        })
        .collect()
}

fn encode<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(value).map_err(|e| {
        StorageError::new(
            StorageErrorCode::Invalid,
            format!("cannot encode the value of {key:?}: {e}"),
        )
    })
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| {
        StorageError::new(
            StorageErrorCode::Invalid,
            format!("cannot decode the value of {key:?}: {e}"),
        )
    })
}
