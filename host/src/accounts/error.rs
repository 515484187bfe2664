//! What can go wrong with accounts, each with the status the gateway
//! answers with.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A field is missing, empty or malformed.
    #[error("{0}")]
    Invalid(String),
    #[error("the password is too weak: {0}")]
    WeakPassword(String),
    #[error("an account with this email already exists")]
    EmailTaken,
    /// The same answer whether the email is unknown or the password wrong.
    #[error("wrong email or password")]
    BadCredentials,
    #[error("too many login attempts; try again in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
    #[error(
        "this needs a signed-in user: send `Authorization: Bearer <token>` or the session cookie"
    )]
    Unauthenticated,
    #[error("the token is not valid")]
    InvalidToken,
    #[error("the token has expired: get a new one from POST /auth/refresh")]
    TokenExpired,
    #[error("the session has ended: log in again")]
    SessionEnded,
    #[error("no such organization, or you are not a member")]
    NoSuchOrg,
    #[error("no user has this email")]
    NoSuchUser,
    #[error("no user has this id")]
    UnknownUserId,
    #[error("this account is disabled: ask the operator")]
    AccountDisabled,
    #[error("this needs the role {0} in the organization")]
    RoleTooLow(&'static str),
    #[error("an organization must keep at least one owner")]
    LastOwner,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}
