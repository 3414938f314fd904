//! The address pool: fixed-size subnets carved from one CIDR, tracked in a bitmap.
//! Allocation scans from a rotating cursor one 64-slot word at a time, so it costs O(1)
//! amortised whatever the number of live namespaces, and freed subnets are reused last
//! (the cursor moves on), which keeps a just-deleted subnet cold for as long as possible.

use crate::model::Subnet;
use std::net::Ipv4Addr;

#[derive(Debug)]
pub struct Pool {
    base: Subnet,
    slot_prefix: u8,
    slots: u32,
    used: Vec<u64>,
    free: u32,
    cursor: u32,
}

impl Pool {
    pub fn new(base: Subnet, slot_prefix: u8) -> Option<Pool> {
        if slot_prefix < base.prefix || slot_prefix > 31 {
            return None;
        }
        let bits = slot_prefix - base.prefix;
        if bits > 24 {
            return None; // 16M slots is more than any host runs
        }
        let slots = 1u32 << bits;
        Some(Pool {
            base,
            slot_prefix,
            slots,
            used: vec![0; slots.div_ceil(64) as usize],
            free: slots,
            cursor: 0,
        })
    }

    /// The pool's whole range.
    pub fn base(&self) -> Subnet {
        self.base
    }

    pub fn size(&self) -> u32 {
        self.slots
    }

    pub fn free(&self) -> u32 {
        self.free
    }

    pub fn slot_prefix(&self) -> u8 {
        self.slot_prefix
    }

    fn subnet(&self, slot: u32) -> Subnet {
        let start = self.base.start() + (slot << (32 - self.slot_prefix));
        Subnet {
            network: Ipv4Addr::from(start),
            prefix: self.slot_prefix,
        }
    }

    /// The slots a subnet covers, if it lies within the pool.
    fn slots_of(&self, s: Subnet) -> Option<std::ops::RangeInclusive<u32>> {
        if !self.base.contains(s) {
            return None;
        }
        let shift = 32 - self.slot_prefix;
        Some(((s.start() - self.base.start()) >> shift)..=((s.end() - self.base.start()) >> shift))
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

    /// Takes the next free slot for which `usable` holds (the caller checks for overlaps with
    /// subnets outside the pool's bookkeeping).
    pub fn allocate(&mut self, mut usable: impl FnMut(Subnet) -> bool) -> Option<Subnet> {
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
                let s = self.subnet(slot);
                if usable(s) {
                    self.set(slot, true);
                    self.cursor = (slot + 1) % self.slots;
                    return Some(s);
                }
                bits &= !(1 << bit);
            }
            word = (word + 1) % words;
        }
        None
    }

    /// Marks a subnet (from the pool or chosen by a client) as used, if it lies in the pool.
    pub fn mark(&mut self, s: Subnet) {
        if let Some(r) = self.slots_of(s) {
            for slot in r {
                self.set(slot, true);
            }
        }
    }

    pub fn release(&mut self, s: Subnet) {
        if let Some(r) = self.slots_of(s) {
            for slot in r {
                self.set(slot, false);
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
    fn slot31() {
        let mut p = pool("100.64.0.0/30", 31);
        assert_eq!(p.size(), 2);
        assert_eq!(p.allocate(|_| true).unwrap().to_string(), "100.64.0.0/31");
        assert_eq!(p.allocate(|_| true).unwrap().to_string(), "100.64.0.2/31");
    }
}
