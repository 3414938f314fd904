//! What a namespace should look like (`NamespaceSpec`, validated once at the edge) and what
//! exists (`Namespace`). Plain data: nothing here touches the kernel.

mod conf;
mod drift;
pub mod labels;
mod subnet6;

pub use conf::{
    Bandwidth, Conf, ConfError, Dns, Listener, PortForward, Proto, MAX_NAMESERVERS, MAX_PORTS,
    MIN_BPS,
};

pub use drift::Problem;
pub use labels::Labels;
pub use subnet6::Subnet6;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;

/// `lo`'s ifindex: the first link of every network namespace.
pub const LO_IFINDEX: u32 = 1;
/// The namespace-side veth's ifindex, chosen at creation: the first free one after `lo` in a
/// fresh namespace, so configuring it needs no look-up (docs/kernel.md#chosen-ifindexes).
pub const PEER_IFINDEX: u32 = 2;

/// Why a name, interface name or subnet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("invalid name {0:?}: must match ^[A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}$")]
    Name(String),
    #[error("invalid interface name {0:?}: 1-15 printable ASCII bytes, no '/', ':' or spaces, not '.' or '..'")]
    IfName(String),
    #[error("interface name {0:?} is reserved for names the agent chooses (nsv + 8 hex digits)")]
    ReservedIfName(String),
    #[error("invalid subnet {0:?}: {1}")]
    Subnet(String, &'static str),
}

pub fn validate_name(name: &str) -> Result<(), ValidationError> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::Name(name.to_string()))
    }
}

/// Kernel rules (dev_valid_name) plus printable ASCII only.
pub fn validate_ifname(name: &str) -> Result<(), ValidationError> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() < 16
        && name != "."
        && name != ".."
        && b.iter()
            .all(|c| c.is_ascii_graphic() && !matches!(c, b'/' | b':'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::IfName(name.to_string()))
    }
}

/// The host-side names the agent picks itself: `nsv` + the subnet's network address in hex.
pub fn agent_ifname(subnet: Subnet) -> String {
    format!("nsv{:08x}", u32::from(subnet.network))
}

pub fn is_agent_ifname(name: &str) -> bool {
    name.len() == 11
        && name.starts_with("nsv")
        && name[3..]
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// An IPv4 network: address with all host bits zero, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn new(network: Ipv4Addr, prefix: u8) -> Option<Subnet> {
        if prefix > 32 {
            return None;
        }
        let s = Subnet { network, prefix };
        (u32::from(network) & !s.mask() == 0).then_some(s)
    }

    pub fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    pub fn start(self) -> u32 {
        u32::from(self.network)
    }

    /// Last address, inclusive.
    pub fn end(self) -> u32 {
        self.start() | !self.mask()
    }

    pub fn contains(self, other: Subnet) -> bool {
        other.start() >= self.start() && other.end() <= self.end()
    }

    /// (gateway = host side, address = namespace side). A /31 uses both addresses (RFC 3021);
    /// anything larger skips the network address.
    pub fn gateway_and_address(self) -> (Ipv4Addr, Ipv4Addr) {
        let base = self.start();
        if self.prefix == 31 {
            (Ipv4Addr::from(base), Ipv4Addr::from(base + 1))
        } else {
            (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
        }
    }

    /// Parses "a.b.c.d/n" for one namespace: prefix between `min_prefix` (the pool's
    /// per-namespace size) and 31, host bits zero, a unicast range.
    pub fn parse_for_namespace(s: &str, min_prefix: u8) -> Result<Subnet, ValidationError> {
        let err = |why| ValidationError::Subnet(s.to_string(), why);
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| err("expected a.b.c.d/len"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err("not an IPv4 address"))?;
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err("bad prefix length"));
        }
        let prefix: u8 = prefix.parse().map_err(|_| err("bad prefix length"))?;
        if prefix > 32 {
            return Err(err("bad prefix length"));
        }
        if prefix == 32 {
            return Err(err("a /32 is a host, not a subnet"));
        }
        if prefix < min_prefix {
            return Err(err("larger than one namespace's subnet (--prefix-len)"));
        }
        let subnet = Subnet::new(addr, prefix).ok_or_else(|| err("host bits are set"))?;
        check_unicast(subnet).map_err(err)?;
        Ok(subnet)
    }

    /// Parses "a.b.c.d/n" with host bits zero and nothing more: how a subnet reads back from
    /// the agent's answers (the agent validated it on the way in).
    pub fn parse(s: &str) -> Option<Subnet> {
        let (addr, prefix) = s.split_once('/')?;
        Subnet::new(addr.parse().ok()?, prefix.parse().ok()?)
    }

    /// Parses a pool: any prefix up to 30.
    pub fn parse_pool(s: &str) -> Result<Subnet, ValidationError> {
        let err = |why| ValidationError::Subnet(s.to_string(), why);
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| err("expected a.b.c.d/len"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err("not an IPv4 address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| err("bad prefix length"))?;
        if prefix > 31 {
            return Err(err("pool too small"));
        }
        let subnet = Subnet::new(addr, prefix).ok_or_else(|| err("host bits are set"))?;
        check_unicast(subnet).map_err(err)?;
        Ok(subnet)
    }
}

fn check_unicast(s: Subnet) -> Result<(), &'static str> {
    let first = s.network.octets()[0];
    let last = Ipv4Addr::from(s.end()).octets()[0];
    if first == 0 || first == 127 || first >= 224 || last >= 224 || (first < 127 && last >= 127) {
        return Err("not a unicast range (0/8, 127/8 and 224/3 are refused)");
    }
    Ok(())
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// What the client asked for, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceSpec {
    pub name: String,
    pub subnet: Option<Subnet>,
    /// Dual stack: an IPv6 subnet too (from `subnet6`, else the IPv6 pool if there is one).
    pub ipv6: bool,
    pub subnet6: Option<Subnet6>,
    pub conf: Conf,
    pub ns_ifname: String,
    pub host_ifname: Option<String>,
    pub mtu: Option<u32>,
}

