//! A node's default name: random once, then kept in the data directory
//! (`node-id`) so a restarted node is the same member.

use std::path::Path;

use anyhow::{Context, bail};

use crate::config::valid_node_name;

pub(super) fn load_or_create(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let name = text.trim().to_string();
            if !valid_node_name(&name) {
                bail!(
                    "{} does not hold a valid node name; delete it or set [cluster] node",
                    path.display()
                );
            }
            Ok(name)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let name = format!("node-{}", hex::encode(bytes));
            std::fs::create_dir_all(data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            std::fs::write(&path, format!("{name}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(name)
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}
