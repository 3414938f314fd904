//! `check`: compares the kernel with the agent's view of every live namespace (netns file, both
//! veth ends and their state, addresses, routes, qdiscs, set and map elements, resolv.conf);
//! with `repair`, puts back what is missing. Runs in slices between other commands.

use super::{Op, Request};
use crate::model::Problem;
use crate::protocol::{ApiError, Limits};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    #[serde(default)]
    pub repair: bool,
    /// Only this namespace (default: every one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What a check found: `clean` when nothing differed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    pub clean: bool,
    /// How many namespaces were looked at (not those created or changed while it ran).
    pub checked: usize,
    pub drift: Vec<Drift>,
}

/// One difference, and whether the check put it right (only with `repair`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub name: String,
    pub problem: Problem,
    pub repaired: bool,
}

impl Op for Check {
    const NAME: &'static str = "check";
    type Output = CheckReport;
    fn validate(self, _: Limits) -> Result<Request, ApiError> {
        if let Some(n) = &self.name {
            crate::model::validate_name(n)?;
        }
        Ok(Request::Check {
            repair: self.repair,
            name: self.name,
        })
    }
}