impl Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Subnet::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid subnet {s:?}")))
    }
}

/// What exists: the spec with every choice made. This is what `create`, `get` and `list` return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    pub netns_path: String,
    pub host_ifname: String,
    pub ns_ifname: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    pub address: Ipv4Addr,
    /// The IPv6 side of a dual-stack namespace.
    #[serde(flatten, default)]
    pub v6: Option<V6>,
    #[serde(flatten)]
    pub conf: Conf,
    /// Where the namespace's resolv.conf is (when it has `dns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Wired into a namespace someone else made (`attach`): `netns_path` is theirs, and the
    /// agent never deletes that namespace.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attached: bool,
    /// The host veth's ifindex: the agent's own bookkeeping, not part of the protocol (0 in a
    /// namespace decoded from an answer).
    #[serde(skip)]
    pub host_ifindex: u32,
}

impl Namespace {
    pub fn plan(
        spec: &NamespaceSpec,
        subnet: Subnet,
        subnet6: Option<Subnet6>,
        dirs: &Dirs,
    ) -> Namespace {
        let (gateway, address) = subnet.gateway_and_address();
        Namespace {
            name: spec.name.clone(),
            netns_path: dirs.netns_path(&spec.name),
            resolv_conf: spec.conf.dns.as_ref().map(|_| dirs.resolv_conf(&spec.name)),
            host_ifname: spec
                .host_ifname
                .clone()
                .unwrap_or_else(|| agent_ifname(subnet)),
            ns_ifname: spec.ns_ifname.clone(),
            subnet,
            gateway,
            address,
            v6: subnet6.map(V6::of),
            conf: spec.conf.clone(),
            mtu: spec.mtu,
            attached: false,
            host_ifindex: host_ifindex(subnet),
        }
    }

    /// MAC addresses of (host veth, namespace veth): locally administered, derived from the
    /// subnet, so both sides' neighbour entries can be pinned without asking the kernel.
    pub fn macs(&self) -> ([u8; 6], [u8; 6]) {
        let n = self.subnet.network.octets();
        (
            [0x02, 0x4e, n[0], n[1], n[2], n[3]],
            [0x06, 0x4e, n[0], n[1], n[2], n[3]],
        )
    }

    /// The ownership mark on the host veth.
    pub fn mark(&self) -> Mark {
        Mark {
            name: self.name.clone(),
            nat: self.conf.nat,
        }
    }
}

/// A namespace's IPv6 addresses: the subnet, the host side's address (the namespace's default
/// route points at it) and the namespace side's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct V6 {
    pub subnet6: Subnet6,
    pub gateway6: std::net::Ipv6Addr,
    pub address6: std::net::Ipv6Addr,
}

