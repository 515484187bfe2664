//! `[classes.NAME.vars]` and `[classes.NAME.secrets]`: the settings a
//! class's objects read with `context.config`.
//!
//! Vars are plain strings written in the config. A secret's value is never
//! written there: the config names where it is (an environment variable or
//! a file), and it is read once, when the class is loaded. Vars and
//! secrets share one namespace. A resolved secret is a [`Secret`], so it
//! does not show up in debug output, logs or error messages.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::bail;
use serde::{Deserialize, Serialize};

use super::Secret;

/// Most keys (vars and secrets together) one class may have.
pub const MAX_CONFIG_KEYS: usize = 256;
/// Longest key.
pub const MAX_CONFIG_KEY_BYTES: usize = 128;
/// Largest value of a var or a secret.
pub const MAX_CONFIG_VALUE_BYTES: usize = 64 << 10;

/// Where a secret's value is read from: `{ env = "NAME" }` or
/// `{ file = "path" }` (relative to the config file's directory).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", try_from = "Written")]
pub enum SecretSource {
    /// An environment variable of the podhost process.
    Env(String),
    /// A file's contents, without one trailing line break.
    File(PathBuf),
}

/// A secret as written in the config, before it is checked to name a
/// source rather than hold the value.
#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Source(BTreeMap<String, String>),
    Value(serde::de::IgnoredAny),
}

impl TryFrom<Written> for SecretSource {
    type Error = String;

    fn try_from(written: Written) -> Result<Self, String> {
        const HOW: &str = "a secret names where its value is read from, `{ env = \"NAME\" }` or \
                           `{ file = \"path\" }`";
        let Written::Source(source) = written else {
            return Err(format!("{HOW}; the value itself never goes in the config"));
        };
        let mut entries = source.into_iter();
        match (entries.next(), entries.next()) {
            (Some((kind, name)), None) if kind == "env" => Ok(SecretSource::Env(name)),
            (Some((kind, path)), None) if kind == "file" => Ok(SecretSource::File(path.into())),
            _ => Err(format!("{HOW}, with exactly one of the two")),
        }
    }
}

impl SecretSource {
    /// Makes a relative file path relative to `base`.
    pub fn resolve_path(&mut self, base: &Path) {
        if let SecretSource::File(path) = self
            && path.is_relative()
        {
            *path = base.join(&*path);
        }
    }

    /// Names the source for an error message (never the value).
    fn describe(&self) -> String {
        match self {
            SecretSource::Env(name) => format!("environment variable {name:?}"),
            SecretSource::File(path) => format!("file {}", path.display()),
        }
    }

    /// Reads the value. Errors name the source, never what was read.
    fn read(&self) -> Result<String, String> {
        let value = match self {
            SecretSource::Env(name) => match std::env::var_os(name) {
                None => return Err("it is not set".into()),
                // `VarError`'s message would quote the value: say less.
                Some(value) => value
                    .into_string()
                    .map_err(|_| "its value is not UTF-8".to_string())?,
            },
            SecretSource::File(path) => {
                let file = std::fs::File::open(path).map_err(|error| error.to_string())?;
                let mut bytes = Vec::new();
                file.take(MAX_CONFIG_VALUE_BYTES as u64 + 3)
                    .read_to_end(&mut bytes)
                    .map_err(|error| error.to_string())?;
                let mut text =
                    String::from_utf8(bytes).map_err(|_| "it is not UTF-8".to_string())?;
                // Files written by `echo` or an editor end with a line
                // break that is not part of the secret.
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                text
            }
        };
        if value.len() > MAX_CONFIG_VALUE_BYTES {
            return Err(format!("its value is over {MAX_CONFIG_VALUE_BYTES} bytes"));
        }
        Ok(value)
    }
}

/// Checks a class's vars and secrets as written (not yet read).
pub fn validate(
    class: &str,
    vars: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, SecretSource>,
) -> anyhow::Result<()> {
    if vars.len() + secrets.len() > MAX_CONFIG_KEYS {
        bail!(
            "[classes.{class}]: vars and secrets have {} keys together; at most {MAX_CONFIG_KEYS} are allowed",
            vars.len() + secrets.len()
        );
    }
    for key in vars.keys().chain(secrets.keys()) {
        validate_key(class, key)?;
    }
    for (key, value) in vars {
        if value.len() > MAX_CONFIG_VALUE_BYTES {
            bail!(
                "[classes.{class}.vars]: {key} is {} bytes; a value may have at most {MAX_CONFIG_VALUE_BYTES}",
                value.len()
            );
        }
    }
    if let Some(key) = secrets.keys().find(|key| vars.contains_key(*key)) {
        bail!(
            "[classes.{class}]: {key} is both a var and a secret; vars and secrets share one namespace"
        );
    }
    for (key, source) in secrets {
        if let SecretSource::Env(name) = source
            && (name.is_empty() || name.contains(['=', '\0']))
        {
            bail!("[classes.{class}.secrets]: {key}: {name:?} is not an environment variable name");
        }
    }
    Ok(())
}

/// Keys are what a guest asks for: ASCII letters, digits, `_`, `-` and `.`,
/// starting with a letter or `_`.
fn validate_key(class: &str, key: &str) -> anyhow::Result<()> {
    let valid = !key.is_empty()
        && key.len() <= MAX_CONFIG_KEY_BYTES
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && (key.as_bytes()[0].is_ascii_alphabetic() || key.as_bytes()[0] == b'_');
    if !valid {
        bail!(
            "[classes.{class}]: invalid config key {key:?}: use ASCII letters, digits, '_', '-' and '.' \
             (at most {MAX_CONFIG_KEY_BYTES}), starting with a letter or '_'"
        );
    }
    Ok(())
}

