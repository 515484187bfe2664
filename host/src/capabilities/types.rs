//! `podhost:object/types`: shared records, and how storage failures become
//! the `storage-error` a guest can act on.

use rusqlite::ErrorCode;

use crate::bindings::podhost::object::types::Host;
use crate::bindings::{StorageError, StorageErrorCode};
use crate::capabilities::ObjectState;
use crate::storage::database::SqlFailure;

impl Host for ObjectState {}

impl StorageError {
    pub(crate) fn new(code: StorageErrorCode, message: impl Into<String>) -> Self {
        StorageError {
            code,
            message: message.into(),
        }
    }
}

impl From<SqlFailure> for StorageError {
    fn from(failure: SqlFailure) -> Self {
        if let Some(reason) = failure.denial {
            return StorageError::new(StorageErrorCode::NotAuthorized, reason);
        }
        failure.error.into()
    }
}

impl From<rusqlite::Error> for StorageError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::Error as E;
        let code = match &error {
            E::SqliteFailure(e, _) => match e.code {
                ErrorCode::ConstraintViolation => StorageErrorCode::Constraint,
                ErrorCode::DiskFull => StorageErrorCode::StorageFull,
                ErrorCode::TooBig => StorageErrorCode::TooBig,
                ErrorCode::AuthorizationForStatementDenied => StorageErrorCode::NotAuthorized,
                ErrorCode::Unknown
                | ErrorCode::TypeMismatch
                | ErrorCode::ParameterOutOfRange
                | ErrorCode::ApiMisuse => StorageErrorCode::Invalid,
                _ => StorageErrorCode::Other,
            },
            E::SqlInputError { .. }
            | E::MultipleStatement
            | E::InvalidParameterCount(..)
            | E::InvalidParameterName(_)
            | E::InvalidColumnIndex(_)
            | E::InvalidColumnName(_)
            | E::InvalidColumnType(..)
            | E::ExecuteReturnedResults
            | E::Utf8Error(..)
            | E::NulError(_) => StorageErrorCode::Invalid,
            _ => StorageErrorCode::Other,
        };
        StorageError::new(code, error.to_string())
    }
}