impl V6 {
    pub fn of(subnet6: Subnet6) -> V6 {
        let (gateway6, address6) = subnet6.gateway_and_address();
        V6 {
            subnet6,
            gateway6,
            address6,
        }
    }
}

/// The ownership mark the agent writes into the kernel itself (an ifalias), so that a restart can
/// tell what is its own from a link dump alone: on the host veth, and on `lo` inside the
/// namespace (set before the netns file exists, so a namespace left half-built by a crash is
/// recognisable too).
///
/// Written `nsagent:<name>`, or `nsagent:<name>:nonat` for a namespace without NAT (names cannot
/// contain `:`). `lo` always carries the plain form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub name: String,
    pub nat: bool,
}

impl Mark {
    const PREFIX: &'static str = "nsagent:";
    const NO_NAT: &'static str = ":nonat";

    /// The mark on `lo` of the namespace called `name`.
    pub fn lo(name: &str) -> String {
        format!("{}{name}", Mark::PREFIX)
    }

    /// Whether `alias` is the mark on `lo` of a namespace built for the warm pool: it keeps
    /// it after a client claims it (only the host veth's mark names the owner).
    pub fn is_warm_lo(alias: &str) -> bool {
        alias.strip_prefix(Mark::PREFIX).is_some_and(is_warm_name)
    }

    /// Reads a mark back; anything that is not one (or names an invalid name) is `None`.
    pub fn parse(alias: &str) -> Option<Mark> {
        let rest = alias.strip_prefix(Mark::PREFIX)?;
        let (name, nat) = match rest.strip_suffix(Mark::NO_NAT) {
            Some(n) => (n, false),
            None => (rest, true),
        };
        validate_name(name).ok()?;
        Some(Mark {
            name: name.to_string(),
            nat,
        })
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suffix = if self.nat { "" } else { Mark::NO_NAT };
        write!(f, "{}{}{suffix}", Mark::PREFIX, self.name)
    }
}

/// Where the agent keeps per-namespace files: the netns files (`ip netns`'s directory) and the
/// per-namespace `/etc` overrides that `ip netns exec` binds over `/etc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    pub netns: std::path::PathBuf,
    pub etc_netns: std::path::PathBuf,
}

impl Dirs {
    pub fn netns_path(&self, name: &str) -> String {
        self.netns.join(name).to_string_lossy().into_owned()
    }

    /// Where the warm pool's namespaces are until claimed.
    pub fn warm(&self) -> std::path::PathBuf {
        beside_netns_dir(&self.netns, "warm")
    }

    /// The same directories, with the netns files in the warm pool's.
    pub fn for_warm(&self) -> Dirs {
        Dirs {
            netns: self.warm(),
            etc_netns: self.etc_netns.clone(),
        }
    }

    /// `<etc-netns>/NAME/resolv.conf`.
    pub fn resolv_conf(&self, name: &str) -> String {
        self.etc_netns
            .join(name)
            .join("resolv.conf")
            .to_string_lossy()
            .into_owned()
    }
}

/// A directory of the agent's next to the netns directory (never in it: `ip netns list` would
/// show it): `/run/.netns-nsagent-<what>` for `/run/netns`.
pub fn beside_netns_dir(netns_dir: &std::path::Path, what: &str) -> std::path::PathBuf {
    let name = netns_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "netns".into());
    netns_dir
        .parent()
        .unwrap_or(std::path::Path::new("/"))
        .join(format!(".{name}-nsagent-{what}"))
}

/// Names of namespaces in the warm pool: `~warm-<n>`, which no client can give (a name starts
/// with a letter or digit), so that a warm namespace's marks can never be taken for a client's.
pub fn warm_name(n: u64) -> String {
    format!("{WARM_PREFIX}{n}")
}

pub fn is_warm_name(name: &str) -> bool {
    name.starts_with(WARM_PREFIX)
}

const WARM_PREFIX: &str = "~warm-";

