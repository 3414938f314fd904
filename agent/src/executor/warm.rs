//! The warm pool: namespaces built ahead of demand (netns, veth pair, addresses, routes,
//! neighbours, links up) that belong to nobody yet. A create the pool can serve takes one and
//! only gives it what is the client's: its name, the host veth's mark, set and map elements,
//! rate limits, resolv.conf. Plain bookkeeping: the executor decides when to build and claim.

use crate::cmd::DEFAULT_NS_IFNAME;
use crate::model::{self, Conf, Namespace, NamespaceSpec, Subnet, Subnet6};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Warm namespaces built per refill batch. Refill runs only while no client command is queued,
/// and a command that arrives meanwhile waits for the batch in progress: small enough that this
/// costs a few milliseconds (~1 ms of kernel work each here), big enough to batch the netlink
/// round trips.
pub const REFILL_BATCH: usize = 8;
/// A refill batch that a command arrived during halves the next (down to this); one that
/// none did doubles it back (up to [`REFILL_BATCH`]). Under a steady load of cold creates, the
/// wait a command can have behind refill shrinks with the batch; a quiet refill runs at full
/// batches.
pub const REFILL_BATCH_MIN: usize = 2;
/// Refill starts once the executor has had no write for this long: the next command of a
/// client that waits for each answer arrives before refill work takes the CPU (on two cores,
/// refilling right after a claim delayed its answer by ~0.5 ms while answers were written by
/// the runtime's threads). Reads do not count: a status poll every few milliseconds would
/// otherwise idle the refill for this long after each.
pub const REFILL_QUIET: Duration = Duration::from_millis(2);
/// After a refill that failed (e.g. the pool is exhausted), the next waits this long.
pub const REFILL_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct Warm {
    /// How many the agent keeps ready (`--warm`).
    pub target: usize,
    /// Ready ones, oldest first (claimed first).
    ready: VecDeque<Namespace>,
    /// For the next one's name.
    seq: u64,
    /// The next refill batch's size (see [`REFILL_BATCH_MIN`]).
    batch: usize,
    paused_until: Option<Instant>,
}

impl Warm {
    pub fn new(target: usize) -> Self {
        Warm {
            target,
            batch: REFILL_BATCH,
            ..Warm::default()
        }
    }

    /// How many the next refill batch builds.
    pub fn batch(&self) -> usize {
        self.wanted().min(self.batch.max(REFILL_BATCH_MIN))
    }

    /// After a refill batch: whether a command arrived while it ran.
    pub fn refilled(&mut self, interrupted: bool) {
        self.batch = match interrupted {
            true => (self.batch / 2).max(REFILL_BATCH_MIN),
            false => (self.batch * 2).min(REFILL_BATCH),
        };
    }

    pub fn ready(&self) -> usize {
        self.ready.len()
    }

    /// How many to build now: nothing while paused.
    pub fn wanted(&self) -> usize {
        if self.paused_until.is_some_and(|t| Instant::now() < t) {
            return 0;
        }
        self.target.saturating_sub(self.ready.len())
    }

    pub fn pause(&mut self) {
        self.paused_until = Some(Instant::now() + REFILL_PAUSE);
    }

    /// What a warm namespace is: the defaults of a create, under a name no client can give.
    pub fn spec(&mut self) -> NamespaceSpec {
        self.seq += 1;
        NamespaceSpec {
            name: model::warm_name(self.seq),
            subnet: None,
            ipv6: true,
            subnet6: None,
            conf: Conf {
                nat: true,
                ..Conf::default()
            },
            ns_ifname: DEFAULT_NS_IFNAME.to_string(),
            host_ifname: None,
            mtu: None,
        }
    }

    /// Whether a warm namespace can become what `spec` asks for by a claim alone: it asks for
    /// no address plan or interface layout of its own (`dual`: warm ones have IPv6 iff the
    /// agent has an IPv6 pool). Everything in [`Conf`] can be given on claim.
    pub fn serves(spec: &NamespaceSpec, dual: bool) -> bool {
        spec.subnet.is_none()
            && spec.subnet6.is_none()
            && spec.host_ifname.is_none()
            && spec.mtu.is_none()
            && spec.ns_ifname == DEFAULT_NS_IFNAME
            && (spec.ipv6 || !dual)
    }

    pub fn take(&mut self) -> Option<Namespace> {
        self.ready.pop_front()
    }

    /// A claim that changed nothing: first in line again.
    pub fn put_back(&mut self, ns: Namespace) {
        self.ready.push_front(ns);
    }

    pub fn add(&mut self, ns: Namespace) {
        // Names continue after what recovery adopted.
        if let Some(n) = ns.name.rsplit('-').next().and_then(|n| n.parse().ok()) {
            self.seq = self.seq.max(n);
        }
        self.ready.push_back(ns);
    }

    /// The ready one whose subnets overlap `subnet` or `subnet6`, taken out.
    pub fn take_overlapping(
        &mut self,
        subnet: Option<Subnet>,
        subnet6: Option<Subnet6>,
    ) -> Option<Namespace> {
        if subnet.is_none() && subnet6.is_none() {
            return None;
        }
        let i = self.ready.iter().position(|w| {
            subnet.is_some_and(|s| w.subnet.start() <= s.end() && s.start() <= w.subnet.end())
                || subnet6.is_some_and(|s| {
                    w.v6.is_some_and(|v| {
                        v.subnet6.start() <= s.end() && s.start() <= v.subnet6.end()
                    })
                })
        })?;
        self.ready.remove(i)
    }

    /// The ready one whose host veth is `ifindex`, taken out.
    pub fn take_ifindex(&mut self, ifindex: u32) -> Option<Namespace> {
        let i = self.ready.iter().position(|w| w.host_ifindex == ifindex)?;
        self.ready.remove(i)
    }

    #[cfg(test)]
    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        self.ready.iter()
    }

    pub fn take_all(&mut self) -> Vec<Namespace> {
        self.ready.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refill_batch_shrinks_under_load_and_grows_back_when_quiet() {
        let mut w = Warm::new(100);
        assert_eq!(w.batch(), REFILL_BATCH);
        w.refilled(true);
        w.refilled(true);
        assert_eq!(w.batch(), REFILL_BATCH / 4);
        w.refilled(true);
        w.refilled(true);
        assert_eq!(w.batch(), REFILL_BATCH_MIN);
        w.refilled(false);
        w.refilled(false);
        w.refilled(false);
        assert_eq!(w.batch(), REFILL_BATCH);
        // Never more than is wanted.
        let w = Warm::new(3);
        assert_eq!(w.batch(), 3);
    }
}
