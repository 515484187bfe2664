//! `[replication]`: where objects' commits are shipped (see
//! `replication`), and how often a whole copy is taken.

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationSettings {
    /// `file:///absolute/path` or `s3://bucket/prefix`; replication is off
    /// without it.
    pub url: Option<String>,
    /// An S3-compatible server's address (`http://127.0.0.1:9000`), for
    /// stores other than AWS. Credentials come from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, ...).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Allow an `http://` endpoint (a store on the same machine, say).
    pub allow_http: bool,
    /// How long a `replicated` commit waits for its segment to be durable
    /// before its events fail with 503 `replication_unavailable`; also
    /// bounds each request to the store.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// An object that commits takes a new snapshot (and starts a new
    /// generation) when its last one is this old...
    #[serde(with = "humantime_serde")]
    pub snapshot_interval: Duration,
    /// ... or when it has shipped this many bytes of segments since.
    pub snapshot_after_bytes: u64,
    /// The write-ahead log is emptied into the database once it is this
    /// long (after its frames were read for shipping).
    pub checkpoint_wal_bytes: u64,
    /// Bytes of segments waiting for the store, all objects together, for
    /// `full` and `normal` objects. Past it an object drops what it has
    /// queued and starts a new generation (a snapshot) instead, so memory
    /// stays bounded while the store is away.
    pub max_queue_bytes: u64,
    /// How long history is kept (`"7d"`): any point inside it can be
    /// restored; older generations, and deleted objects' histories, are
    /// removed. Without it the store keeps everything.
    #[serde(with = "humantime_serde")]
    pub retention: Option<Duration>,
    /// How often the catalog's commits that no route waited for (the
    /// object and alarm indexes) are shipped; routes that write it
    /// (accounts, keys, deploys, tenants, ...) ship their commit at once.
    #[serde(with = "humantime_serde")]
    pub catalog_interval: Duration,
    /// How often the store is compacted to `retention`.
    #[serde(with = "humantime_serde")]
    pub compaction_interval: Duration,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        ReplicationSettings {
            url: None,
            endpoint: None,
            region: None,
            allow_http: false,
            timeout: Duration::from_secs(5),
            snapshot_interval: Duration::from_secs(3600),
            snapshot_after_bytes: 64 << 20,
            checkpoint_wal_bytes: 4 << 20,
            max_queue_bytes: 256 << 20,
            retention: None,
            catalog_interval: Duration::from_secs(10),
            compaction_interval: Duration::from_secs(3600),
        }
    }
}

impl ReplicationSettings {
    /// Whether a store is configured.
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.url
            && !(url.starts_with("file:///") || url.starts_with("s3://"))
        {
            bail!(
                "[replication] url must be file:///absolute/path or s3://bucket/prefix, not {url:?}"
            );
        }
        if self.timeout.is_zero() {
            bail!("[replication] timeout must be more than 0");
        }
        if self.catalog_interval.is_zero() {
            bail!("[replication] catalog_interval must be more than 0");
        }
        if self.compaction_interval.is_zero() {
            bail!("[replication] compaction_interval must be more than 0");
        }
        if self.snapshot_interval.is_zero() {
            bail!("[replication] snapshot_interval must be more than 0");
        }
        Ok(())
    }
}
