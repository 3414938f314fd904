//! `delete`: remove a namespace (its elements in one transaction, then its netns file; the kernel
//! frees the rest in the background).

use super::{Op, Request};
use crate::model;
use crate::protocol::{ApiError, Limits};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delete {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub name: String,
}

impl Op for Delete {
    const NAME: &'static str = "delete";
    type Output = Deleted;
    fn validate(self, _: Limits) -> Result<Request, ApiError> {
        model::validate_name(&self.name)?;
        Ok(Request::Delete { name: self.name })
    }
}
