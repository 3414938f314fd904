//! `ping`: is the agent there, and which version is it.

use super::{Op, Request};
use crate::protocol::{ApiError, Limits};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ping {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    pub version: String,
}

impl Op for Ping {
    const NAME: &'static str = "ping";
    type Output = Pong;
    fn validate(self, _: Limits) -> Result<Request, ApiError> {
        Ok(Request::Ping)
    }
}
