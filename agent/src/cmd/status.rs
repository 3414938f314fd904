//! `status`: the agent's configuration and counters.

use super::{Op, Request};
use crate::protocol::{ApiError, Limits};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetStatus {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub namespaces: usize,
    /// Deleted namespaces whose host veth the kernel has not freed yet.
    pub pending_deletions: usize,
    pub pool: PoolStatus,
    /// The IPv6 pool, if the agent has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool6: Option<PoolStatus>,
    /// `None`: any interface that is not a namespace's.
    pub uplink: Option<String>,
    pub table: String,
    pub netns_dir: String,
    pub uptime_seconds: u64,
    /// How many executor batches had that many commands: `{"1": n, "2-3": n, …, "512+": n}`.
    #[serde(default)]
    pub batch_sizes: BTreeMap<String, u64>,
    /// The warm pool (`--warm`).
    #[serde(default)]
    pub warm: WarmStatus,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmStatus {
    /// How many the agent keeps built.
    pub target: usize,
    /// How many are built and unclaimed now.
    pub ready: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    pub cidr: String,
    pub prefix_len: u8,
    /// Subnets, free or not.
    pub size: u32,
    /// Subnets a create can get: unused ones and those of warm namespaces.
    pub free: u32,
}

impl Op for GetStatus {
    const NAME: &'static str = "status";
    type Output = Status;
    fn validate(self, _: Limits) -> Result<Request, ApiError> {
        Ok(Request::Status)
    }
}
