//! `[cluster]` (or `podhost serve --cluster etcd://...`): several nodes
//! sharing objects through etcd (see `cluster`). Off without it.

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// Where keys live in etcd unless the URL names a prefix.
pub const DEFAULT_PREFIX: &str = "/podhost";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// `etcd://host:port[,host:port...][/prefix]`.
    pub etcd: String,
    /// This node's name in etcd; default: a random id kept in the data
    /// directory (`node-id`), so a restarted node keeps its name.
    #[serde(default)]
    pub node: Option<String>,
    /// `host:port` other nodes forward requests to; default: the address
    /// the server listens on.
    #[serde(default)]
    pub advertise: Option<String>,
    /// How long a node's lease (its membership and every object it owns)
    /// outlives its last keepalive.
    #[serde(default = "default_lease_ttl", with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How long a node stopping (SIGTERM, Ctrl-C) waits for its objects
    /// to hand over (last batch committed and shipped, ownership released)
    /// before it leaves anyway.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Which node takes an object nobody serves.
    #[serde(default)]
    pub placement: Placement,
}

/// Which node takes an object nobody serves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// The node its first request reaches (no extra hop; a load balancer
    /// that spreads requests spreads objects).
    #[default]
    First,
    /// The live node rendezvous hashing prefers for the object: the
    /// first request goes there, so objects spread evenly whatever node
    /// the traffic reaches, and a node joining or leaving moves only its
    /// share of new placements.
    Rendezvous,
}

fn default_lease_ttl() -> Duration {
    Duration::from_secs(5)
}

fn default_drain_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `etcd://...` taken apart.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdUrl {
    /// `host:port` each.
    pub endpoints: Vec<String>,
    /// Starts with `/`, no trailing `/`.
    pub prefix: String,
}

impl ClusterSettings {
    /// The settings of `--cluster <url>`: the defaults for the rest.
    pub fn from_url(etcd: &str) -> anyhow::Result<Self> {
        let settings = ClusterSettings {
            etcd: etcd.to_string(),
            node: None,
            advertise: None,
            lease_ttl: default_lease_ttl(),
            placement: Placement::default(),
            drain_timeout: default_drain_timeout(),
        };
        settings.check()?;
        Ok(settings)
    }

    pub fn check(&self) -> anyhow::Result<()> {
        self.etcd_url()?;
        if self.lease_ttl < Duration::from_secs(2) {
            bail!("[cluster] lease_ttl must be at least 2s (keepalives go every third of it)");
        }
        if self.drain_timeout > Duration::from_secs(3600) {
            bail!("[cluster] drain_timeout must be at most 1h");
        }
        if let Some(node) = &self.node
            && !valid_node_name(node)
        {
            bail!(
                "[cluster] node must be 1 to 64 letters, digits, '-', '_' or '.' (it is part of etcd keys), not {node:?}"
            );
        }
        if let Some(advertise) = &self.advertise {
            check_endpoint(advertise).context("[cluster] advertise")?;
        }
        Ok(())
    }

    pub fn etcd_url(&self) -> anyhow::Result<EtcdUrl> {
        parse_etcd_url(&self.etcd)
    }
}

/// Whether `name` may name a node (it is one segment of an etcd key).
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn parse_etcd_url(url: &str) -> anyhow::Result<EtcdUrl> {
    let Some(rest) = url.strip_prefix("etcd://") else {
        bail!(
            "the cluster URL must look like etcd://127.0.0.1:2379[,host:port...][/prefix], not {url:?}"
        );
    };
    let (hosts, prefix) = match rest.split_once('/') {
        Some((hosts, prefix)) => (hosts, prefix.trim_end_matches('/')),
        None => (rest, ""),
    };
    let endpoints: Vec<String> = hosts.split(',').map(str::to_string).collect();
    for endpoint in &endpoints {
        check_endpoint(endpoint).with_context(|| format!("in the cluster URL {url:?}"))?;
    }
    if prefix.split('/').any(|part| part == "." || part == "..")
        || prefix.contains("//")
        || prefix.chars().any(char::is_control)
    {
        bail!("the cluster URL's prefix {prefix:?} must be plain path segments");
    }
    let prefix = if prefix.is_empty() {
        DEFAULT_PREFIX.to_string()
    } else {
        format!("/{prefix}")
    };
    Ok(EtcdUrl { endpoints, prefix })
}

/// `host:port` with a port number.
fn check_endpoint(endpoint: &str) -> anyhow::Result<()> {
    let valid = endpoint.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains('/')
            && !host.contains('@')
            && port.parse::<u16>().is_ok_and(|port| port != 0)
    });
    if !valid {
        bail!("expected host:port, not {endpoint:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_endpoints_and_a_prefix() {
        let url = parse_etcd_url("etcd://127.0.0.1:2379").expect("a valid URL");
        assert_eq!(url.endpoints, ["127.0.0.1:2379"]);
        assert_eq!(url.prefix, "/podhost");
        let url = parse_etcd_url("etcd://a:1,b:2/team/podhost/").expect("a valid URL");
        assert_eq!(url.endpoints, ["a:1", "b:2"]);
        assert_eq!(url.prefix, "/team/podhost");
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in [
            "http://127.0.0.1:2379",
            "etcd://",
            "etcd://host",
            "etcd://host:0",
            "etcd://host:99999",
            "etcd://a:1,/x",
            "etcd://a:1/x/../y",
            "etcd://user@a:1",
        ] {
            assert!(parse_etcd_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn node_names_are_key_segments() {
        assert!(valid_node_name("node-1.eu_west"));
        assert!(!valid_node_name(""));
        assert!(!valid_node_name("a/b"));
        assert!(!valid_node_name(&"x".repeat(65)));
    }
}
