//! "Make the kernel look like that": the side of the executor that touches the kernel, behind a
//! trait so the executor's planning, rollback and failure isolation can be tested with a fake.
//!
//! [`KernelDriver`] speaks rtnetlink (links, addresses, routes, neighbours; [`crate::netlink`]),
//! makes named namespaces ([`crate::netns`]) and changes the agent's nft table (the `nft` crate).
//! [`recover`] rebuilds the agent's view from the kernel at start-up. [`Fake`] stands in for the
//! kernel in tests that need no root.

mod check;
mod conntrack;
mod etc;
mod fake;
mod files;
mod kernel;
mod recover;
mod requests;
mod tc;

pub use crate::netlink::NetlinkError;
pub use crate::netns::{NetnsDir, NetnsError};
pub use etc::EtcNetns;
pub use fake::Fake;
pub use files::{Attachment, FileStore};
pub use kernel::KernelDriver;
pub use recover::Recovery;

use crate::model::{Namespace, PortForward, Problem};
use crate::protocol::{ApiError, ErrorCode};
use nft::{Elem, ElemOp, GroupError, NftError};
use std::net::IpAddr;

/// Why the kernel refused a step.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A netlink request failed; `step` says which one (e.g. "add gateway address").
    #[error("{step}: {source}")]
    Netlink {
        step: &'static str,
        #[source]
        source: NetlinkError,
    },
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The nft transaction rejected this command's element changes.
    #[error(transparent)]
    Nft(#[from] GroupError),
    /// A whole-table nft operation failed (start-up, shutdown).
    #[error("nft table: {0}")]
    Table(#[from] NftError),
    /// A driver broke its own contract.
    #[error("{0}")]
    Bug(&'static str),
    /// Writing the namespace's resolv.conf failed.
    #[error("write resolv.conf: {0}")]
    Etc(#[source] std::io::Error),
    /// Storing the namespace's labels failed.
    #[error("store labels: {0}")]
    Labels(#[source] std::io::Error),
    /// A per-interface switch the kernel only offers in procfs could not be set.
    #[error("set {0}: {1}")]
    Sysctl(&'static str, #[source] std::io::Error),
    /// An attach to a namespace whose interface index 2 is taken (by an earlier attachment).
    #[error("{0} has an interface at index 2 already: nsagent attaches one veth per namespace, as its first interface")]
    PeerIndexTaken(String),
    /// Reading the netns directory failed (start-up recovery).
    #[error("read the netns directory: {0}")]
    Dir(#[source] std::io::Error),
}

impl DriverError {
    /// The kernel's errno, when a netlink request failed.
    pub fn errno(&self) -> Option<i32> {
        match self {
            DriverError::Netlink {
                source: NetlinkError::Errno { errno, .. },
                ..
            } => Some(*errno),
            _ => None,
        }
    }

    /// The protocol's code for it: the one place a kernel error becomes an [`ErrorCode`].
    pub fn code(&self) -> ErrorCode {
        match self {
            _ if self.errno() == Some(libc::EEXIST) => ErrorCode::Exists,
            DriverError::Netns(NetnsError::Exists(_)) => ErrorCode::Exists,
            DriverError::Netns(NetnsError::Refused(_)) | DriverError::PeerIndexTaken(_) => {
                ErrorCode::BadRequest
            }
            DriverError::Bug(_) => ErrorCode::Internal,
            _ => ErrorCode::Kernel,
        }
    }
}

impl From<DriverError> for ApiError {
    fn from(e: DriverError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

/// A create that failed. `link_created`: a host veth was made and dies asynchronously with the
/// namespace, so its name, index and subnet stay reserved until the kernel reports it gone. For
/// a claim of a warm namespace: `false` means nothing was changed (it can serve another create),
/// `true` that it was used up and removed.
#[derive(Debug)]
pub struct CreateFailure {
    pub error: DriverError,
    pub link_created: bool,
}

/// What became of the host links the executor waits for.
pub enum Gone {
    Links(Vec<u32>),
    /// Notifications were lost: the caller must ask [`Driver::link_exists`] for each.
    Resync,
}

pub trait Driver {
    /// The netlink phase for a batch of creates. A failed item has been undone by the driver
    /// (its netns file removed) before this returns. Items named [`crate::model::warm_name`]
    /// are built for the warm pool: their netns file is in the warm directory.
    fn create(&mut self, items: &[Namespace]) -> Vec<Result<(), CreateFailure>>;
    /// Gives warm namespaces to clients: each `(warm, ns)` makes the warm namespace `ns` (the
    /// same subnets and links; a client's name, mark, rate limits, resolv.conf) and moves its
    /// netns file to `ns`'s name. A failed claim left it untouched (`link_created: false`) or
    /// has removed it.
    fn claim(&mut self, claims: &[(Namespace, Namespace)]) -> Vec<Result<(), CreateFailure>>;
    /// Writes the ownership marks of claimed namespaces' host veths. Called after their answers:
    /// one RTM_SETLINK was the dearest step of a claim (docs/kernel.md#the-mark-after-the-answer).
    /// Until it is written the host veth keeps the warm namespace's mark, which recovery reads
    /// as "claimed, by the name of its netns file". A failure is only logged. The emptied files
    /// the claims' moves left in the warm directory go here too.
    fn mark_claimed(&mut self, _nss: &[&Namespace]) {}
    /// Removes a namespace's file; the kernel destroys the namespace and its veth pair, once
    /// [`Driver::release_removed`] lets it (a driver may hold removed namespaces so that they die
    /// together). An attached one stays: its veth pair goes, after its connections are
    /// forgotten ([`own_conns`]), both maybe after the answer but before the kernel reports
    /// the link gone.
    fn remove(&mut self, nss: &[Namespace]);
    /// Removes links of ours that start-up recovery found only in its background dump and that
    /// are no live or dying namespace's (`ours(name, host ifindex)`); returns their names.
    /// Cheap to call often: the dump starts once the executor is `idle`, and nothing happens
    /// until it is in, and only once.
    fn sweep_orphans(&mut self, _ours: &dyn Fn(&str, u32) -> bool, _idle: bool) -> Vec<String> {
        vec![]
    }
    /// Lets every removed namespace the driver holds die now; returns how many.
    fn release_removed(&mut self) -> usize {
        0
    }
    /// How many removed namespaces the driver holds, and since when.
    fn removed_held(&self) -> (usize, Option<std::time::Instant>) {
        (0, None)
    }
    /// One nft transaction with one group of element changes per command.
    fn nft(&mut self, groups: &[Vec<ElemOp>]) -> Vec<Result<(), GroupError>>;
    /// Host links that disappeared since the last call.
    fn gone_links(&mut self) -> Gone;
    fn link_exists(&mut self, ifindex: u32) -> bool;
    /// Deletes a host link outright (slow: the kernel waits for RCU). Only for links whose
    /// namespace cannot take them down, e.g. one a process still holds open.
    fn delete_link(&mut self, ifindex: u32);
    /// Names whose netns file disappeared (someone ran `ip netns del`) since the last call.
    fn gone_netns(&mut self) -> Vec<String>;
    /// Removes the agent's table (shutdown with --cleanup-on-exit).
    fn delete_table(&mut self);
    /// Whether `addr` is one of the host's own addresses (an egress address or a published
    /// port's host address must be).
    fn is_local(&mut self, addr: IpAddr) -> bool;
    /// Deletes the conntrack entries of connections that no longer have a namespace or a
    /// published port to go to, so that the next user of an address starts clean.
    fn forget(&mut self, conns: &[Conns]);
    /// Changes a live namespace from `old` to `new` outside the nft table (its mark, rate
    /// limits, resolv.conf). On failure it has put back what it changed.
    fn update(&mut self, old: &Namespace, new: &Namespace) -> Result<(), DriverError>;
    /// How each of `nss` (as the agent made it) differs in the kernel: one list per namespace,
    /// empty when it is whole. The host-wide state (addresses, routes, qdiscs, the table's
    /// elements) is read again when `fresh`, else taken from the last fresh call: the caller
    /// says fresh when something may have changed what those namespaces should have.
    fn check(&mut self, nss: &[Namespace], _fresh: bool) -> Vec<Vec<Problem>> {
        nss.iter().map(|_| vec![]).collect()
    }
    /// Puts back whatever of a live namespace is missing (what is there stays as it is).
    fn repair(&mut self, _ns: &Namespace) -> Result<(), DriverError> {
        Ok(())
    }
}

/// Connections to forget (their conntrack entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conns {
    /// Every connection that involves the address, either way.
    Of(std::net::IpAddr),
    /// Connections to `addr:port` over `proto` (as their replies show: from that service).
    To {
        addr: std::net::IpAddr,
        proto: u8,
        port: u16,
    },
}

/// The connections of a namespace's own addresses, forgotten when it goes.
pub fn own_conns(ns: &Namespace) -> impl Iterator<Item = Conns> {
    let v4 = Conns::Of(ns.address.into());
    std::iter::once(v4).chain(ns.v6.map(|v| Conns::Of(v.address6.into())))
}

/// A namespace's set and map elements: how it appears in the agent's table.
pub fn elems(ns: &Namespace) -> Vec<Elem> {
    let mut v = vec![Elem::NsIface(ns.host_ifname.clone())];
    if ns.conf.nat {
        v.push(Elem::NatSaddr(ns.address));
        v.extend(ns.v6.map(|v6| Elem::NatSaddr6(v6.address6)));
    }
    let address6 = ns.v6.map(|v6| IpAddr::from(v6.address6));
    for p in &ns.conf.ports {
        // A port on every address is published in each family the namespace has; one on a
        // given address, in that address's family.
        let targets = match p.host_addr {
            None => vec![Some(IpAddr::from(ns.address)), address6],
            Some(IpAddr::V4(_)) => vec![Some(ns.address.into())],
            Some(IpAddr::V6(_)) => vec![address6],
        };
        v.extend(targets.into_iter().flatten().map(|to| forward(p, to)));
    }
    if let Some(to) = ns.conf.egress_addr {
        v.push(Elem::Egress {
            saddr: ns.address.into(),
            to: to.into(),
        });
    }
    if let (Some(to), Some(saddr)) = (ns.conf.egress_addr6, address6) {
        v.push(Elem::Egress {
            saddr,
            to: to.into(),
        });
    }
    v
}

/// A published port as a map element.
pub fn forward(p: &PortForward, to: IpAddr) -> Elem {
    Elem::Forward(nft::Forward {
        daddr: p.host_addr,
        proto: p.proto.number(),
        dport: p.host_port,
        to,
        to_port: p.port,
    })
}
