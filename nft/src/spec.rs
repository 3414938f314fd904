//! The table as plain data. Nothing here talks to the kernel, so all of it is unit-testable.

use std::net::Ipv4Addr;

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
    /// The uplink interface(s): where namespace traffic may leave the host.
    Uplinks,
}

impl SetName {
    pub fn as_str(self) -> &'static str {
        match self {
            SetName::NsIfaces => "ns_ifaces",
            SetName::NatSaddrs => "nat_saddrs",
            SetName::Uplinks => "uplinks",
        }
    }

    pub const ALL: [SetName; 3] = [SetName::NsIfaces, SetName::NatSaddrs, SetName::Uplinks];
}

/// One set element.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Elem {
    NsIface(String),
    NatSaddr(Ipv4Addr),
    Uplink(String),
}

impl Elem {
    pub fn set(&self) -> SetName {
        match self {
            Elem::NsIface(_) => SetName::NsIfaces,
            Elem::NatSaddr(_) => SetName::NatSaddrs,
            Elem::Uplink(_) => SetName::Uplinks,
        }
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    Masquerade,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainName {
    Forward,
    Postrouting,
}

impl ChainName {
    pub fn as_str(self) -> &'static str {
        match self {
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
        let mut rules = vec![
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
        ];
        if self.has_uplink {
            rules.push(r(
                Forward,
                &[IifnameIn(NsIfaces), OifnameIn(Uplinks)],
                Verdict::Accept,
            ));
            rules.push(r(Forward, &[IifnameIn(NsIfaces)], Verdict::Drop));
            rules.push(r(
                Postrouting,
                &[Ipv4SaddrIn(NatSaddrs), OifnameIn(Uplinks)],
                Verdict::Masquerade,
            ));
        } else {
            // No uplink: anything that does not go to another namespace is "outside".
            rules.push(r(Postrouting, &[OifnameIn(NsIfaces)], Verdict::Return));
            rules.push(r(
                Postrouting,
                &[Ipv4SaddrIn(NatSaddrs)],
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
        assert_eq!(TableSpec::new("t", true).rules().len(), 6);
        assert_eq!(TableSpec::new("t", false).rules().len(), 5);
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
            assert_eq!(masq.len(), 1);
            assert!(masq[0]
                .matches
                .contains(&Match::Ipv4SaddrIn(SetName::NatSaddrs)));
            assert_eq!(masq[0].chain, ChainName::Postrouting);
        }
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
