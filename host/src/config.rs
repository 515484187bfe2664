//! `podhost.toml`: the server's settings and its classes.
//!
//! ```toml
//! listen = "127.0.0.1:8787"
//! data_dir = "data"
//! idle_timeout = "10s"
//!
//! [alarms]                 # failed alarms: retried after 2 s, 4 s, ... 6 times
//! retry_backoff = "2s"
//! max_retries = 6
//!
//! [limits]                 # for every class
//! max_cpu_per_event = "30s"
//!
//! [classes.counter]
//! path = "target/guests/wasm32-wasip2/guest/counter.wasm"
//! durability = "normal"    # this class only
//!
//! [classes.counter.limits] # this class only
//! max_storage_bytes = 10485760
//!
//! [classes.counter.vars]   # read with `config::get`
//! GREETING = "hello"
//!
//! [classes.counter.secrets] # read at start; the values are never here
//! API_KEY = { env = "COUNTER_API_KEY" }
//! SIGNING_KEY = { file = "secrets/signing.key" }
//! ```
//!
//! Relative paths are relative to the file's directory.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::storage::Durability;

mod cluster;
mod limits;
mod outbound;
mod replication;
mod values;

pub use cluster::{ClusterSettings, EtcdUrl, Placement, valid_node_name};
pub use limits::{
    KV, KvLimits, LimitOverrides, Limits, MAX_EVENT_NAME_BYTES, MAX_OBJECT_NAME_BYTES,
};
pub use outbound::OutboundAllowList;
pub use replication::ReplicationSettings;
pub use values::{
    ConfigValues, MAX_CONFIG_KEY_BYTES, MAX_CONFIG_KEYS, MAX_CONFIG_VALUE_BYTES, SecretSource,
};

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
    /// How many objects may have a live instance at once.
    pub max_active: u32,
    /// How many objects may keep their database open at once, with or
    /// without an instance: an object pushed out by `max_active` drops its
    /// instance but keeps its database open, so its next event skips the
    /// open. Unset: 4 × `max_active`, within half the open files the
    /// process may have (see `os_limits::open_databases`). Never fewer
    /// than `max_active`.
    pub max_open_databases: Option<u32>,
    /// Most events an object commits together when they queue up; 1 turns
    /// group commit off.
    pub group_commit_max_events: usize,
    /// A batch stops taking queued events once it has run this long, so
    /// its first response is not held back for long.
    #[serde(with = "humantime_serde")]
    pub group_commit_max_delay: Duration,
    /// What an acknowledged write survives, unless a class says otherwise:
    /// `full` (power loss) or `normal` (a crash of the process).
    pub durability: Durability,
    /// Limits of every class, unless a class overrides some.
    pub limits: Limits,
    /// How failed alarms are retried.
    pub alarms: AlarmSettings,
    /// Client connections: timeouts and caps.
    pub server: ServerSettings,
    /// WebSockets: limits and keepalive.
    pub sockets: SocketSettings,
    /// The objects' event logs, streamed as Server-Sent Events.
    pub events: EventSettings,
    /// Guests' stdout and stderr in the host log.
    pub logs: LogSettings,
    /// The operator's inspection, queries, export and import of objects.
    pub inspect: InspectSettings,
    /// `[assets]`: a directory of static files served at `/`, behind
    /// every API route; none without the section.
    pub assets: Option<AssetSettings>,
    /// The bearer token `/admin/*` requires (at least 32 bytes); without
    /// one the admin API is off.
    pub admin_token: Option<Secret>,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For`
    /// (or `Forwarded`) is believed: only for a peer among them is the
    /// client's address read from that header, for the per-address limits
    /// and the objects' `client-address`.
    pub trusted_proxies: Vec<IpRange>,
    /// Accounts: `/auth/*`, `/me`, `/orgs`. On (with these defaults) when a
    /// class has `access = "user"` or `"org"`, or when this section is
    /// present.
    pub auth: Option<AuthSettings>,
    /// Guest threads, fair shares between classes, the memory budget.
    pub execution: ExecutionSettings,
    /// How long a stopping server lets running events finish before it
    /// cancels them (and rolls their writes back).
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Deploys over the admin API.
    pub deploy: DeploySettings,
    /// Shipping every commit to object storage; off without `url`.
    pub replication: ReplicationSettings,
    /// `[cluster]`: several nodes sharing objects through etcd; one node
    /// alone without it.
    pub cluster: Option<ClusterSettings>,
    /// Deployed classes by name.
    pub classes: BTreeMap<String, ClassConfig>,
    /// `[tenants]`: the quotas a tenant gets unless made with its own.
    pub tenants: crate::tenants::Quotas,
    /// Each class's table as written in the file (without `path`), kept
    /// with the version it deploys so a restart without the file serves
    /// the class the same way.
    #[serde(skip)]
    pub class_tables: BTreeMap<String, serde_json::Value>,
}

/// `[deploy]`: classes shipped to a running server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploySettings {
    /// The largest component `PUT /admin/classes/{class}` takes.
    pub max_component_bytes: usize,
}

impl Default for DeploySettings {
    fn default() -> Self {
        DeploySettings {
            max_component_bytes: 50 << 20,
        }
    }
}

/// `[execution]`: where and how much guest code runs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutionSettings {
    /// Most guest threads (each runs one object's events at a time).
    pub threads: usize,
    /// Most events of one class running at once; the others wait their
    /// turn without holding a thread or an instance.
    pub max_running_per_class: usize,
    /// Linear memory all instances together may hold; half of the
    /// machine's memory if left out.
    pub max_guest_memory_bytes: Option<usize>,
}

impl Default for ExecutionSettings {
    fn default() -> Self {
        ExecutionSettings {
            threads: 256,
            max_running_per_class: 32,
            max_guest_memory_bytes: None,
        }
    }
}

impl ExecutionSettings {
    /// The memory budget for all guests.
    pub fn guest_memory(&self) -> usize {
        self.max_guest_memory_bytes
            .unwrap_or_else(crate::limits::default_guest_memory)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !(1..=4096).contains(&self.threads) {
            bail!("[execution]: threads must be between 1 and 4096");
        }
        if self.max_running_per_class == 0 {
            bail!("[execution]: max_running_per_class must be at least 1");
        }
        if self
            .max_guest_memory_bytes
            .is_some_and(|bytes| bytes < 1 << 20)
        {
            bail!("[execution]: max_guest_memory_bytes must be at least 1 MiB");
        }
        Ok(())
    }
}

/// The shortest `admin_token` accepted: long enough that guessing it is
/// hopeless even without the failure throttle.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 32;

/// An address or a CIDR range (`10.0.0.0/8`, `2001:db8::/32`, `127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Whether `address` is in the range (an IPv4-mapped IPv6 address
    /// counts as its IPv4 address).
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

impl std::str::FromStr for IpRange {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network = canonical(
            address
                .trim()
                .parse::<IpAddr>()
                .with_context(|| format!("{text:?} is not an IP address or CIDR range"))?,
        );
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= bits)
                .with_context(|| format!("{text:?}: the prefix length must be 0 to {bits}"))?,
        };
        Ok(IpRange { network, prefix })
    }
}

impl TryFrom<String> for IpRange {
    type Error = anyhow::Error;

    fn try_from(text: String) -> anyhow::Result<Self> {
        text.parse()
    }
}

/// A value kept out of logs and debug output.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `[alarms]`: an alarm whose handler fails or traps is retried after
/// `retry_backoff`, then twice that, and so on, `max_retries` times; then
/// it is dropped with a logged error.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlarmSettings {
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    pub max_retries: u32,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        AlarmSettings {
            retry_backoff: Duration::from_secs(2),
            max_retries: 6,
        }
    }
}

impl AlarmSettings {
    /// How long to wait before retry number `retry` (1 for the first).
    pub fn backoff(&self, retry: u32) -> Duration {
        self.retry_backoff
            .saturating_mul(1 << retry.saturating_sub(1).min(20))
    }
}

/// `[server]`: what one client connection may hold, so that slow or
/// idle clients cannot use up the server's connections or files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// A client must send a request's whole head within this long of
    /// connecting, or of sending its first byte on a kept-alive
    /// connection; else it is disconnected.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request for this long is closed; so
    /// is one whose client takes nothing of its response for this long.
    #[serde(with = "humantime_serde")]
    pub idle_connection_timeout: Duration,
    /// Open connections (WebSockets included) one client address may have
    /// (IPv6: one /64); more are refused with 503.
    pub max_connections_per_address: usize,
    /// WebSocket upgrades in progress at once (the object's `socket-open`
    /// running); more are refused with 503.
    pub max_websocket_handshakes: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            header_read_timeout: Duration::from_secs(10),
            idle_connection_timeout: Duration::from_secs(60),
            max_connections_per_address: 256,
            max_websocket_handshakes: 1024,
        }
    }
}

impl ServerSettings {
    fn validate(&self) -> anyhow::Result<()> {
        if self.header_read_timeout < Duration::from_millis(100)
            || self.idle_connection_timeout < Duration::from_millis(100)
        {
            bail!(
                "[server]: header_read_timeout and idle_connection_timeout must be at least 100ms"
            );
        }
        if self.max_connections_per_address == 0 || self.max_websocket_handshakes == 0 {
            bail!(
                "[server]: max_connections_per_address and max_websocket_handshakes must be at least 1"
            );
        }
        Ok(())
    }
}

/// `[sockets]`: the WebSockets objects hold.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketSettings {
    /// Open sockets one object may have; more are refused with 503.
    pub max_per_object: usize,
    /// Largest message a client may send (a larger one closes its socket
    /// with 1009) or an object may send (a larger one is refused).
    pub max_message_bytes: usize,
    /// Messages that may wait for one slow client; past that its socket is
    /// closed with 1013 so it holds up no one else.
    pub max_queued_messages: usize,
    /// Bytes of messages that may wait for one slow client, likewise; also
    /// the most one event may send in all.
    pub max_queued_bytes: usize,
    /// How often the host pings each client; one that has sent nothing
    /// (not even the pong) by the next ping is disconnected.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
}

impl Default for SocketSettings {
    fn default() -> Self {
        SocketSettings {
            max_per_object: 32_768,
            max_message_bytes: 1 << 20,
            max_queued_messages: 1024,
            max_queued_bytes: 4 << 20,
            ping_interval: Duration::from_secs(30),
        }
    }
}

/// `[events]`: each object's durable event log (`events.publish`), which
/// SSE clients resume from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// Events kept per object; a client that missed more than this is told
    /// of the gap.
    pub retention: u64,
    /// Largest `data` of one event.
    pub max_data_bytes: usize,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            retention: 1000,
            max_data_bytes: 64 << 10,
        }
    }
}

/// `[logs]`: what guests' stdout and stderr may put in the host log. Each
/// object has a bucket of `burst_bytes` refilled at
/// `max_bytes_per_second`; a line that finds too few bytes in it is
/// dropped, and so is the rest of a line longer than `max_line_bytes`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub max_bytes_per_second: u64,
    pub burst_bytes: u64,
    pub max_line_bytes: usize,
    /// Guest lines (all objects) that may wait for the log thread.
    pub queue_bytes: usize,
    /// Each object's log (`/admin/objects/{class}/{name}/logs`) keeps its
    /// newest records, at most this many and this many bytes.
    pub ring_records: usize,
    pub ring_bytes: usize,
    /// All objects' logs together; the least recently written go first.
    pub rings_total_bytes: usize,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            max_bytes_per_second: 16 << 10,
            burst_bytes: 64 << 10,
            max_line_bytes: 4096,
            queue_bytes: 4 << 20,
            ring_records: 1000,
            ring_bytes: 64 << 10,
            rings_total_bytes: 32 << 20,
        }
    }
}

/// `[inspect]`: limits of the operator's look inside objects
/// (`/admin/objects/{class}/{name}` and its `query`, `export`, `import`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InspectSettings {
    /// Most rows a query returns; more sets `truncated`.
    pub query_max_rows: usize,
    /// Most bytes of values a query returns; more sets `truncated`.
    pub query_max_bytes: usize,
    /// A query (or counting an inspected object's rows) running longer is
    /// stopped. The object's events wait meanwhile.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Largest database `PUT .../import` takes.
    pub import_max_bytes: u64,
}

impl Default for InspectSettings {
    fn default() -> Self {
        InspectSettings {
            query_max_rows: 1000,
            query_max_bytes: 1 << 20,
            query_timeout: Duration::from_secs(5),
            import_max_bytes: 1 << 30,
        }
    }
}

/// `[auth]`: accounts, sessions and login limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Signs session tokens (at least 32 bytes). Without one, a random key
    /// is made on first start and kept in the catalog.
    pub secret: Option<Secret>,
    /// How long an access token is good for; `POST /auth/refresh` trades
    /// the refresh token for a new one.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// How long a session lasts (refreshing is possible until then).
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    pub min_password_length: usize,
    /// Marks the session cookies `Secure`: turn on when clients reach the
    /// server over HTTPS.
    pub secure_cookies: bool,
    /// The window login attempts are counted in.
    #[serde(with = "humantime_serde")]
    pub login_window: Duration,
    /// Failed logins one account may have per window.
    pub max_failed_logins_per_account: u32,
    /// Logins one client address may try per window.
    pub max_logins_per_address: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            secret: None,
            token_ttl: Duration::from_secs(60 * 60),
            session_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            min_password_length: 10,
            secure_cookies: false,
            login_window: Duration::from_secs(15 * 60),
            max_failed_logins_per_account: 10,
            max_logins_per_address: 50,
        }
    }
}

impl AuthSettings {
    fn validate(&self) -> anyhow::Result<()> {
        if self
            .secret
            .as_ref()
            .is_some_and(|secret| secret.expose().len() < 32)
        {
            bail!("[auth]: secret must be at least 32 bytes");
        }
        const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
        if self.token_ttl < Duration::from_secs(1)
            || self.session_ttl < self.token_ttl
            || self.session_ttl > TEN_YEARS
        {
            bail!(
                "[auth]: token_ttl must be at least 1s, session_ttl at least token_ttl and at most 10 years"
            );
        }
        if self.login_window < Duration::from_secs(1)
            || self.login_window > Duration::from_secs(24 * 60 * 60)
        {
            bail!("[auth]: login_window must be between 1s and 24h");
        }
        if !(8..=128).contains(&self.min_password_length) {
            bail!("[auth]: min_password_length must be between 8 and 128");
        }
        if self.max_failed_logins_per_account == 0 || self.max_logins_per_address == 0 {
            bail!("[auth]: the login limits must be at least 1");
        }
        Ok(())
    }
}

/// Who may reach a class's objects, and by which route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone, by name: `/objects/{class}/{name}`.
    #[default]
    Public,
    /// Each signed-in user their own object, through `/me/{class}`.
    User,
    /// Members of an organization its object, through `/orgs/{org}/{class}`.
    Org,
    /// Clients bearing one of the object's API keys, through `/key`.
    Key,
    /// Only the operator, with the admin token.
    Admin,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::User => "user",
            Access::Org => "org",
            Access::Key => "key",
            Access::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    /// The component (`.wasm`) implementing the class.
    pub path: PathBuf,
    /// Overrides the server's `durability` for this class.
    #[serde(default)]
    pub durability: Option<Durability>,
    /// Overrides some of the server's `[limits]` for this class.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// Who may reach the class's objects; `public` if left out.
    #[serde(default)]
    pub access: Access,
    /// Serves the class's responses without the sandbox
    /// (`Content-Security-Policy: sandbox`): its pages then run on the
    /// host's origin and can act with a signed-in visitor's session. Only
    /// for classes the operator trusts as much as the host itself.
    #[serde(default)]
    pub trusted: bool,
    /// The hosts the class's objects may reach over HTTP (`wasi:http`);
    /// none if left out. The grammar is in `config/outbound.rs`.
    #[serde(default)]
    pub outbound: OutboundAllowList,
    /// Plain settings its objects read with `context.config`.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Secrets its objects read with `context.config`, by where each is
    /// read from at start (never the value itself).
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// The tenant that owns the class (as if it had deployed it first):
    /// its token may then manage the class's objects. The tenant may be
    /// made after the server starts.
    #[serde(default)]
    pub tenant: Option<String>,
}

impl ClassConfig {
    /// Its vars and its secrets, read now from their sources; an error
    /// names the class, the key and the source.
    pub fn config_values(&self, class: &str) -> anyhow::Result<ConfigValues> {
        values::resolve(class, &self.vars, &self.secrets)
    }
}

/// A class's effective settings: the server's, with its overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassSettings {
    pub durability: Durability,
    pub limits: Limits,
    pub access: Access,
    /// Its vars and secrets, read when the class was loaded (empty from
    /// [`Config::class_settings`]; see [`ClassConfig::config_values`]).
    pub config: std::sync::Arc<ConfigValues>,
    pub outbound: OutboundAllowList,
}

/// `[assets]`: the operator's static files (an app's web UI), served
/// from the same origin as the API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetSettings {
    /// The directory served at `/` (`index.html` for a directory).
    pub dir: PathBuf,
}

impl ClassSettings {
    /// What an object's database needs of these.
    pub fn database(&self) -> crate::storage::DatabaseSettings {
        crate::storage::DatabaseSettings {
            durability: self.durability,
            max_storage_bytes: self.limits.max_storage_bytes,
            max_sql_length: self.limits.max_sql_length,
            max_sql_parameters: self.limits.max_sql_parameters,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            data_dir: PathBuf::from("data"),
            idle_timeout: Duration::from_secs(10),
            max_active: 1000,
            max_open_databases: None,
            group_commit_max_events: 64,
            group_commit_max_delay: Duration::from_millis(5),
            durability: Durability::Full,
            limits: Limits::default(),
            alarms: AlarmSettings::default(),
            server: ServerSettings::default(),
            sockets: SocketSettings::default(),
            events: EventSettings::default(),
            logs: LogSettings::default(),
            inspect: InspectSettings::default(),
            assets: None,
            admin_token: None,
            trusted_proxies: Vec::new(),
            auth: None,
            execution: ExecutionSettings::default(),
            shutdown_timeout: Duration::from_secs(10),
            deploy: DeploySettings::default(),
            replication: ReplicationSettings::default(),
            cluster: None,
            classes: BTreeMap::new(),
            tenants: crate::tenants::Quotas::default(),
            class_tables: BTreeMap::new(),
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
        config.class_tables = class_tables(&text);
        config.validate()?;
        Ok(config)
    }

    /// Makes relative paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.data_dir.is_relative() {
            self.data_dir = base.join(&self.data_dir);
        }
        if let Some(assets) = &mut self.assets
            && assets.dir.is_relative()
        {
            assets.dir = base.join(&assets.dir);
        }
        for class in self.classes.values_mut() {
            if class.path.is_relative() {
                class.path = base.join(&class.path);
            }
            for source in class.secrets.values_mut() {
                source.resolve_path(base);
            }
        }
    }

    /// The effective settings of class `name`.
    pub fn class_settings(&self, class: &ClassConfig) -> ClassSettings {
        ClassSettings {
            durability: class.durability.unwrap_or(self.durability),
            limits: self.limits.overridden_by(&class.limits),
            access: class.access,
            config: Default::default(),
            outbound: class.outbound.clone(),
        }
    }

    /// The accounts' settings if accounts are on: a class needs them, or
    /// `[auth]` is present.
    pub fn accounts(&self) -> Option<AuthSettings> {
        let needed = self
            .classes
            .values()
            .any(|class| matches!(class.access, Access::User | Access::Org));
        match &self.auth {
            Some(settings) => Some(settings.clone()),
            None if needed => Some(AuthSettings::default()),
            None => None,
        }
    }

    /// The most durable of the classes' durabilities (the server's when
    /// there are none).
    pub fn catalog_durability(&self) -> Durability {
        let full = if self.classes.is_empty() {
            self.durability != Durability::Normal
        } else {
            self.classes
                .values()
                .any(|class| self.class_settings(class).durability != Durability::Normal)
        };
        if full {
            Durability::Full
        } else {
            Durability::Normal
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(token) = &self.admin_token
            && token.expose().len() < MIN_ADMIN_TOKEN_BYTES
        {
            bail!(
                "admin_token must be at least {MIN_ADMIN_TOKEN_BYTES} bytes (it has {}): \
                 make a random one with `head -c 32 /dev/urandom | base64`, or leave \
                 admin_token out to turn the admin API off",
                token.expose().len()
            );
        }
        self.limits.validate("[limits]")?;
        self.replication.validate()?;
        if let Some(cluster) = &self.cluster {
            cluster.check()?;
        }
        let replicated = std::iter::once(self.durability)
            .chain(self.classes.values().filter_map(|class| class.durability))
            .any(|durability| durability == Durability::Replicated);
        if replicated && !self.replication.enabled() {
            bail!(
                "durability = \"replicated\" needs a store: set [replication] url \
                 (file:///path or s3://bucket/prefix)"
            );
        }
        for (name, class) in &self.classes {
            validate_class_name(name)?;
            values::validate(name, &class.vars, &class.secrets)?;
            self.class_settings(class)
                .limits
                .validate(&format!("[classes.{name}.limits]"))?;
            if let Some(tenant) = &class.tenant {
                crate::tenants::validate_name(tenant)
                    .map_err(|error| anyhow::anyhow!("[classes.{name}] tenant: {error}"))?;
            }
        }
        self.tenants
            .validate("[tenants]")
            .map_err(|error| anyhow::anyhow!(error))?;
        if let Some(auth) = &self.auth {
            auth.validate()?;
        }
        self.execution.validate()?;
        if self.shutdown_timeout > Duration::from_secs(3600) {
            bail!("shutdown_timeout must be at most 1h");
        }
        if self.group_commit_max_events == 0 {
            bail!("group_commit_max_events must be at least 1");
        }
        let sockets = &self.sockets;
        if sockets.max_per_object == 0
            || sockets.max_queued_messages == 0
            || sockets.max_message_bytes < 125
            || sockets.max_queued_bytes < sockets.max_message_bytes
        {
            bail!(
                "[sockets]: max_per_object and max_queued_messages must be at least 1, max_message_bytes at least 125, max_queued_bytes at least max_message_bytes"
            );
        }
        let logs = &self.logs;
        if logs.max_line_bytes == 0 || logs.queue_bytes < logs.max_line_bytes {
            bail!(
                "[logs]: max_line_bytes must be at least 1 and queue_bytes at least max_line_bytes"
            );
        }
        self.server.validate()?;
        if self.events.retention == 0 {
            bail!("[events]: retention must be at least 1");
        }
        if sockets.ping_interval < Duration::from_millis(100) {
            bail!("[sockets]: ping_interval must be at least 100ms");
        }
        if self.max_active == 0 {
            bail!("max_active must be at least 1");
        }
        if self
            .max_open_databases
            .is_some_and(|open| open < self.max_active)
        {
            bail!(
                "max_open_databases must be at least max_active: each live instance holds its database"
            );
        }
        if self.idle_timeout.is_zero() {
            bail!("idle_timeout must be longer than zero");
        }
        Ok(())
    }
}

/// The `[classes.NAME]` tables of a config file as JSON, without `path`.
fn class_tables(text: &str) -> BTreeMap<String, serde_json::Value> {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return BTreeMap::new();
    };
    let Some(toml::Value::Table(classes)) = table.get("classes") else {
        return BTreeMap::new();
    };
    classes
        .iter()
        .filter_map(|(name, class)| {
            let mut json = serde_json::to_value(class).ok()?;
            json.as_object_mut()?.remove("path");
            Some((name.clone(), json))
        })
        .collect()
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
            durability = "normal"
            [limits]
            max_body_bytes = 1024
            max_cpu_per_event = "2s"
            [classes.counter]
            path = "counter.wasm"
            [classes.strict]
            path = "strict.wasm"
            durability = "full"
            [classes.strict.limits]
            max_cpu_per_event = "100ms"
            max_storage_bytes = 1048576
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
        assert_eq!(
            config.catalog_durability(),
            Durability::Full,
            "one full class makes the catalog full"
        );
        config.classes.remove("strict");
        assert_eq!(config.catalog_durability(), Durability::Normal);
    }

    #[test]
    fn the_assets_directory_is_relative_to_the_file() {
        let mut config: Config = toml::from_str("[assets]\ndir = \"web\"\n").expect("parses");
        config.resolve_paths(Path::new("/srv"));
        let assets = config.assets.expect("[assets]");
        assert_eq!(assets.dir, Path::new("/srv/web"));
        let config: Config = toml::from_str("").expect("parses");
        assert!(config.assets.is_none(), "no static files unless asked");
        assert!(toml::from_str::<Config>("[assets]\ndirectory = \"web\"\n").is_err());
    }

    #[test]
    fn admin_tokens_must_be_long() {
        let short: Config = toml::from_str("admin_token = \"change-me\"").expect("parses");
        let error = short.validate().expect_err("too short").to_string();
        assert!(error.contains("at least 32 bytes"), "{error}");
        let long: Config =
            toml::from_str(&format!("admin_token = {:?}", "x".repeat(32))).expect("parses");
        long.validate().expect("32 bytes are enough");
    }

    #[test]
    fn parses_trusted_proxies_and_classes() {
        let config: Config = toml::from_str(
            r#"
            trusted_proxies = ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::ffff:172.16.0.1"]
            [classes.site]
            path = "site.wasm"
            trusted = true
            "#,
        )
        .expect("valid config");
        assert!(config.classes["site"].trusted);
        let trusted = |text: &str| {
            let address: IpAddr = text.parse().expect("an address");
            config
                .trusted_proxies
                .iter()
                .any(|range| range.contains(address))
        };
        assert!(trusted("10.1.2.3"));
        assert!(trusted("::ffff:10.1.2.3"));
        assert!(trusted("192.168.1.7"));
        assert!(!trusted("192.168.1.8"));
        assert!(trusted("2001:db8:ffff::1"));
        assert!(!trusted("2001:db9::1"));
        assert!(trusted("172.16.0.1"));
        assert!(!trusted("11.0.0.1"));
        let everything: IpRange = "0.0.0.0/0".parse().expect("a range");
        assert!(everything.contains("8.8.8.8".parse().expect("an address")));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.1/x", "::/129"] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad}");
        }
        assert!(toml::from_str::<Config>("trusted_proxies = [\"10.0.0.0/99\"]").is_err());
    }

    #[test]
    fn parses_and_checks_the_connection_and_response_caps() {
        let config: Config = toml::from_str(
            "[server]\nheader_read_timeout = \"2s\"\nmax_connections_per_address = 8\n\
             [sockets]\nmax_queued_bytes = 2097152\n[limits]\nmax_response_bytes = 1000\n",
        )
        .expect("valid config");
        config.validate().expect("valid");
        assert_eq!(config.server.header_read_timeout, Duration::from_secs(2));
        assert_eq!(
            config.server.idle_connection_timeout,
            Duration::from_secs(60)
        );
        assert_eq!(config.server.max_connections_per_address, 8);
        assert_eq!(config.sockets.max_queued_bytes, 2 << 20);
        assert_eq!(config.limits.max_response_bytes, 1000);
        assert_eq!(Limits::default().max_response_bytes, 32 << 20);
        for bad in [
            "[server]\nmax_connections_per_address = 0\n",
            "[server]\nheader_read_timeout = \"0s\"\n",
            "[sockets]\nmax_queued_bytes = 1000\n",
            "[limits]\nmax_response_bytes = 0\n",
        ] {
            let config: Config = toml::from_str(bad).expect("parses");
            assert!(config.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_typos_and_bad_names() {
        assert!(toml::from_str::<Config>("idle_timout = \"1s\"").is_err());
        assert!(toml::from_str::<Config>("[limits]\nmax_cpu = \"1s\"").is_err());
        let tiny: Config = toml::from_str("[limits]\nmax_cpu_per_event = \"1ms\"").expect("parses");
        assert!(tiny.validate().is_err());
        assert!(validate_class_name("Counter").is_err());
        assert!(validate_class_name("-x").is_err());
        assert!(validate_class_name("my-class_2").is_ok());
    }

    #[test]
    fn open_databases_are_at_least_the_live_instances() {
        let fewer: Config =
            toml::from_str("max_active = 100\nmax_open_databases = 99").expect("parses");
        assert!(fewer.validate().is_err());
        let more: Config =
            toml::from_str("max_active = 100\nmax_open_databases = 400").expect("parses");
        assert!(more.validate().is_ok());
        assert_eq!(crate::os_limits::open_databases(100, Some(400)), 400);
        assert_eq!(crate::os_limits::open_databases(100, Some(50)), 100);
    }
}
