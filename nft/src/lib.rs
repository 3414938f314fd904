//! The agent's one nftables table, described as data ([`TableSpec`]) and changed only by atomic
//! transactions ([`NftSocket`]).
//!
//! The rule set is fixed by the configuration: namespaces enter it only as set elements, so the
//! number of rules never depends on how many namespaces exist. This crate knows nothing about
//! sockets, commands or metrics; it only turns "this table, these element changes" into netlink
//! batches and tells which change the kernel rejected.

mod raw;
mod spec;
mod tx;

pub use spec::{ChainName, Elem, Forward, Match, RuleSpec, SetName, TableSpec, Verdict, IFNAMSIZ};
pub use tx::{ElemOp, GroupError, NftError, NftSocket, Transaction};