/// Reads every secret of class `class`. The error names the class, the
/// key and the source, so the operator can fix it before serving.
pub fn resolve(
    class: &str,
    vars: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, SecretSource>,
) -> anyhow::Result<ConfigValues> {
    validate(class, vars, secrets)?;
    let mut values: BTreeMap<String, Value> = vars
        .iter()
        .map(|(key, value)| (key.clone(), Value::Var(value.clone())))
        .collect();
    for (key, source) in secrets {
        let value = source.read().map_err(|why| {
            anyhow::anyhow!(
                "class {class:?}: cannot read secret {key} from {}: {why}",
                source.describe()
            )
        })?;
        values.insert(key.clone(), Value::Secret(Secret::new(value)));
    }
    Ok(ConfigValues { values })
}

/// A class's vars and secrets as its objects read them. Its `Debug` shows
/// vars and hides secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConfigValues {
    values: BTreeMap<String, Value>,
}

#[derive(Clone, PartialEq, Eq)]
enum Value {
    Var(String),
    Secret(Secret),
}

impl ConfigValues {
    /// The value of `key`, var or secret.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|value| match value {
            Value::Var(text) => text.as_str(),
            Value::Secret(secret) => secret.expose(),
        })
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl std::fmt::Debug for ConfigValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.values.iter().map(|(key, value)| {
                let shown: &dyn std::fmt::Debug = match value {
                    Value::Var(text) => text,
                    Value::Secret(secret) => secret,
                };
                (key, shown)
            }))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(entries: &[(&str, SecretSource)]) -> BTreeMap<String, SecretSource> {
        entries
            .iter()
            .map(|(key, source)| (key.to_string(), source.clone()))
            .collect()
    }

    #[test]
    fn reads_files_and_hides_secrets_from_debug_output() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("key"), "s3cr3t-value\n").expect("write");
        let mut source = SecretSource::File("key".into());
        source.resolve_path(dir.path());
        let vars = BTreeMap::from([("MODE".to_string(), "fast".to_string())]);
        let values = resolve("toolbox", &vars, &secrets(&[("API_KEY", source)])).expect("resolves");
        assert_eq!(values.get("API_KEY"), Some("s3cr3t-value"));
        assert_eq!(values.get("MODE"), Some("fast"));
        assert_eq!(values.get("OTHER"), None);
        let debug = format!("{values:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(
            debug.contains("fast") && debug.contains("API_KEY"),
            "{debug}"
        );
    }

    #[test]
    fn a_missing_source_names_class_key_and_source_only() {
        let missing = secrets(&[(
            "API_KEY",
            SecretSource::Env("PODHOST_TEST_SURELY_UNSET_VARIABLE".into()),
        )]);
        let error = resolve("toolbox", &BTreeMap::new(), &missing)
            .expect_err("unset")
            .to_string();
        assert!(
            error.contains("toolbox")
                && error.contains("API_KEY")
                && error.contains("PODHOST_TEST_SURELY_UNSET_VARIABLE"),
            "{error}"
        );
        let file = secrets(&[("K", SecretSource::File("/nonexistent/podhost/key".into()))]);
        let error = resolve("toolbox", &BTreeMap::new(), &file)
            .expect_err("no file")
            .to_string();
        assert!(error.contains("/nonexistent/podhost/key"), "{error}");
    }

    #[test]
    fn checks_keys_sizes_and_the_shared_namespace() {
        let var = |key: &str, value: String| BTreeMap::from([(key.to_string(), value)]);
        let none = BTreeMap::new();
        assert!(validate("c", &var("A_b-1.x", "v".into()), &none).is_ok());
        for bad in ["", "1A", "a b", "é", &"k".repeat(MAX_CONFIG_KEY_BYTES + 1)] {
            assert!(
                validate("c", &var(bad, "v".into()), &none).is_err(),
                "{bad:?}"
            );
        }
        let big = "x".repeat(MAX_CONFIG_VALUE_BYTES + 1);
        assert!(validate("c", &var("K", big), &none).is_err());
        let both = secrets(&[("K", SecretSource::Env("K".into()))]);
        let error = validate("c", &var("K", "v".into()), &both)
            .expect_err("in both")
            .to_string();
        assert!(error.contains("one namespace"), "{error}");
        let many: BTreeMap<String, String> = (0..=MAX_CONFIG_KEYS)
            .map(|n| (format!("K{n}"), String::new()))
            .collect();
        assert!(validate("c", &many, &none).is_err());
    }

    #[test]
    fn parses_both_sources_from_toml() {
        #[derive(Deserialize)]
        struct Table {
            secrets: BTreeMap<String, SecretSource>,
        }
        let table: Table = toml::from_str(
            "[secrets]\nA = { env = \"TOOLBOX_API_KEY\" }\nB = { file = \"/run/secrets/key\" }\n",
        )
        .expect("parses");
        assert_eq!(
            table.secrets["A"],
            SecretSource::Env("TOOLBOX_API_KEY".into())
        );
        assert_eq!(
            table.secrets["B"],
            SecretSource::File("/run/secrets/key".into())
        );
        let inline = toml::from_str::<Table>("[secrets]\nA = \"inline value\"\n")
            .err()
            .expect("a value is refused")
            .to_string();
        assert!(inline.contains("never goes in the config"), "{inline}");
        for bad in [
            "A = { value = \"x\" }",
            "A = { env = \"X\", file = \"y\" }",
            "A = {}",
            "A = 3",
        ] {
            assert!(
                toml::from_str::<Table>(&format!("[secrets]\n{bad}\n")).is_err(),
                "{bad}"
            );
        }
    }
}
