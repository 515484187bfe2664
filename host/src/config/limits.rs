//! Every limit an object meets, defined once.
//!
//! - The configurable ones come from one field list (the `limits!` macro
//!   below): [`Limits`] (`[limits]`, every field required, with its
//!   default), [`LimitOverrides`] (`[classes.<name>.limits]`, the same
//!   fields, each optional) and the merge of the two are all generated
//!   from it, so a new limit is one entry here.
//! - The fixed ones, the same for every class, are the constants at the
//!   end; the code that enforces them refers to them, and README.md
//!   documents them.
//!
//! `limits::EventLimits` (the running instance's memory limiter) and the
//! watchdog's `Budget` take their values from a class's [`Limits`].

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use crate::execution::Budget;

/// Defines [`Limits`], [`LimitOverrides`] and [`Limits::overridden_by`]
/// from one list of `name: type = default` fields. A field's doc comment
/// goes on `Limits`; its `#[serde(...)]` attributes go on both structs
/// (`with = "humantime_serde"` reads a `Duration` and an
/// `Option<Duration>` alike).
macro_rules! limits {
    ($(
        $(#[doc = $doc:literal])*
        $(#[serde($($serde:tt)*)])*
        $field:ident: $ty:ty = $default:expr,
    )*) => {
        /// What one event or object of a class may use. A breach fails only
        /// that event, with an error naming the limit.
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Limits {
            $(
                $(#[doc = $doc])*
                $(#[serde($($serde)*)])*
                pub $field: $ty,
            )*
        }

        impl Default for Limits {
            fn default() -> Self {
                Limits { $($field: $default,)* }
            }
        }

        /// A class's `[classes.<name>.limits]`: any of [`Limits`]' fields.
        #[derive(Debug, Clone, Default, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct LimitOverrides {
            $(
                $(#[serde($($serde)*)])*
                pub $field: Option<$ty>,
            )*
        }

        impl Limits {
            /// These limits with a class's overrides applied.
            pub fn overridden_by(&self, overrides: &LimitOverrides) -> Limits {
                Limits {
                    $($field: overrides.$field.unwrap_or(self.$field),)*
                }
            }
        }
    };
}

limits! {
    /// Largest request body; larger ones get 413.
    max_body_bytes: usize = 1 << 20,
    /// Most linear memory one instance may use.
    max_memory_bytes: usize = 128 << 20,
    /// Longest an event may compute (wasm, SQL and host calls, and waiting
    /// for a core; not waiting on a host future); then it is stopped.
    #[serde(with = "humantime_serde")]
    max_cpu_per_event: Duration = Duration::from_secs(30),
    /// Longest an event may take, waiting included (a guest sleeping, say).
    #[serde(with = "humantime_serde", alias = "max_wall_per_event")]
    max_wall_time_per_event: Duration = Duration::from_secs(60),
    /// Largest an object's database may grow; writes beyond it get a
    /// `storage-full` error.
    max_storage_bytes: u64 = 1 << 30,
    /// Longest SQL text one statement may have.
    max_sql_length: u32 = 100_000,
    /// Most `?` parameters one statement may have.
    max_sql_parameters: u32 = 999,
    /// Largest response body an object may answer with; a larger one is
    /// replaced by a 500 `response_too_large`.
    max_response_bytes: usize = 32 << 20,
    /// Longest an outbound HTTP request may take to connect (TCP and TLS).
    #[serde(with = "humantime_serde")]
    outbound_connect_timeout: Duration = Duration::from_secs(10),
    /// Longest an outbound HTTP request may wait for the response's head
    /// once sent.
    #[serde(with = "humantime_serde")]
    outbound_first_byte_timeout: Duration = Duration::from_secs(30),
    /// Longest an outbound HTTP request may take in all, from the call to
    /// the last byte of its response body.
    #[serde(with = "humantime_serde")]
    outbound_timeout: Duration = Duration::from_secs(30),
    /// Largest response body an outbound HTTP request may receive; a larger
    /// one is an error, never a truncated body.
    max_outbound_response_bytes: u64 = 10 << 20,
    /// Most outbound HTTP requests one object may have in flight; one more
    /// fails at once (`connection-limit-reached`).
    max_outbound_requests: usize = 8,
}

impl Limits {
    /// The CPU and wall-clock time the watchdog gives one event.
    pub fn budget(&self) -> Budget {
        Budget {
            cpu: self.max_cpu_per_event,
            wall: self.max_wall_time_per_event,
        }
    }

    pub(super) fn validate(&self, whose: &str) -> anyhow::Result<()> {
        let tick = crate::execution::TICK;
        if self.max_cpu_per_event < tick || self.max_wall_time_per_event < tick {
            bail!(
                "{whose}: max_cpu_per_event and max_wall_time_per_event must be at least {tick:?}"
            );
        }
        if self.max_memory_bytes < 1 << 20 {
            bail!("{whose}: max_memory_bytes must be at least 1 MiB");
        }
        if self.max_storage_bytes < 64 << 10 {
            bail!("{whose}: max_storage_bytes must be at least 64 KiB");
        }
        if self.max_sql_length < 1024 || self.max_sql_length > 1 << 30 {
            bail!("{whose}: max_sql_length must be between 1 KiB and 1 GiB");
        }
        if self.max_sql_parameters > 32_766 {
            bail!("{whose}: max_sql_parameters must be at most 32766");
        }
        if self.outbound_connect_timeout.is_zero()
            || self.outbound_first_byte_timeout.is_zero()
            || self.outbound_timeout.is_zero()
        {
            bail!("{whose}: the outbound timeouts must be more than 0");
        }
        if self.max_outbound_requests == 0 {
            bail!("{whose}: max_outbound_requests must be at least 1");
        }
        if self.outbound_timeout >= self.max_wall_time_per_event {
            // Allowed, but a slow host then ends the whole event at the
            // wall-clock limit instead of failing the one request.
            tracing::warn!(
                "{whose}: outbound_timeout ({:?}) is not below max_wall_time_per_event ({:?}): a slow host will stop the event instead of failing its request",
                self.outbound_timeout,
                self.max_wall_time_per_event
            );
        }
        if self.max_response_bytes == 0 {
            bail!("{whose}: max_response_bytes must be at least 1");
        }
        Ok(())
    }
}

/// Longest object name, in bytes (after percent-decoding).
pub const MAX_OBJECT_NAME_BYTES: usize = 512;

/// Longest name of an event in an object's log (`events.publish`), in
/// bytes: it is sent as an SSE `event:` line to every subscriber.
pub const MAX_EVENT_NAME_BYTES: usize = 64;

/// What one call of the `kv` interface may handle; a call beyond a limit
/// fails with `too-big`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLimits {
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
    /// Most keys in one `get-many` or `put-many`.
    pub max_batch: usize,
    /// Most bytes (keys and values) one `list` may return.
    pub max_list_bytes: usize,
}

/// The `kv` limits, the same for every class.
pub const KV: KvLimits = KvLimits {
    max_key_bytes: 2048,
    max_value_bytes: 2 << 20,
    max_batch: 128,
    max_list_bytes: 32 << 20,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_replaces_only_the_fields_it_names() {
        let base = Limits::default();
        assert_eq!(base.overridden_by(&LimitOverrides::default()), base);
        let overrides: LimitOverrides = toml::from_str(
            "max_cpu_per_event = \"100ms\"\nmax_wall_per_event = \"2s\"\nmax_storage_bytes = 65536",
        )
        .expect("valid overrides");
        let limits = base.overridden_by(&overrides);
        assert_eq!(limits.max_cpu_per_event, Duration::from_millis(100));
        assert_eq!(
            limits.max_wall_time_per_event,
            Duration::from_secs(2),
            "the old name is still read"
        );
        assert_eq!(limits.max_storage_bytes, 65536);
        assert_eq!(
            Limits {
                max_cpu_per_event: base.max_cpu_per_event,
                max_wall_time_per_event: base.max_wall_time_per_event,
                max_storage_bytes: base.max_storage_bytes,
                ..limits.clone()
            },
            base,
            "every other field keeps the server's value"
        );
        assert_eq!(limits.budget().cpu, Duration::from_millis(100));
    }

    #[test]
    fn overrides_refuse_what_limits_refuse() {
        for bad in [
            "max_cpu = \"1s\"",
            "max_cpu_per_event = 5",
            "max_body_bytes = \"1\"",
        ] {
            assert!(toml::from_str::<Limits>(bad).is_err(), "{bad}");
            assert!(toml::from_str::<LimitOverrides>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let limits = Limits::default();
        assert_eq!(limits.max_body_bytes, 1_048_576);
        assert_eq!(limits.max_memory_bytes, 134_217_728);
        assert_eq!(limits.max_cpu_per_event, Duration::from_secs(30));
        assert_eq!(limits.max_wall_time_per_event, Duration::from_secs(60));
        assert_eq!(limits.max_storage_bytes, 1_073_741_824);
        assert_eq!(limits.max_sql_length, 100_000);
        assert_eq!(limits.max_sql_parameters, 999);
        assert_eq!(limits.max_response_bytes, 33_554_432);
    }
}
