//! The object store behind a `[replication] url`: a local directory
//! (`file:///path`) or an S3-compatible bucket (`s3://bucket/prefix`).

use std::sync::Arc;

use anyhow::{Context as _, bail};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::prefix::PrefixStore;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use crate::config::ReplicationSettings;

/// Opens the store `settings.url` names.
pub fn open(settings: &ReplicationSettings) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let Some(url) = settings.url.as_deref() else {
        bail!("[replication] has no url");
    };
    if let Some(path) = url.strip_prefix("file://") {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create the replication directory {path}"))?;
        let store = LocalFileSystem::new_with_prefix(path)
            .with_context(|| format!("cannot use {path} as a replication store"))?
            // Folders emptied by compaction go too.
            .with_automatic_cleanup(true);
        return Ok(Arc::new(store));
    }
    let Some(rest) = url.strip_prefix("s3://") else {
        bail!("[replication] url must start with file:// or s3://");
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        bail!("[replication] url {url:?} names no bucket");
    }
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        // The client options carry `allow_http` too: set it there.
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(settings.allow_http)
                .with_timeout(settings.timeout)
                .with_connect_timeout(settings.timeout),
        )
        // The shipper retries by itself, in order and forever; one request
        // gives up quickly so a `replicated` commit learns in time.
        .with_retry(RetryConfig {
            max_retries: 2,
            retry_timeout: settings.timeout,
            ..RetryConfig::default()
        });
    if let Some(endpoint) = &settings.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(region) = &settings.region {
        builder = builder.with_region(region);
    }
    let store = builder
        .build()
        .with_context(|| format!("cannot use {url} as a replication store"))?;
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        Ok(Arc::new(store))
    } else {
        Ok(Arc::new(PrefixStore::new(store, StorePath::from(prefix))))
    }
}
