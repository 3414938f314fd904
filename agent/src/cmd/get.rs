//! `get`: one live namespace.

use super::{Op, Request};
use crate::model::{self, Namespace};
use crate::protocol::{ApiError, Limits};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Get {
    pub name: String,
}

impl Op for Get {
    const NAME: &'static str = "get";
    type Output = Namespace;
    fn validate(self, _: Limits) -> Result<Request, ApiError> {
        model::validate_name(&self.name)?;
        Ok(Request::Get { name: self.name })
    }
}
