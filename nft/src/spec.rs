//! The table as plain data. Nothing here talks to the kernel, so all of it is unit-testable.

use std::net::{IpAddr, Ipv4Addr};

/// Kernel limit for interface names, including the terminating NUL.
pub const IFNAMSIZ: usize = 16;

/// The named sets of the table. Their names are part of the operator-visible contract
/// (`nft list table inet nsagent`), so they are spelled out once here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetName {
    /// Host-side veth of every managed namespace.
    NsIfaces,
    /// Namespace-side addresses of namespaces created with `nat: true`.
    ///
    /// Why addresses and not interfaces: masquerade runs in postrouting, where the input
    /// interface is not available to nft (`iifname` is always empty there), so the NAT rule
    /// has to recognise a namespace's traffic by its source address.
    NatSaddrs,
    /// The same for the IPv6 addresses of dual-stack namespaces (NAT66).
    NatSaddrs6,
    /// The uplink interface(s): where namespace traffic may leave the host.
    Uplinks,
    /// Port forwards to a given host address: map `ipv4_addr . inet_proto . inet_service :
    /// ipv4_addr . inet_service` (host address, protocol, host port → namespace address, port).
    Forwards,
    /// Port forwards on any local address of the host: map `inet_proto . inet_service :
    /// ipv4_addr . inet_service`.
    ForwardsAny,
    /// Egress addresses: map `ipv4_addr : ipv4_addr` (namespace address → the address its
    /// outbound traffic is SNATed to instead of being masqueraded).
    Egress,
    /// The three maps again for IPv6 (`ipv6_addr` wherever the IPv4 ones have `ipv4_addr`).
    Forwards6,
    ForwardsAny6,
    Egress6,
}

impl SetName {
    pub fn as_str(self) -> &'static str {
        match self {
            SetName::NsIfaces => "ns_ifaces",
            SetName::NatSaddrs => "nat_saddrs",
            SetName::NatSaddrs6 => "nat_saddrs6",
            SetName::Uplinks => "uplinks",
            SetName::Forwards => "forwards",
            SetName::ForwardsAny => "forwards_any",
            SetName::Egress => "egress",
            SetName::Forwards6 => "forwards6",
            SetName::ForwardsAny6 => "forwards_any6",
            SetName::Egress6 => "egress6",
        }
    }

    /// Whether the set's addresses are IPv6 ones.
    pub fn is_ipv6(self) -> bool {
        matches!(
            self,
            SetName::NatSaddrs6 | SetName::Forwards6 | SetName::ForwardsAny6 | SetName::Egress6
        )
    }

    pub const ALL: [SetName; 10] = [
        SetName::NsIfaces,
        SetName::NatSaddrs,
        SetName::NatSaddrs6,
        SetName::Uplinks,
        SetName::Forwards,
        SetName::ForwardsAny,
        SetName::Egress,
        SetName::Forwards6,
        SetName::ForwardsAny6,
        SetName::Egress6,
    ];

    /// The maps among the sets: what recovery reads back.
    pub const MAPS: [SetName; 6] = [
        SetName::Forwards,
        SetName::ForwardsAny,
        SetName::Egress,
        SetName::Forwards6,
        SetName::ForwardsAny6,
        SetName::Egress6,
    ];
}

/// A published port: `proto` traffic to `daddr:dport` (`daddr` `None`: any local address of the
/// host) is DNATed to `to:to_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Forward {
    /// Of the same family as `to`.
    pub daddr: Option<IpAddr>,
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub proto: u8,
    pub dport: u16,
    pub to: IpAddr,
    pub to_port: u16,
}

/// One set element.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Elem {
    NsIface(String),
    NatSaddr(Ipv4Addr),
    NatSaddr6(std::net::Ipv6Addr),
    Uplink(String),
    Forward(Forward),
    /// Outbound traffic from `saddr` leaves SNATed to `to` (both of one family).
    Egress {
        saddr: IpAddr,
        to: IpAddr,
    },
}

impl Elem {
    pub fn set(&self) -> SetName {
        match self {
            Elem::NsIface(_) => SetName::NsIfaces,
            Elem::NatSaddr(_) => SetName::NatSaddrs,
            Elem::NatSaddr6(_) => SetName::NatSaddrs6,
            Elem::Uplink(_) => SetName::Uplinks,
            Elem::Forward(f) => match (f.daddr.is_some(), f.to.is_ipv6()) {
                (true, false) => SetName::Forwards,
                (false, false) => SetName::ForwardsAny,
                (true, true) => SetName::Forwards6,
                (false, true) => SetName::ForwardsAny6,
            },
            Elem::Egress { to, .. } if to.is_ipv6() => SetName::Egress6,
            Elem::Egress { .. } => SetName::Egress,
        }
    }

