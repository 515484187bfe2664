//! A class's outbound allow-list, `[classes.<name>] outbound = [...]`:
//! which hosts its objects may reach over HTTP. Nothing is allowed unless
//! an entry matches.
//!
//! An entry is `HOST` or `HOST:PORT`:
//!
//! - `HOST` is a DNS name (`api.example.com`, compared case-insensitively),
//!   an IPv4 address (`127.0.0.1`) or a bracketed IPv6 address (`[::1]`);
//!   `*.example.org` matches exactly one more label in front
//!   (`hooks.example.org`, not `example.org` nor `a.b.example.org`), as a
//!   TLS wildcard certificate does. A bare `*` is refused.
//! - `PORT` is a number or `*` (any port); without it, only the default
//!   port of the request's scheme matches (443 for `https`, 80 for `http`).
//!
//! The match is against the authority the guest wrote in its URL, before
//! any DNS lookup: the addresses a name resolves to are not checked.

use std::fmt;

use serde::Deserialize;

/// A class's allow-list, parsed once when the config is read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct OutboundAllowList(Vec<OutboundRule>);

impl OutboundAllowList {
    /// A list from its entries, as `outbound = [...]` would give it.
    pub fn new<S: Into<String>>(entries: impl IntoIterator<Item = S>) -> anyhow::Result<Self> {
        let rules = entries
            .into_iter()
            .map(|entry| OutboundRule::try_from(entry.into()))
            .collect::<Result<_, _>>()?;
        Ok(OutboundAllowList(rules))
    }

    /// Whether a request to `host` (as in a URL: lowercased here, an IPv6
    /// address in brackets) on `port` is allowed; `default_port` is its
    /// scheme's.
    pub fn allows(&self, host: &str, port: u16, default_port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        self.0
            .iter()
            .any(|rule| rule.host.matches(&host) && rule.port.matches(port, default_port))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One entry of the allow-list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct OutboundRule {
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// A name or an address, lowercased (IPv6 in brackets).
    Exact(String),
    /// `*.suffix`: one label, then `.suffix`.
    OneLabelUnder(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    /// No port written: the scheme's default port.
    Default,
    Any,
    Exact(u16),
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => host == exact,
            HostPattern::OneLabelUnder(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|front| front.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        }
    }
}

impl PortPattern {
    fn matches(self, port: u16, default_port: u16) -> bool {
        match self {
            PortPattern::Default => port == default_port,
            PortPattern::Any => true,
            PortPattern::Exact(exact) => port == exact,
        }
    }
}

/// Why an entry of `outbound` was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid outbound entry {entry:?}: {why} (expected HOST, HOST:PORT or HOST:*, e.g. \"api.example.com\", \"*.example.org:443\", \"127.0.0.1:*\")"
)]
pub struct InvalidRule {
    entry: String,
    why: &'static str,
}

impl TryFrom<String> for OutboundRule {
    type Error = InvalidRule;

    fn try_from(entry: String) -> Result<Self, InvalidRule> {
        let invalid = |why| InvalidRule {
            entry: entry.clone(),
            why,
        };
        let lowered = entry.trim().to_ascii_lowercase();
        if lowered.contains("://") || lowered.contains('/') {
            return Err(invalid("write the host only, without a scheme or a path"));
        }
        // Split off the port: after `]` for IPv6, else after the one `:`.
        let (host, port) = if let Some(rest) = lowered.strip_prefix('[') {
            let (address, after) = rest
                .split_once(']')
                .ok_or_else(|| invalid("an IPv6 address needs its closing `]`"))?;
            address
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| invalid("not an IPv6 address between the brackets"))?;
            let port = match after {
                "" => None,
                after => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| invalid("expected `:PORT` after the `]`"))?,
                ),
            };
            (format!("[{address}]"), port)
        } else {
            match lowered.split_once(':') {
                Some((host, port)) => (host.to_string(), Some(port)),
                None => (lowered.clone(), None),
            }
        };
        let port = match port {
            None => PortPattern::Default,
            Some("*") => PortPattern::Any,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => PortPattern::Exact(port),
                _ => return Err(invalid("the port must be 1 to 65535 or `*`")),
            },
        };
        let host = if host.starts_with('[') {
            HostPattern::Exact(host)
        } else if let Some(suffix) = host.strip_prefix("*.") {
            check_name(suffix).map_err(invalid)?;
            HostPattern::OneLabelUnder(suffix.to_string())
        } else if host == "*" {
            return Err(invalid(
                "`*` alone would allow every host; list the hosts the class needs",
            ));
        } else {
            check_name(&host).map_err(invalid)?;
            HostPattern::Exact(host)
        };
        Ok(OutboundRule { host, port })
    }
}

