//! The class's config: `[classes.NAME.vars]` and `[classes.NAME.secrets]`
//! in `podhost.toml`.
//!
//! Vars and secrets share one namespace, and both functions read it: a key
//! is either a var or a secret, never both. [`secret`] only wraps the value
//! in a [`Secret`], which does not print it in debug output, so it does not
//! end up in a log line or an error message by accident. Secrets are read
//! by the host when it starts; a change needs a restart (or a redeploy).
//!
//! ```ignore
//! use podhost_sdk::config;
//!
//! let greeting = config::get("GREETING").unwrap_or_else(|| "hello".into());
//! let key = config::secret("API_KEY").ok_or_else(|| Error::internal("API_KEY is not set"))?;
//! let header = format!("Bearer {}", key.expose());
//! ```

use crate::bindings::podhost::object::context;

/// The value of `key`, a var or a secret; `None` if the class has no such
/// key.
pub fn get(key: &str) -> Option<String> {
    crate::only_in_podhost();
    context::config(key)
}

/// The value of `key` as a [`Secret`]; `None` if the class has no such key.
/// The same value [`get`] returns.
pub fn secret(key: &str) -> Option<Secret> {
    get(key).map(Secret)
}

/// A value that debug output shows as `Secret(***)`. It has no `Display`:
/// use [`expose`](Self::expose) where the value is really needed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (a test's, say).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(Secret(***))");
        assert_eq!(secret.expose(), "hunter2");
    }
}
