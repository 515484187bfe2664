//! Who sent a request, as the host authenticated it: see
//! [`Request::caller`](crate::Request::caller).
//!
//! A class with `access = "user"` in the server's config is reached only
//! through `/me/{class}`, and each user gets their own object, named by
//! their id; `access = "org"` gives each organization one, reached by its
//! members through `/orgs/{org}/{class}` with their role.

pub use crate::bindings::podhost::object::types::{Caller, Member, Role, User};

impl Role {
    /// `"owner"`, `"admin"` or `"member"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}
