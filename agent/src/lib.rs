//! nsagent: network namespaces at kernel speed.
//!
//! A request's way through the house:
//! [`protocol`] (lines, decode + validate, with one type per command in [`cmd`]) →
//! [`server`] (socket tasks) → bounded crossbeam queue → [`executor`] (one thread: batches,
//! planning, rollback) → [`driver`] (the kernel: [`netns`] + [`netlink`] for namespaces, links
//! and addresses, the `nft` crate for the table). [`model`] is the plain data both sides agree
//! on. Metrics observe at the edges; they never steer.
//!
//! The binary is a thin shell over [`cli::main`]; `nsagent run` is [`server::run`] with a
//! [`config::Config`].

pub mod cli;
pub mod cmd;
pub mod config;
pub mod driver;
pub mod executor;
pub mod model;
pub mod netlink;
pub mod netns;
pub mod protocol;
pub mod server;

mod http;
mod pool;

pub use pool::Pool;