/// The host veth's ifindex, chosen by the agent so that no look-up is needed after creation.
/// Derived from the subnet's network address, which is unique among live and dying namespaces;
/// always below 2^31 as the kernel requires, and far above the small indexes the kernel hands out.
pub fn host_ifindex(subnet: Subnet) -> u32 {
    u32::from(subnet.network) >> 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "netns-A", "A.b_c-d", "0", &"x".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "..",
            ".",
            "a/b",
            "-a",
            "_a",
            ".a",
            "a b",
            "é",
            "a\0",
            &"x".repeat(65),
            "a\n",
            "а", // Cyrillic look-alike
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ifnames() {
        for ok in ["eth0", "veth-x.1", "a", "012345678901234"] {
            assert!(validate_ifname(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "0123456789012345", "é"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subnets() {
        let s = Subnet::parse_for_namespace("198.18.7.0/30", 30).unwrap();
        assert_eq!(
            s.gateway_and_address(),
            ("198.18.7.1".parse().unwrap(), "198.18.7.2".parse().unwrap())
        );
        let s = Subnet::parse_for_namespace("198.18.7.0/31", 30).unwrap();
        assert_eq!(
            s.gateway_and_address(),
            ("198.18.7.0".parse().unwrap(), "198.18.7.1".parse().unwrap())
        );
        for bad in [
            "198.18.7.1/30",
            "198.18.7.0/32",
            "198.18.7.0/24",
            "198.18.7.0",
            "x/30",
            "::1/64",
            "198.18.7.0/33",
            "198.18.7.0/-1",
            "198.18.7.0/+30",
            "127.0.0.0/30",
            "224.0.0.0/30",
            "0.0.0.0/30",
            "198.18.7.0/030",
        ] {
            assert!(Subnet::parse_for_namespace(bad, 30).is_err(), "{bad}");
        }
    }

    #[test]
    fn agent_ifnames_are_unique_per_subnet_and_short() {
        let a = agent_ifname(Subnet::new("10.200.0.4".parse().unwrap(), 30).unwrap());
        assert_eq!(a, "nsv0ac80004");
        assert!(a.len() <= 15 && is_agent_ifname(&a) && validate_ifname(&a).is_ok());
        assert!(!is_agent_ifname("nsv0AC80004"));
    }

    #[test]
    fn marks_read_back() {
        let m = |name: &str, nat| Mark {
            name: name.into(),
            nat,
        };
        assert_eq!(Mark::parse("nsagent:a-1"), Some(m("a-1", true)));
        assert_eq!(Mark::parse("nsagent:a-1:nonat"), Some(m("a-1", false)));
        assert_eq!(Mark::parse("nsagent:../x"), None);
        assert_eq!(Mark::parse("other:a"), None);
        for mark in [m("a", true), m("b.c", false)] {
            assert_eq!(Mark::parse(&mark.to_string()), Some(mark));
        }
        assert_eq!(Mark::parse(&Mark::lo("x")), Some(m("x", true)));
    }

    #[test]
    fn namespaces_read_back_from_their_json() {
        let spec = NamespaceSpec {
            name: "a".into(),
            subnet: None,
            ipv6: true,
            subnet6: None,
            conf: Conf {
                nat: false,
                dns: Some(Dns {
                    nameservers: vec!["9.9.9.9".parse().unwrap()],
                    search: vec![],
                    options: vec![],
                }),
                bandwidth: None,
                ports: vec![],
                egress_addr: None,
                egress_addr6: None,
                labels: Default::default(),
            },
            ns_ifname: "eth0".into(),
            host_ifname: None,
            mtu: Some(9000),
        };
        let subnet = Subnet::parse("100.64.0.4/30").unwrap();
        let dirs = Dirs {
            netns: "/run/netns".into(),
            etc_netns: "/etc/netns".into(),
        };
        let subnet6 = Subnet6::parse("fd00:1::/64");
        let mut ns = Namespace::plan(&spec, subnet, subnet6, &dirs);
        assert_eq!(ns.v6.unwrap().address6.to_string(), "fd00:1::2");
        assert_eq!(ns.resolv_conf.as_deref(), Some("/etc/netns/a/resolv.conf"));
        let back: Namespace = serde_json::from_value(serde_json::to_value(&ns).unwrap()).unwrap();
        ns.host_ifindex = 0;
        assert_eq!(back, ns);
    }

    #[test]
    fn host_ifindex_fits_the_kernel_limit() {
        let top = Subnet::new("223.255.255.254".parse().unwrap(), 31).unwrap();
        assert!(host_ifindex(top) < 1 << 31);
        let a = Subnet::new("10.200.0.4".parse().unwrap(), 31).unwrap();
        let b = Subnet::new("10.200.0.6".parse().unwrap(), 31).unwrap();
        assert_ne!(host_ifindex(a), host_ifindex(b));
    }
}