    /// The element's key, and its data for a map element, as the kernel stores them: each
    /// field in network byte order, padded to 4 bytes (nft's concatenation layout); an
    /// interface name NUL-padded to IFNAMSIZ.
    pub(crate) fn key_data(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        let port = |p: u16| {
            let mut v = p.to_be_bytes().to_vec();
            v.extend([0, 0]);
            v
        };
        match self {
            Elem::Forward(f) => {
                let mut key = f.daddr.map(octets).unwrap_or_default();
                key.extend([f.proto, 0, 0, 0]);
                key.extend(port(f.dport));
                let mut data = octets(f.to);
                data.extend(port(f.to_port));
                (key, Some(data))
            }
            Elem::Egress { saddr, to } => (octets(*saddr), Some(octets(*to))),
            Elem::NsIface(n) | Elem::Uplink(n) => (ifname_key(n).to_vec(), None),
            Elem::NatSaddr(a) => (a.octets().to_vec(), None),
            Elem::NatSaddr6(a) => (a.octets().to_vec(), None),
        }
    }

    /// Reads back an element [`Elem::key_data`] wrote into `set` (`data`: a map's).
    pub fn from_entry(set: SetName, key: &[u8], data: Option<&[u8]>) -> Option<Elem> {
        let ifname = |k: &[u8]| {
            let n = k.iter().position(|b| *b == 0).unwrap_or(k.len());
            std::str::from_utf8(&k[..n]).ok().map(str::to_string)
        };
        match set {
            SetName::NsIfaces => return ifname(key).map(Elem::NsIface),
            SetName::Uplinks => return ifname(key).map(Elem::Uplink),
            SetName::NatSaddrs => {
                return <[u8; 4]>::try_from(key)
                    .ok()
                    .map(|a| Elem::NatSaddr(a.into()))
            }
            SetName::NatSaddrs6 => {
                return <[u8; 16]>::try_from(key)
                    .ok()
                    .map(|a| Elem::NatSaddr6(a.into()))
            }
            _ => {}
        }
        let data = data?;
        let len = if set.is_ipv6() { 16 } else { 4 };
        let addr = |b: &[u8]| -> Option<IpAddr> {
            match len {
                16 => <[u8; 16]>::try_from(b)
                    .ok()
                    .map(|a| std::net::Ipv6Addr::from(a).into()),
                _ => <[u8; 4]>::try_from(b)
                    .ok()
                    .map(|a| Ipv4Addr::from(a).into()),
            }
        };
        let port = |b: &[u8]| {
            <[u8; 2]>::try_from(b.get(..2)?)
                .ok()
                .map(u16::from_be_bytes)
        };
        let forward = |daddr, rest: &[u8]| {
            (rest.len() == 8 && data.len() == len + 4).then_some(())?;
            Some(Elem::Forward(Forward {
                daddr,
                proto: rest[0],
                dport: port(&rest[4..])?,
                to: addr(&data[..len])?,
                to_port: port(&data[len..])?,
            }))
        };
        match set {
            SetName::Forwards | SetName::Forwards6 if key.len() == len + 8 => {
                forward(Some(addr(&key[..len])?), &key[len..])
            }
            SetName::ForwardsAny | SetName::ForwardsAny6 => forward(None, key),
            SetName::Egress | SetName::Egress6 => Some(Elem::Egress {
                saddr: addr(key)?,
                to: addr(data)?,
            }),
            _ => None,
        }
    }
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// A match of a rule. Every match that names a set is a set lookup: this is what keeps the rule
/// count constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    IifnameIn(SetName),
    OifnameIn(SetName),
    /// `ct state established,related`
    CtEstablishedRelated,
    /// `meta nfproto ipv4 ip saddr @set`
    Ipv4SaddrIn(SetName),
    /// `meta nfproto ipv6 ip6 saddr @set`
    Ipv6SaddrIn(SetName),
    /// `meta nfproto ipv4`
    Ipv4,
    /// `meta nfproto ipv6`
    Ipv6,
    /// `ip6 daddr != ::1`
    Daddr6NotLoopback,
    /// `fib daddr type local`: to an address of this host.
    DaddrLocal,
    /// `ip daddr != 127.0.0.0/8`
    DaddrNotLoopback,
    /// `ct status dnat`: a connection a DNAT rule (a published port) let in.
    CtDnat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    Masquerade,
    /// `dnat ip to <key> map @set`, the key being the map's (see [`SetName::Forwards`],
    /// [`SetName::ForwardsAny`]); no verdict when the packet's key is not in the map.
    DnatVia(SetName),
    /// `snat ip to ip saddr map @set` ([`SetName::Egress`]).
    SnatVia(SetName),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainName {
    Prerouting,
    Output,
    Forward,
    Postrouting,
}

impl ChainName {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainName::Prerouting => "prerouting",
            ChainName::Output => "output",
            ChainName::Forward => "forward",
            ChainName::Postrouting => "postrouting",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    pub chain: ChainName,
    pub matches: Vec<Match>,
    pub verdict: Verdict,
}

/// The whole table: its name and whether an uplink is known. With no uplink, namespace traffic
/// may leave (and is masqueraded) through any interface that is not a namespace's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub name: String,
    pub has_uplink: bool,
}

