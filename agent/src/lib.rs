//! nsagent: network namespaces at kernel speed.
//!
//! A request's way through the house:
//! protocol (decode + validate, [`protocol`]) → socket tasks ([`server`]) → bounded crossbeam
//! queue → executor thread ([`executor`]: batches, planning, rollback) → kernel ([`driver`]:
//! [`netns`] + [`netlink`] for links and addresses, the `nft` crate for the table).
//! [`model`] is the plain data both sides agree on; [`pool`] hands out subnets.

pub mod driver;
pub mod executor;
pub mod http;
pub mod model;
pub mod netlink;
pub mod netns;
pub mod pool;
pub mod protocol;
pub mod recover;
pub mod server;
