//! Who sends a request, as the host authenticated it, and what the object
//! is told of it (WIT `types.caller`).

use serde::{Deserialize, Serialize};

use crate::bindings::podhost::object::types as wit;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: String,
    pub email: String,
}

/// A member's role in an organization; each includes what the ones below
/// it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    User(User),
    Member { user: User, org: String, role: Role },
    Key { id: String },
    Admin,
}

impl Caller {
    pub fn to_wit(&self) -> wit::Caller {
        match self {
            Caller::User(user) => wit::Caller::User(user_to_wit(user)),
            Caller::Member { user, org, role } => wit::Caller::Member(wit::Member {
                user: user_to_wit(user),
                org: org.clone(),
                role: match role {
                    Role::Owner => wit::Role::Owner,
                    Role::Admin => wit::Role::Admin,
                    Role::Member => wit::Role::Member,
                },
            }),
            Caller::Key { id } => wit::Caller::Key(id.clone()),
            Caller::Admin => wit::Caller::Admin,
        }
    }
}

fn user_to_wit(user: &User) -> wit::User {
    wit::User {
        id: user.id.clone(),
        email: user.email.clone(),
    }
}