impl TableSpec {
    pub fn new(name: impl Into<String>, has_uplink: bool) -> Self {
        TableSpec {
            name: name.into(),
            has_uplink,
        }
    }

    /// The rules, in chain order. Both chains have policy accept: the agent only ever drops
    /// traffic that involves one of its own namespaces, and never decides for anyone else's.
    pub fn rules(&self) -> Vec<RuleSpec> {
        use ChainName::*;
        use Match::*;
        use SetName::*;
        let r = |chain, matches: &[Match], verdict| RuleSpec {
            chain,
            matches: matches.to_vec(),
            verdict,
        };
        let dnat = |chain, family, local_only: &[Match], maps: [SetName; 2]| {
            let mut m = vec![family];
            m.extend_from_slice(local_only);
            [
                r(chain, &m, Verdict::DnatVia(maps[0])),
                r(
                    chain,
                    &[m.as_slice(), &[DaddrLocal]].concat(),
                    Verdict::DnatVia(maps[1]),
                ),
            ]
        };
        let mut rules = vec![];
        // Published ports: from outside and from namespaces (prerouting), from the host itself
        // (output; loopback destinations cannot be forwarded to another host's address).
        rules.extend(dnat(Prerouting, Ipv4, &[], [Forwards, ForwardsAny]));
        rules.extend(dnat(Prerouting, Ipv6, &[], [Forwards6, ForwardsAny6]));
        rules.extend(dnat(
            Output,
            Ipv4,
            &[DaddrNotLoopback],
            [Forwards, ForwardsAny],
        ));
        rules.extend(dnat(
            Output,
            Ipv6,
            &[Daddr6NotLoopback],
            [Forwards6, ForwardsAny6],
        ));
        rules.extend([
            // What a published port let in, both ways, before isolation.
            r(Forward, &[CtDnat], Verdict::Accept),
            // Isolation: namespace <-> namespace.
            r(
                Forward,
                &[IifnameIn(NsIfaces), OifnameIn(NsIfaces)],
                Verdict::Drop,
            ),
            // Into a namespace: only replies to what it started.
            r(
                Forward,
                &[OifnameIn(NsIfaces), CtEstablishedRelated],
                Verdict::Accept,
            ),
            r(Forward, &[OifnameIn(NsIfaces)], Verdict::Drop),
        ]);
        if self.has_uplink {
            rules.push(r(
                Forward,
                &[IifnameIn(NsIfaces), OifnameIn(Uplinks)],
                Verdict::Accept,
            ));
            rules.push(r(Forward, &[IifnameIn(NsIfaces)], Verdict::Drop));
            rules.push(r(
                Postrouting,
                &[Ipv4, OifnameIn(Uplinks)],
                Verdict::SnatVia(Egress),
            ));
            rules.push(r(
                Postrouting,
                &[Ipv6, OifnameIn(Uplinks)],
                Verdict::SnatVia(Egress6),
            ));
            rules.push(r(
                Postrouting,
                &[Ipv4SaddrIn(NatSaddrs), OifnameIn(Uplinks)],
                Verdict::Masquerade,
            ));
            rules.push(r(
                Postrouting,
                &[Ipv6SaddrIn(NatSaddrs6), OifnameIn(Uplinks)],
                Verdict::Masquerade,
            ));
        } else {
            // No uplink: anything that does not go to another namespace is "outside".
            rules.push(r(Postrouting, &[OifnameIn(NsIfaces)], Verdict::Return));
            rules.push(r(Postrouting, &[Ipv4], Verdict::SnatVia(Egress)));
            rules.push(r(Postrouting, &[Ipv6], Verdict::SnatVia(Egress6)));
            rules.push(r(
                Postrouting,
                &[Ipv4SaddrIn(NatSaddrs)],
                Verdict::Masquerade,
            ));
            rules.push(r(
                Postrouting,
                &[Ipv6SaddrIn(NatSaddrs6)],
                Verdict::Masquerade,
            ));
        }
        rules
    }
}

