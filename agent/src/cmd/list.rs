//! `list`: every live namespace, sorted by name.

use super::{Op, Request};
use crate::model::Namespace;
use crate::protocol::{ApiError, Limits};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct List {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceList {
    pub namespaces: Vec<Namespace>,
}

impl Op for List {
    const NAME: &'static str = "list";
    type Output = NamespaceList;
    fn validate(self, _: Limits) -> Result<Request, ApiError> {
        Ok(Request::List)
    }
}