/// A DNS name or an IPv4 address: labels of letters, digits, `-` and `_`.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the host is empty");
    }
    if name.contains('*') {
        return Err("`*` may only stand for the first label (`*.example.org`)");
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !labels_ok || name.len() > 253 {
        return Err("not a valid host name");
    }
    Ok(())
}

impl fmt::Display for OutboundRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Exact(host) => write!(f, "{host}")?,
            HostPattern::OneLabelUnder(suffix) => write!(f, "*.{suffix}")?,
        }
        match self.port {
            PortPattern::Default => Ok(()),
            PortPattern::Any => write!(f, ":*"),
            PortPattern::Exact(port) => write!(f, ":{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> OutboundAllowList {
        OutboundAllowList(
            entries
                .iter()
                .map(|entry| OutboundRule::try_from(entry.to_string()).expect("valid entry"))
                .collect(),
        )
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let empty = OutboundAllowList::default();
        assert!(!empty.allows("api.example.com", 443, 443));
        assert!(!empty.allows("127.0.0.1", 80, 80));
    }

    #[test]
    fn a_host_without_a_port_allows_only_the_schemes_default_port() {
        let allowed = list(&["api.example.com"]);
        assert!(allowed.allows("api.example.com", 443, 443));
        assert!(allowed.allows("API.Example.com", 80, 80));
        assert!(!allowed.allows("api.example.com", 8443, 443));
        assert!(!allowed.allows("example.com", 443, 443));
        assert!(!allowed.allows("api.example.com.evil.net", 443, 443));
    }

    #[test]
    fn a_wildcard_stands_for_exactly_one_label() {
        let allowed = list(&["*.example.org:443"]);
        assert!(allowed.allows("hooks.example.org", 443, 443));
        assert!(!allowed.allows("example.org", 443, 443));
        assert!(!allowed.allows("a.b.example.org", 443, 443));
        assert!(!allowed.allows("evilexample.org", 443, 443));
        assert!(!allowed.allows("hooks.example.org", 80, 80));
    }

    #[test]
    fn addresses_and_any_port() {
        let allowed = list(&["127.0.0.1:*", "[::1]:8080"]);
        assert!(allowed.allows("127.0.0.1", 41234, 80));
        assert!(!allowed.allows("127.0.0.2", 41234, 80));
        assert!(allowed.allows("[::1]", 8080, 80));
        assert!(!allowed.allows("[::1]", 8081, 80));
    }

    #[test]
    fn bad_entries_are_refused_with_the_grammar() {
        for bad in [
            "*",
            "*:443",
            "https://api.example.com",
            "api.example.com/path",
            "api.example.com:0",
            "api.example.com:99999",
            "a.*.example.org",
            "",
            "[::1",
            "[nope]:80",
            "bad host",
        ] {
            let error = OutboundRule::try_from(bad.to_string()).expect_err(bad);
            assert!(error.to_string().contains("HOST:PORT"), "{error}");
        }
    }

    #[test]
    fn parses_from_toml() {
        #[derive(Deserialize)]
        struct Class {
            outbound: OutboundAllowList,
        }
        let class: Class =
            toml::from_str(r#"outbound = ["api.example.com", "*.example.org:443", "127.0.0.1:*"]"#)
                .expect("parses");
        assert!(class.outbound.allows("127.0.0.1", 9, 80));
        assert!(toml::from_str::<Class>(r#"outbound = ["*"]"#).is_err());
    }
}