/// An interface name as an nft `ifname` key: 16 bytes, NUL-padded.
pub(crate) fn ifname_key(name: &str) -> [u8; IFNAMSIZ] {
    let mut key = [0u8; IFNAMSIZ];
    let bytes = name.as_bytes();
    let n = bytes.len().min(IFNAMSIZ - 1);
    key[..n].copy_from_slice(&bytes[..n]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_count_is_fixed_by_config() {
        assert_eq!(TableSpec::new("t", true).rules().len(), 18);
        assert_eq!(TableSpec::new("t", false).rules().len(), 17);
    }

    #[test]
    fn every_namespace_match_is_a_set_lookup() {
        for has_uplink in [true, false] {
            for rule in TableSpec::new("t", has_uplink).rules() {
                assert!(!rule.matches.is_empty());
            }
        }
    }

    #[test]
    fn masquerade_only_for_nat_sources() {
        for has_uplink in [true, false] {
            let rules = TableSpec::new("t", has_uplink).rules();
            let masq: Vec<_> = rules
                .iter()
                .filter(|r| r.verdict == Verdict::Masquerade)
                .collect();
            assert_eq!(masq.len(), 2);
            assert!(masq[0]
                .matches
                .contains(&Match::Ipv4SaddrIn(SetName::NatSaddrs)));
            assert!(masq[1]
                .matches
                .contains(&Match::Ipv6SaddrIn(SetName::NatSaddrs6)));
            assert!(masq.iter().all(|m| m.chain == ChainName::Postrouting));
        }
    }

    #[test]
    fn map_entries_read_back() {
        let f = Forward {
            daddr: Some(Ipv4Addr::new(198, 18, 0, 1).into()),
            proto: 6,
            dport: 8080,
            to: Ipv4Addr::new(100, 64, 0, 2).into(),
            to_port: 80,
        };
        let a6: IpAddr = "fd00:1::2".parse().unwrap();
        let f6 = Forward {
            daddr: Some("2001:2::1".parse().unwrap()),
            to: a6,
            ..f
        };
        for e in [
            Elem::Forward(f),
            Elem::Forward(Forward { daddr: None, ..f }),
            Elem::Forward(f6),
            Elem::Forward(Forward { daddr: None, ..f6 }),
            Elem::Egress {
                saddr: Ipv4Addr::new(100, 64, 0, 2).into(),
                to: Ipv4Addr::new(198, 18, 0, 7).into(),
            },
            Elem::Egress {
                saddr: a6,
                to: "2001:2::9".parse().unwrap(),
            },
        ] {
            let (key, data) = e.key_data();
            assert!(data.is_some(), "a map element");
            assert_eq!(
                Elem::from_entry(e.set(), &key, data.as_deref()),
                Some(e.clone())
            );
        }
        // Set elements have no data.
        for e in [
            Elem::NsIface("nsv64400000".into()),
            Elem::Uplink("uplink0".into()),
            Elem::NatSaddr(Ipv4Addr::new(100, 64, 0, 2)),
            Elem::NatSaddr6("fd00:1::2".parse().unwrap()),
        ] {
            let (key, data) = e.key_data();
            assert_eq!(
                Elem::from_entry(e.set(), &key, data.as_deref()),
                Some(e.clone())
            );
        }
        let (key, _) = Elem::Forward(f).key_data();
        assert_eq!(key, [198, 18, 0, 1, 6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
    }

    #[test]
    fn ifname_key_is_nul_padded() {
        let k = ifname_key("eth0");
        assert_eq!(&k[..5], b"eth0\0");
        assert!(k[4..].iter().all(|b| *b == 0));
        // Never overflows into the terminator.
        assert_eq!(ifname_key("0123456789abcdefXYZ")[15], 0);
    }
}
