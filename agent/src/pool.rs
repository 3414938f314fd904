//! The address pools: fixed-size subnets carved from one CIDR per family, tracked in a bitmap.
//! Allocation scans from a rotating cursor one 64-slot word at a time, so it costs O(1)
//! amortised whatever the number of live namespaces, and freed subnets are reused last
//! (the cursor moves on), which keeps a just-deleted subnet cold for as long as possible.

use crate::model::{Subnet, Subnet6};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Most slots a pool tracks: 16M is more than any host runs (2 MiB of bitmap).
const MAX_SLOT_BITS: u8 = 24;

/// The bitmap: which slots are used, and where the next search starts.
#[derive(Debug)]
struct Slots {
    slots: u32,
    used: Vec<u64>,
    free: u32,
    cursor: u32,
}

impl Slots {
    fn new(bits: u8) -> Option<Slots> {
        if bits > MAX_SLOT_BITS {
            return None;
        }
        let slots = 1u32 << bits;
        Some(Slots {
            slots,
            used: vec![0; slots.div_ceil(64) as usize],
            free: slots,
            cursor: 0,
        })
    }

    fn is_used(&self, slot: u32) -> bool {
        self.used[(slot / 64) as usize] & (1 << (slot % 64)) != 0
    }

    fn set(&mut self, slot: u32, used: bool) {
        let was = self.is_used(slot);
        let w = &mut self.used[(slot / 64) as usize];
        if used {
            *w |= 1 << (slot % 64);
            if !was {
                self.free -= 1;
            }
        } else {
            *w &= !(1 << (slot % 64));
            if was {
                self.free += 1;
            }
        }
    }

    /// Takes the next free slot for which `usable` holds.
    fn allocate(&mut self, mut usable: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.free == 0 {
            return None;
        }
        let words = self.used.len() as u32;
        let mut word = self.cursor / 64;
        for _ in 0..=words {
            let mut bits = !self.used[word as usize];
            while bits != 0 {
                let bit = bits.trailing_zeros();
                let slot = word * 64 + bit;
                if slot >= self.slots {
                    break;
                }
                if usable(slot) {
                    self.set(slot, true);
                    self.cursor = (slot + 1) % self.slots;
                    return Some(slot);
                }
                bits &= !(1 << bit);
            }
            word = (word + 1) % words;
        }
        None
    }
}

/// A family's subnets as the pool counts them: addresses as numbers of up to 128 bits.
pub trait PoolSubnet: Copy {
    /// Address bits of the family.
    const BITS: u32;
    fn start(self) -> u128;
    fn end(self) -> u128;
    fn prefix(self) -> u8;
    /// The subnet of `prefix` bits starting at `start` (aligned by the caller).
    fn at(start: u128, prefix: u8) -> Self;
}

impl PoolSubnet for Subnet {
    const BITS: u32 = 32;
    fn start(self) -> u128 {
        Subnet::start(self).into()
    }
    fn end(self) -> u128 {
        Subnet::end(self).into()
    }
    fn prefix(self) -> u8 {
        self.prefix
    }
    fn at(start: u128, prefix: u8) -> Self {
        Subnet {
            network: Ipv4Addr::from(start as u32),
            prefix,
        }
    }
}

impl PoolSubnet for Subnet6 {
    const BITS: u32 = 128;
    fn start(self) -> u128 {
        Subnet6::start(self)
    }
    fn end(self) -> u128 {
        Subnet6::end(self)
    }
    fn prefix(self) -> u8 {
        self.prefix
    }
    fn at(start: u128, prefix: u8) -> Self {
        Subnet6 {
            network: Ipv6Addr::from(start),
            prefix,
        }
    }
}

/// Subnets of `slot_prefix` bits carved from `base`, one family.
#[derive(Debug)]
pub struct AddressPool<S> {
    base: S,
    slot_prefix: u8,
    slots: Slots,
}

/// The IPv4 pool (`--pool`, `--prefix-len`).
pub type Pool = AddressPool<Subnet>;
/// The IPv6 pool (`--pool6`, `--prefix-len6`).
pub type Pool6 = AddressPool<Subnet6>;

impl Pool {
    /// `None` unless `slot_prefix` is 31 at most and inside the base (and the pool would have
    /// at most 2^24 subnets).
    pub fn new(base: Subnet, slot_prefix: u8) -> Option<Pool> {
        (slot_prefix <= 31).then_some(())?;
        AddressPool::carve(base, slot_prefix)
    }
}

impl Pool6 {
    /// `None` when `slot_prefix` is outside 64–127 or not inside the base, or the pool would
    /// have more than 2^24 subnets.
    pub fn new(base: Subnet6, slot_prefix: u8) -> Option<Pool6> {
        (64..=127).contains(&slot_prefix).then_some(())?;
        AddressPool::carve(base, slot_prefix)
    }
}

impl<S: PoolSubnet> AddressPool<S> {
    fn carve(base: S, slot_prefix: u8) -> Option<Self> {
        (slot_prefix >= base.prefix()).then_some(())?;
        Some(AddressPool {
            base,
            slot_prefix,
            slots: Slots::new(slot_prefix - base.prefix())?,
        })
    }

