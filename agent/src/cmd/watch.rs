//! `watch`: after its answer, the connection also receives one line per change the agent
//! commits (crate::events), for the namespaces `selector` selects (all without one). The
//! connection answers the watch itself; nothing is queued for the executor.

use super::{Op, Request};
use crate::model::Labels;
use crate::protocol::{ApiError, Limits};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Labels>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watching {
    pub watching: bool,
}

impl Op for Watch {
    const NAME: &'static str = "watch";
    type Output = Watching;
    fn validate(self, _: Limits) -> Result<Request, ApiError> {
        Ok(Request::Watch {
            selector: super::list::selector(self.selector)?,
        })
    }
}
