//! Organizations: created by a user who becomes their owner; owners and
//! admins manage the members. Roles are checked on every `/orgs` request,
//! from a cache that membership changes keep current.

use std::time::Instant;

use super::grants::member_grant;
use super::store::{Member, MemberChange, OrgMembership};
use super::{Accounts, AuthError, Role, User, normalize_email, random_id};
use crate::storage::catalog::now_ms;

/// The longest organization name, in characters.
const MAX_ORG_NAME_CHARS: usize = 100;

impl Accounts {
    /// Creates an organization owned by `user`.
    pub async fn create_org(&self, user: &User, name: &str) -> Result<OrgMembership, AuthError> {
        let name = name.trim().to_string();
        if name.is_empty()
            || name.chars().count() > MAX_ORG_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(AuthError::Invalid(format!(
                "`name` must be 1 to {MAX_ORG_NAME_CHARS} characters, without control characters"
            )));
        }
        let org = OrgMembership {
            id: random_id("o_")?,
            name,
            role: Role::Owner,
        };
        let (id, name, owner) = (org.id.clone(), org.name.clone(), user.id.clone());
        self.blocking(move |store| store.create_org(&id, &name, &owner, now_ms()))
            .await?;
        Ok(org)
    }

    /// The organizations `user` belongs to.
    pub async fn orgs_of(&self, user: &User) -> Result<Vec<OrgMembership>, AuthError> {
        let id = user.id.clone();
        Ok(self.blocking(move |store| store.orgs_of(&id)).await?)
    }

    /// `user`'s role in `org`; `NoSuchOrg` for non-members, so outsiders
    /// cannot tell which organizations exist.
    pub async fn role(&self, org: &str, user: &User) -> Result<Role, AuthError> {
        let key = (org.to_string(), user.id.clone());
        let role = match self.roles.get(&key) {
            Ok(role) => role,
            Err(generation) => {
                let role = self.stored_role(org, &user.id).await?;
                self.roles.fill(key, role, generation);
                role
            }
        };
        role.ok_or(AuthError::NoSuchOrg)
    }

    /// The members of `org`, for any of its members.
    pub async fn members(&self, org: &str, user: &User) -> Result<Vec<Member>, AuthError> {
        self.role(org, user).await?;
        let org = org.to_string();
        Ok(self.blocking(move |store| store.members(&org)).await?)
    }

    /// Adds the user with `email` to `org` with `role`, or changes their
    /// role. Admins manage members and admins; only owners make or unmake
    /// owners. Emails that match no one count against `by`, so members
    /// cannot probe which addresses have accounts.
    pub async fn set_member(
        &self,
        org: &str,
        by: &User,
        email: &str,
        role: Role,
    ) -> Result<(), AuthError> {
        self.role(org, by).await?;
        let email = normalize_email(email)?;
        self.failed_lookups_per_user
            .check(&by.id, Instant::now())
            .map_err(AuthError::RateLimited)?;
        let Some(target) = self
            .blocking(move |store| store.user_id_by_email(&email))
            .await?
        else {
            let _ = self.failed_lookups_per_user.take(&by.id, Instant::now());
            return Err(AuthError::NoSuchUser);
        };
        self.change_member(org, by, &target, Some(role)).await
    }

    /// Removes member `user_id` from `org`. Anyone may leave; admins
    /// remove members and admins, owners anyone.
    pub async fn remove_member(
        &self,
        org: &str,
        by: &User,
        user_id: &str,
    ) -> Result<(), AuthError> {
        self.change_member(org, by, user_id, None).await
    }

    async fn stored_role(&self, org: &str, user_id: &str) -> Result<Option<Role>, AuthError> {
        let (org, user_id) = (org.to_string(), user_id.to_string());
        Ok(self
            .blocking(move |store| store.role(&org, &user_id))
            .await?)
    }

    /// Applies a membership change (permissions are checked in the same
    /// transaction), then forgets the cached role and closes the
    /// connections the old membership opened.
    async fn change_member(
        &self,
        org: &str,
        by: &User,
        user_id: &str,
        role: Option<Role>,
    ) -> Result<(), AuthError> {
        let key = (org.to_string(), user_id.to_string());
        let change = {
            let (org, user_id, by) = (key.0.clone(), key.1.clone(), by.id.clone());
            self.blocking(move |store| store.update_member(&org, &by, &user_id, role, now_ms()))
                .await?
        };
        if matches!(change, MemberChange::Done) {
            self.roles.remove(&key);
            self.grants.end(&member_grant(org, user_id));
        }
        match change {
            MemberChange::Done => Ok(()),
            MemberChange::NotAMember => Err(AuthError::NoSuchOrg),
            MemberChange::NoSuchMember => Err(AuthError::NoSuchUser),
            MemberChange::RoleTooLow(needed) => Err(AuthError::RoleTooLow(needed.as_str())),
            MemberChange::LastOwner => Err(AuthError::LastOwner),
        }
    }
}
