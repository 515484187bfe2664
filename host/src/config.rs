//! `podhost.toml`: the server's settings and its classes.
//!
//! ```toml
//! listen = "127.0.0.1:8787"
//! data_dir = "data"
//! idle_timeout = "10s"
//!
//! [classes.counter]
//! path = "target/guests/wasm32-wasip2/release/counter.wasm"
//! ```
//!
//! Relative paths are relative to the file's directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::storage::Durability;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the gateway listens on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Where objects' databases and compiled classes are kept.
    pub data_dir: PathBuf,
    /// An object with no event for this long hibernates.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// What an acknowledged write survives: `full` (power loss) or
    /// `normal` (a crash of the process).
    pub durability: Durability,
    /// How many objects may have a live instance at once.
    pub max_active: u32,
    /// Most linear memory one instance may use.
    pub max_memory_bytes: usize,
    /// Longest an event may run; a guest still running then is stopped.
    #[serde(with = "humantime_serde")]
    pub max_cpu_per_event: Duration,
    /// Most events an object commits together when they queue up; 1 turns
    /// group commit off.
    pub group_commit_max_events: usize,
    /// A batch stops taking queued events once it has run this long, so
    /// its first response is not held back for long.
    #[serde(with = "humantime_serde")]
    pub group_commit_max_delay: Duration,
    /// Deployed classes by name.
    pub classes: BTreeMap<String, ClassConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    /// The component (`.wasm`) implementing the class.
    pub path: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            data_dir: PathBuf::from("data"),
            idle_timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
            durability: Durability::Full,
            max_active: 1000,
            max_memory_bytes: 128 << 20,
            max_cpu_per_event: Duration::from_secs(30),
            group_commit_max_events: 64,
            group_commit_max_delay: Duration::from_millis(5),
            classes: BTreeMap::new(),
        }
    }
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        let mut config: Config = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid podhost config", path.display()))?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        config.validate()?;
        Ok(config)
    }

    /// Makes relative paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.data_dir.is_relative() {
            self.data_dir = base.join(&self.data_dir);
        }
        for class in self.classes.values_mut() {
            if class.path.is_relative() {
                class.path = base.join(&class.path);
            }
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        for name in self.classes.keys() {
            validate_class_name(name)?;
        }
        if self.group_commit_max_events == 0 {
            bail!("group_commit_max_events must be at least 1");
        }
        if self.max_active == 0 {
            bail!("max_active must be at least 1");
        }
        if self.max_cpu_per_event < crate::limits::EPOCH_TICK {
            bail!(
                "max_cpu_per_event must be at least {:?}",
                crate::limits::EPOCH_TICK
            );
        }
        if self.idle_timeout.is_zero() {
            bail!("idle_timeout must be longer than zero");
        }
        Ok(())
    }
}

/// Class names appear in URLs and directory names: lower-case letters,
/// digits, `-` and `_`, starting with a letter or digit, at most 64.
pub fn validate_class_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !valid {
        bail!(
            "invalid class name {name:?}: use lower-case letters, digits, '-' and '_' (at most 64), starting with a letter or digit"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_config_and_resolves_paths() {
        let config: Config = toml::from_str(
            r#"
            listen = "127.0.0.1:0"
            data_dir = "state"
            idle_timeout = "250ms"
            max_body_bytes = 1024
            durability = "normal"
            [classes.counter]
            path = "counter.wasm"
            "#,
        )
        .expect("valid config");
        let mut config = config;
        config.resolve_paths(Path::new("/srv"));
        config.validate().expect("valid");
        assert_eq!(config.idle_timeout, Duration::from_millis(250));
        assert_eq!(config.durability, Durability::Normal);
        assert_eq!(config.data_dir, Path::new("/srv/state"));
        assert_eq!(
            config.classes["counter"].path,
            Path::new("/srv/counter.wasm")
        );
    }

    #[test]
    fn rejects_typos_and_bad_names() {
        assert!(toml::from_str::<Config>("idle_timout = \"1s\"").is_err());
        assert!(validate_class_name("Counter").is_err());
        assert!(validate_class_name("-x").is_err());
        assert!(validate_class_name("my-class_2").is_ok());
    }
}
