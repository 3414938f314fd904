//! IPv6 subnets: the same rules as [`super::Subnet`], for the other family.

use super::ValidationError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv6Addr;

/// An IPv6 network: address with all host bits zero, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet6 {
    pub network: Ipv6Addr,
    pub prefix: u8,
}

impl Subnet6 {
    pub fn new(network: Ipv6Addr, prefix: u8) -> Option<Subnet6> {
        if prefix > 128 {
            return None;
        }
        let s = Subnet6 { network, prefix };
        (u128::from(network) & !s.mask() == 0).then_some(s)
    }

    pub fn mask(self) -> u128 {
        if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - self.prefix)
        }
    }

    pub fn start(self) -> u128 {
        u128::from(self.network)
    }

    /// Last address, inclusive.
    pub fn end(self) -> u128 {
        self.start() | !self.mask()
    }

    pub fn contains(self, other: Subnet6) -> bool {
        other.start() >= self.start() && other.end() <= self.end()
    }

    /// (gateway = host side, address = namespace side): a /127 uses both addresses (RFC 6164);
    /// anything larger skips the subnet-router anycast address.
    pub fn gateway_and_address(self) -> (Ipv6Addr, Ipv6Addr) {
        let base = self.start();
        if self.prefix == 127 {
            (Ipv6Addr::from(base), Ipv6Addr::from(base + 1))
        } else {
            (Ipv6Addr::from(base + 1), Ipv6Addr::from(base + 2))
        }
    }

    /// Parses "addr/len" with host bits zero and nothing more (how it reads back from answers).
    pub fn parse(s: &str) -> Option<Subnet6> {
        let (addr, prefix) = s.split_once('/')?;
        if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Subnet6::new(addr.parse().ok()?, prefix.parse().ok()?)
    }

    /// Parses a namespace's subnet: prefix between `min_prefix` (the pool's per-namespace size)
    /// and 127, host bits zero, a global or unique-local unicast range.
    pub fn parse_for_namespace(s: &str, min_prefix: u8) -> Result<Subnet6, ValidationError> {
        let err = |why| ValidationError::Subnet(s.to_string(), why);
        let subnet = Self::parse_any(s)?;
        if subnet.prefix == 128 {
            return Err(err("a /128 is a host, not a subnet"));
        }
        if subnet.prefix < min_prefix {
            return Err(err("larger than one namespace's subnet (--prefix-len6)"));
        }
        Ok(subnet)
    }

    /// Parses a pool: any prefix up to 127.
    pub fn parse_pool(s: &str) -> Result<Subnet6, ValidationError> {
        let subnet = Self::parse_any(s)?;
        if subnet.prefix > 127 {
            return Err(ValidationError::Subnet(s.to_string(), "pool too small"));
        }
        Ok(subnet)
    }

    fn parse_any(s: &str) -> Result<Subnet6, ValidationError> {
        let err = |why| ValidationError::Subnet(s.to_string(), why);
        let (addr, prefix) = s.split_once('/').ok_or_else(|| err("expected addr/len"))?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| err("not an IPv6 address"))?;
        if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err("bad prefix length"));
        }
        let prefix: u8 = prefix.parse().map_err(|_| err("bad prefix length"))?;
        let subnet = Subnet6::new(addr, prefix).ok_or_else(|| err("host bits are set"))?;
        check_unicast(subnet).map_err(err)?;
        Ok(subnet)
    }
}

/// Global unicast (2000::/3) or unique local (fc00::/7), wholly.
fn check_unicast(s: Subnet6) -> Result<(), &'static str> {
    let inside =
        |net: u128, len: u8| Subnet6::new(Ipv6Addr::from(net), len).is_some_and(|r| r.contains(s));
    if inside(0x2000 << 112, 3) || inside(0xfc00 << 112, 7) {
        Ok(())
    } else {
        Err("not a global (2000::/3) or unique local (fc00::/7) range")
    }
}

impl fmt::Display for Subnet6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Serialize for Subnet6 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet6 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Subnet6::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid subnet {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_subnets() {
        let s = Subnet6::parse_for_namespace("fd00:1:0:7::/64", 64).unwrap();
        assert_eq!(
            s.gateway_and_address(),
            (
                "fd00:1:0:7::1".parse().unwrap(),
                "fd00:1:0:7::2".parse().unwrap()
            )
        );
        let s = Subnet6::parse_for_namespace("2001:2::4/127", 64).unwrap();
        assert_eq!(
            s.gateway_and_address(),
            ("2001:2::4".parse().unwrap(), "2001:2::5".parse().unwrap())
        );
        for bad in [
            "fd00:1::1/64",
            "fd00:1::/128",
            "fd00:1::/48",
            "fe80::/64",
            "ff02::/64",
            "::/64",
            "::ffff:10.0.0.0/120",
            "10.0.0.0/30",
            "fd00::/0064",
            "fd00::/-1",
            "fd00::/129",
            "x/64",
        ] {
            assert!(Subnet6::parse_for_namespace(bad, 64).is_err(), "{bad}");
        }
    }
}