    /// The pool's whole range.
    pub fn base(&self) -> S {
        self.base
    }

    pub fn size(&self) -> u32 {
        self.slots.slots
    }

    pub fn free(&self) -> u32 {
        self.slots.free
    }

    pub fn slot_prefix(&self) -> u8 {
        self.slot_prefix
    }

    fn shift(&self) -> u32 {
        S::BITS - self.slot_prefix as u32
    }

    fn subnet(&self, slot: u32) -> S {
        S::at(
            self.base.start() + ((slot as u128) << self.shift()),
            self.slot_prefix,
        )
    }

    /// The slots a subnet covers, if it lies within the pool.
    fn slots_of(&self, s: S) -> Option<std::ops::RangeInclusive<u32>> {
        if s.start() < self.base.start() || s.end() > self.base.end() {
            return None;
        }
        let first = (s.start() - self.base.start()) >> self.shift();
        let last = (s.end() - self.base.start()) >> self.shift();
        Some(first as u32..=last as u32)
    }

    /// Takes the next free slot for which `usable` holds (the caller checks for overlaps with
    /// subnets outside the pool's bookkeeping).
    pub fn allocate(&mut self, mut usable: impl FnMut(S) -> bool) -> Option<S> {
        let (start, prefix, shift) = (self.base.start(), self.slot_prefix, self.shift());
        let at = |slot: u32| S::at(start + ((slot as u128) << shift), prefix);
        let slot = self.slots.allocate(|slot| usable(at(slot)))?;
        Some(self.subnet(slot))
    }

    /// Marks a subnet (from the pool or chosen by a client) as used, if it lies in the pool.
    pub fn mark(&mut self, s: S) {
        self.set(s, true);
    }

    pub fn release(&mut self, s: S) {
        self.set(s, false);
    }

    fn set(&mut self, s: S, used: bool) {
        if let Some(r) = self.slots_of(s) {
            for slot in r {
                self.slots.set(slot, used);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(cidr: &str, p: u8) -> Pool {
        Pool::new(Subnet::parse_pool(cidr).unwrap(), p).unwrap()
    }

    #[test]
    fn allocates_every_slot_once_then_exhausts() {
        let mut p = pool("100.64.0.0/24", 30);
        assert_eq!(p.size(), 64);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..64 {
            let s = p.allocate(|_| true).unwrap();
            assert!(seen.insert(s));
            assert_eq!(s.prefix, 30);
        }
        assert_eq!(p.free(), 0);
        assert!(p.allocate(|_| true).is_none());
        let s = *seen.iter().next().unwrap();
        p.release(s);
        assert_eq!(p.allocate(|_| true), Some(s));
    }

    #[test]
    fn skips_what_the_caller_says_is_taken() {
        let mut p = pool("100.64.0.0/29", 30);
        let first = Subnet::parse_for_namespace("100.64.0.0/30", 30).unwrap();
        let got = p.allocate(|s| s != first).unwrap();
        assert_eq!(got.to_string(), "100.64.0.4/30");
        assert!(p.allocate(|_| false).is_none());
    }

    #[test]
    fn explicit_subnets_are_accounted() {
        let mut p = pool("100.64.0.0/28", 30);
        let s = Subnet::parse_for_namespace("100.64.0.4/31", 30).unwrap();
        p.mark(s);
        assert_eq!(p.free(), 3);
        p.mark(Subnet::parse_for_namespace("198.18.0.0/30", 30).unwrap());
        assert_eq!(p.free(), 3);
        p.release(s);
        assert_eq!(p.free(), 4);
    }

    #[test]
    fn ipv6_pools() {
        let base = Subnet6::parse_pool("fd00:1::/48").unwrap();
        let mut p = Pool6::new(base, 64).unwrap();
        assert_eq!(p.size(), 65536);
        assert_eq!(p.allocate(|_| true).unwrap().to_string(), "fd00:1::/64");
        assert_eq!(p.allocate(|_| true).unwrap().to_string(), "fd00:1:0:1::/64");
        let s = Subnet6::parse_for_namespace("fd00:1:0:5::/64", 64).unwrap();
        p.mark(s);
        assert_eq!(p.free(), 65536 - 3);
        p.release(s);
        assert_eq!(p.free(), 65536 - 2);
        assert!(Pool6::new(base, 63).is_none());
        assert!(
            Pool6::new(Subnet6::parse_pool("fd00::/16").unwrap(), 64).is_none(),
            "2^48 subnets"
        );
        let mut p = Pool6::new(Subnet6::parse_pool("fd00:2::/120").unwrap(), 127).unwrap();
        assert_eq!(p.size(), 128);
        assert_eq!(p.allocate(|_| true).unwrap().to_string(), "fd00:2::/127");
    }

    #[test]
    fn slot31() {
        let mut p = pool("100.64.0.0/30", 31);
        assert_eq!(p.size(), 2);
        assert_eq!(p.allocate(|_| true).unwrap().to_string(), "100.64.0.0/31");
        assert_eq!(p.allocate(|_| true).unwrap().to_string(), "100.64.0.2/31");
    }
}
