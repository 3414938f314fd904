//! `attach` and `detach`: wire a network namespace the agent did not make (a container
//! runtime's, named by a path), with everything a `create` gives; and take that wiring away
//! again. The agent never deletes an attached namespace itself: `detach` (or `delete`) removes
//! its veth pair, elements and files, and the namespace stays the runtime's.

use super::{Create, Deleted, Op, Request};
use crate::model::{self, Namespace};
use crate::protocol::{ApiError, ErrorCode, Limits};
use serde::{Deserialize, Serialize};

/// Longest `netns_path` accepted (PATH_MAX).
const MAX_PATH: usize = 4096;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Attach {
    /// The namespace file: `/proc/PID/ns/net`, `/run/netns/NAME`, … (checked by the agent: a
    /// network namespace, and not its own).
    pub netns_path: String,
    /// Every `create` field (`name`, `subnet`, `nat`, `ns_ifname`, `labels`, …).
    #[serde(flatten)]
    pub create: Create,
}

/// Decodes an `attach` request: `netns_path`, and everything else as a `create` (whose
/// unknown fields are errors; serde's `flatten` would let them through).
pub(super) fn decode(
    mut fields: serde_json::Map<String, serde_json::Value>,
    limits: Limits,
) -> Result<Request, ApiError> {
    let bad = |e: String| ApiError::new(ErrorCode::BadRequest, e);
    let netns_path = match fields.remove("netns_path") {
        Some(serde_json::Value::String(p)) => p,
        Some(_) => return Err(bad("netns_path: a string is needed".into())),
        None => return Err(bad("missing field `netns_path`".into())),
    };
    let create: Create = serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| bad(e.to_string()))?;
    Attach { netns_path, create }.validate(limits)
}

impl Op for Attach {
    const NAME: &'static str = "attach";
    type Output = Namespace;
    fn validate(self, limits: Limits) -> Result<Request, ApiError> {
        let p = &self.netns_path;
        if !p.starts_with('/') || p.len() > MAX_PATH || p.contains('\0') {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("netns_path {p:?}: an absolute path is needed"),
            ));
        }
        let Request::Create(spec) = self.create.validate(limits)? else {
            return Err(ApiError::new(
                ErrorCode::Internal,
                "create did not plan a create",
            ));
        };
        Ok(Request::Attach {
            spec,
            netns_path: self.netns_path.into(),
        })
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detach {
    pub name: String,
}

impl Op for Detach {
    const NAME: &'static str = "detach";
    type Output = Deleted;
    fn validate(self, _: Limits) -> Result<Request, ApiError> {
        model::validate_name(&self.name)?;
        Ok(Request::Detach { name: self.name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> Limits {
        Limits {
            min_prefix: 30,
            min_prefix6: None,
        }
    }

    #[test]
    fn create_fields_pass_and_unknown_ones_do_not() {
        let a: Attach = serde_json::from_value(json!({
            "name":"c1","netns_path":"/proc/1/ns/net","ns_ifname":"eth1","nat":false
        }))
        .unwrap();
        let Ok(Request::Attach { spec, netns_path }) = a.validate(limits()) else {
            panic!("not an attach");
        };
        assert_eq!(
            (spec.name.as_str(), spec.ns_ifname.as_str()),
            ("c1", "eth1")
        );
        assert!(!spec.conf.nat);
        assert_eq!(netns_path, std::path::PathBuf::from("/proc/1/ns/net"));
        let fields = |v: serde_json::Value| v.as_object().unwrap().clone();
        let bad = decode(
            fields(json!({"name":"c1","netns_path":"/x","bogus":1})),
            limits(),
        );
        assert!(bad.is_err(), "unknown field");
        assert!(
            decode(fields(json!({"name":"c1"})), limits()).is_err(),
            "no path"
        );
        assert!(decode(fields(json!({"name":"c1","netns_path":"/x"})), limits()).is_ok());
        for p in ["relative", "", "/a\0b"] {
            let a = Attach {
                netns_path: p.into(),
                create: Create {
                    name: "c1".into(),
                    ..Create::default()
                },
            };
            assert!(a.validate(limits()).is_err(), "{p:?}");
        }
    }
}
