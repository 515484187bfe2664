//! `podhost deploy`: ships a class to a running server through
//! `PUT /admin/classes/{class}`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use podhost::deploy::CONFIG_HEADER;

#[derive(Args)]
pub struct DeployArgs {
    /// The class's name.
    #[arg(long)]
    class: String,
    /// The component (`.wasm`, built for wasm32-wasip2).
    wasm: PathBuf,
    /// The class's settings: a TOML file holding the table of
    /// `[classes.NAME]` (access, limits, durability, ...), either bare or
    /// under `[classes.NAME]`; `path` is ignored.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The server's address.
    #[arg(long, default_value = "http://127.0.0.1:8787")]
    server: String,
    /// The server's admin token.
    #[arg(long)]
    token: String,
    /// Accept migrations that do not extend the active version's.
    #[arg(long)]
    force: bool,
    /// Also run the migrations on a copy of this object's database.
    #[arg(long)]
    check: Option<String>,
}

/// The class table of a config file given to `--config`, as JSON.
pub fn class_table(text: &str, class: &str) -> anyhow::Result<serde_json::Value> {
    let mut table: toml::Table = toml::from_str(text)?;
    if let Some(toml::Value::Table(classes)) = table.get("classes")
        && let Some(toml::Value::Table(own)) = classes.get(class)
    {
        table = own.clone();
    }
    table.remove("path");
    Ok(serde_json::to_value(table)?)
}

pub fn run(args: DeployArgs) -> anyhow::Result<()> {
    let wasm = std::fs::read(&args.wasm)
        .with_context(|| format!("cannot read {}", args.wasm.display()))?;
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let table = class_table(&text, &args.class)
                .with_context(|| format!("{} is not a class table in TOML", path.display()))?;
            Some(table.to_string())
        }
        None => None,
    };
    let mut query = vec![];
    if args.force {
        query.push("force=true".to_string());
    }
    if let Some(object) = &args.check {
        query.push(format!("check={}", percent_encode(object)));
    }
    let mut url = format!(
        "{}/admin/classes/{}",
        args.server.trim_end_matches('/'),
        percent_encode(&args.class)
    );
    if !query.is_empty() {
        url = format!("{url}?{}", query.join("&"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (status, body) = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()?;
        let mut request = client
            .put(&url)
            .bearer_auth(&args.token)
            .header("content-type", "application/wasm")
            .body(wasm);
        if let Some(config) = config {
            request = request.header(CONFIG_HEADER, config);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        anyhow::Ok((status, response.text().await?))
    })?;
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if !status.is_success() {
        let message = json["error"]["message"].as_str().unwrap_or(&body);
        bail!("the deploy was refused ({status}): {message}");
    }
    if json["unchanged"] == true {
        println!(
            "class {} is already at version {} ({})",
            args.class, json["version"], json["hash"]
        );
    } else {
        println!(
            "deployed class {} version {} ({}, {} bytes)",
            args.class, json["version"], json["hash"], json["size_bytes"]
        );
    }
    Ok(())
}

/// `text` as one URL path segment or query value.
fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_bare_class_table_or_one_under_classes() {
        let bare = class_table("access = \"user\"\npath = \"x.wasm\"\n", "c").expect("bare");
        assert_eq!(bare, serde_json::json!({ "access": "user" }));
        let nested = class_table(
            "[classes.c]\ntrusted = true\n[classes.c.limits]\nmax_cpu_per_event = \"1s\"\n",
            "c",
        )
        .expect("nested");
        assert_eq!(
            nested,
            serde_json::json!({ "trusted": true, "limits": { "max_cpu_per_event": "1s" } })
        );
        assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
    }
}
