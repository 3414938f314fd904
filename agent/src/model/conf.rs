//! What a namespace is configured with beyond its addresses: NAT, DNS, bandwidth limits. Plain
//! data with its validation; the driver makes the kernel look like it.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The part of a namespace that `create` sets beyond its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conf {
    /// Masquerade the namespace's traffic out of the uplink.
    pub nat: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    /// Published ports: traffic to a host address and port reaches the namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortForward>,
    /// The address the namespace's outbound traffic is SNATed to instead of being masqueraded
    /// (one of the host's addresses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_addr: Option<Ipv4Addr>,
    /// The same for the IPv6 traffic of a dual-stack namespace (NAT66 otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_addr6: Option<Ipv6Addr>,
    /// The client's own key/value pairs, to select the namespace by (`list`, `watch`).
    #[serde(default)]
    pub labels: super::Labels,
}

impl Default for Conf {
    fn default() -> Self {
        Conf {
            nat: true,
            dns: None,
            bandwidth: None,
            ports: vec![],
            egress_addr: None,
            egress_addr6: None,
            labels: super::Labels::new(),
        }
    }
}

/// Most port forwards one namespace may have.
pub const MAX_PORTS: usize = 64;

impl Conf {
    /// Checks what can be checked without knowing the host: each part, and how they combine.
    pub fn validate(&self) -> Result<(), ConfError> {
        super::labels::validate(&self.labels).map_err(|e| refuse("labels", e.to_string()))?;
        if let Some(d) = &self.dns {
            d.validate()?;
        }
        if let Some(b) = &self.bandwidth {
            b.validate()?;
        }
        if (self.egress_addr.is_some() || self.egress_addr6.is_some()) && !self.nat {
            return Err(refuse(
                "egress_addr",
                "needs nat: true (it replaces the masquerade of outbound traffic)",
            ));
        }
        if self.ports.len() > MAX_PORTS {
            return Err(refuse("ports", format!("at most {MAX_PORTS} forwards")));
        }
        let mut seen = HashSet::new();
        for p in &self.ports {
            if p.host_port == 0 || p.port == 0 {
                return Err(refuse("ports", "ports are 1-65535"));
            }
            if !seen.insert(p.listener()) {
                return Err(refuse("ports", format!("{} is given twice", p.listener())));
            }
        }
        for p in &self.ports {
            // A forward on every address collides with one on a given address.
            if p.host_addr.is_some()
                && seen.contains(
                    &PortForward {
                        host_addr: None,
                        ..*p
                    }
                    .listener(),
                )
            {
                return Err(refuse(
                    "ports",
                    format!(
                        "{} overlaps a forward of the same port on every address",
                        p.listener()
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// IPPROTO_*.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    pub fn from_number(n: u8) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// A published port: `proto` connections to `host_addr:host_port` (`host_addr` absent: any
/// address of the host) reach the namespace's address at `port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortForward {
    pub proto: Proto,
    pub host_port: u16,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_addr: Option<IpAddr>,
}

/// What a forward listens on: protocol, host address (or any), host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Listener {
    pub proto: Proto,
    pub host_addr: Option<IpAddr>,
    pub host_port: u16,
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.host_addr {
            Some(IpAddr::V6(a)) => write!(f, "{}/[{a}]:{}", self.proto, self.host_port),
            Some(a) => write!(f, "{}/{a}:{}", self.proto, self.host_port),
            None => write!(f, "{}/*:{}", self.proto, self.host_port),
        }
    }
}

impl PortForward {
    pub fn listener(&self) -> Listener {
        Listener {
            proto: self.proto,
            host_addr: self.host_addr,
            host_port: self.host_port,
        }
    }
}

/// Why a configuration value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct ConfError {
    pub field: &'static str,
    pub why: String,
}

fn refuse(field: &'static str, why: impl Into<String>) -> ConfError {
    ConfError {
        field,
        why: why.into(),
    }
}

/// The namespace's resolver configuration: written to `<etc-netns-dir>/NAME/resolv.conf`, which
/// `ip netns exec` (and `nsagent exec`) bind over `/etc/resolv.conf`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    pub nameservers: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// resolv.conf reads at most three nameservers (MAXNS).
pub const MAX_NAMESERVERS: usize = 3;
/// Search domains and options kept; glibc reads more, but a longer list is a mistake.
const MAX_SEARCH: usize = 6;
const MAX_OPTIONS: usize = 16;

impl Dns {
    pub fn validate(&self) -> Result<(), ConfError> {
        let n = self.nameservers.len();
        if n == 0 || n > MAX_NAMESERVERS {
            return Err(refuse(
                "dns.nameservers",
                format!("1 to {MAX_NAMESERVERS} addresses, got {n}"),
            ));
        }
        if self.search.len() > MAX_SEARCH {
            return Err(refuse(
                "dns.search",
                format!("at most {MAX_SEARCH} domains"),
            ));
        }
        for d in &self.search {
            if !valid_domain(d) {
                return Err(refuse("dns.search", format!("invalid domain {d:?}")));
            }
        }
        if self.options.len() > MAX_OPTIONS {
            return Err(refuse(
                "dns.options",
                format!("at most {MAX_OPTIONS} options"),
            ));
        }
        for o in &self.options {
            if !valid_option(o) {
                return Err(refuse(
                    "dns.options",
                    format!("invalid option {o:?}: expected a word like ndots:2 or rotate"),
                ));
            }
        }
        Ok(())
    }

    /// The file's text. The first line marks it as the agent's, so that the agent only ever
    /// removes files it wrote.
    pub fn resolv_conf(&self, name: &str) -> String {
        let mut s = format!("{}{name}\n", Dns::MARK);
        for ns in &self.nameservers {
            let _ = writeln!(s, "nameserver {ns}");
        }
        if !self.search.is_empty() {
            let _ = writeln!(s, "search {}", self.search.join(" "));
        }
        if !self.options.is_empty() {
            let _ = writeln!(s, "options {}", self.options.join(" "));
        }
        s
    }

    /// Reads back a file [`Dns::resolv_conf`] wrote for `name`; anything else is `None`.
    pub fn parse_resolv_conf(text: &str, name: &str) -> Option<Dns> {
        let mut lines = text.lines();
        if lines.next()? != format!("{}{name}", Dns::MARK) {
            return None;
        }
        let mut dns = Dns {
            nameservers: vec![],
            search: vec![],
            options: vec![],
        };
        for line in lines {
            let mut words = line.split_whitespace();
            let rest = || line.split_whitespace().skip(1).map(String::from);
            match words.next() {
                Some("nameserver") => dns.nameservers.push(words.next()?.parse().ok()?),
                Some("search") => dns.search.extend(rest()),
                Some("options") => dns.options.extend(rest()),
                _ => return None,
            }
        }
        dns.validate().ok()?;
        Some(dns)
    }

    const MARK: &'static str = "# written by nsagent for namespace ";
}

/// A hostname-like domain: labels of [A-Za-z0-9-_], dots between, at most 253 bytes.
fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

/// A resolv.conf option: a lowercase word, optionally `:N` (`ndots:2`, `rotate`, `edns0`).
fn valid_option(o: &str) -> bool {
    let (word, value) = o.split_once(':').unwrap_or((o, ""));
    !word.is_empty()
        && o.len() <= 32
        && word
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && word.as_bytes()[0].is_ascii_lowercase()
        && (!o.contains(':') || !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()))
}

/// Rate limits, in bits per second: `ingress` into the namespace, `egress` out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bandwidth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_bps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_bps: Option<u64>,
}

/// The smallest limit accepted: 1 kB/s.
pub const MIN_BPS: u64 = 8_000;

impl Bandwidth {
    pub fn validate(&self) -> Result<(), ConfError> {
        if self.ingress_bps.is_none() && self.egress_bps.is_none() {
            return Err(refuse(
                "bandwidth",
                "give ingress_bps, egress_bps or both (or leave bandwidth out)",
            ));
        }
        for (field, v) in [
            ("bandwidth.ingress_bps", self.ingress_bps),
            ("bandwidth.egress_bps", self.egress_bps),
        ] {
            if let Some(v) = v {
                if v < MIN_BPS {
                    return Err(refuse(field, format!("{v} is below {MIN_BPS} bits/s")));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns() -> Dns {
        Dns {
            nameservers: vec!["9.9.9.9".parse().unwrap(), "2001:2::53".parse().unwrap()],
            search: vec!["ci.example".into()],
            options: vec!["ndots:2".into(), "rotate".into()],
        }
    }

    #[test]
    fn resolv_conf_reads_back() {
        let text = dns().resolv_conf("a");
        assert_eq!(
            text,
            "# written by nsagent for namespace a\nnameserver 9.9.9.9\nnameserver 2001:2::53\nsearch ci.example\noptions ndots:2 rotate\n"
        );
        assert_eq!(Dns::parse_resolv_conf(&text, "a"), Some(dns()));
        assert_eq!(Dns::parse_resolv_conf(&text, "b"), None, "another's file");
        assert_eq!(Dns::parse_resolv_conf("nameserver 1.1.1.1\n", "a"), None);
    }

    #[test]
    fn nothing_can_break_out_of_its_line() {
        let mut d = dns();
        d.search = vec!["a.example\nnameserver 6.6.6.6".into()];
        assert!(d.validate().is_err());
        let mut d = dns();
        d.options = vec!["ndots:2 x".into()];
        assert!(d.validate().is_err());
        for bad in ["", ":1", "ndots:", "NDOTS", "a:b", "1x"] {
            let mut d = dns();
            d.options = vec![bad.into()];
            assert!(d.validate().is_err(), "{bad:?}");
        }
        let mut d = dns();
        d.nameservers = vec![];
        assert!(d.validate().is_err());
        d.nameservers = vec!["1.1.1.1".parse().unwrap(); 4];
        assert!(d.validate().is_err());
    }

    #[test]
    fn port_forwards() {
        let fwd = |proto, host_port, host_addr: Option<&str>| PortForward {
            proto,
            host_port,
            port: 80,
            host_addr: host_addr.map(|a| a.parse().unwrap()),
        };
        let conf = |ports: Vec<PortForward>| Conf {
            ports,
            ..Conf::default()
        };
        assert!(conf(vec![
            fwd(Proto::Tcp, 8080, None),
            fwd(Proto::Udp, 8080, None),
            fwd(Proto::Tcp, 8081, Some("198.18.0.1")),
            fwd(Proto::Tcp, 8081, Some("198.18.0.5")),
        ])
        .validate()
        .is_ok());
        for bad in [
            vec![fwd(Proto::Tcp, 8080, None), fwd(Proto::Tcp, 8080, None)],
            vec![
                fwd(Proto::Tcp, 8080, None),
                fwd(Proto::Tcp, 8080, Some("198.18.0.1")),
            ],
            vec![fwd(Proto::Tcp, 0, None)],
            (1..=65).map(|p| fwd(Proto::Tcp, p, None)).collect(),
        ] {
            assert!(conf(bad).validate().is_err());
        }
        let c = Conf {
            nat: false,
            egress_addr: Some("198.18.0.1".parse().unwrap()),
            ..Conf::default()
        };
        assert!(c.validate().is_err(), "egress without nat");
    }

    #[test]
    fn bandwidth_limits() {
        let b = |i, e| Bandwidth {
            ingress_bps: i,
            egress_bps: e,
        };
        assert!(b(Some(10_000_000), None).validate().is_ok());
        assert!(b(None, Some(8_000)).validate().is_ok());
        assert!(b(None, Some(7_999)).validate().is_err());
        assert!(b(None, None).validate().is_err());
    }
}
