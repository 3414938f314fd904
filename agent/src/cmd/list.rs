//! `list`: every live namespace, sorted by name; with a `selector`, only those carrying every
//! label it names.

use super::{Op, Request};
use crate::model::{labels, Labels, Namespace};
use crate::protocol::{ApiError, ErrorCode, Limits};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct List {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Labels>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceList {
    pub namespaces: Vec<Namespace>,
}

impl Op for List {
    const NAME: &'static str = "list";
    type Output = NamespaceList;
    fn validate(self, _: Limits) -> Result<Request, ApiError> {
        Ok(Request::List {
            selector: selector(self.selector)?,
        })
    }
}

/// A selector given or not (none selects everything), checked like labels.
pub(super) fn selector(s: Option<Labels>) -> Result<Labels, ApiError> {
    let s = s.unwrap_or_default();
    labels::validate(&s)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("selector: {e}")))?;
    Ok(s)
}
