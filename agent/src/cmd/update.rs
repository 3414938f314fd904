//! `update`: changes a live namespace's configuration. A field given replaces the old value,
//! `null` removes it, an absent field stays. All or nothing: a refused update changes nothing.

use super::create::sorted;
use super::{Op, Request};
use crate::model::{self, Bandwidth, Conf, ConfError, Dns, Labels, Namespace, PortForward};
use crate::protocol::{ApiError, ErrorCode, Limits};
use serde::{Deserialize, Deserializer, Serialize};
use std::net::Ipv4Addr;

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value.
pub type Patch<T> = Option<Option<T>>;

/// Reads a present field, `null` included, as `Some(_)` (an absent one is `None` by default).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Patch<T>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<bool>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub ports: Patch<Vec<PortForward>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub egress_addr: Patch<Ipv4Addr>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub egress_addr6: Patch<std::net::Ipv6Addr>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub bandwidth: Patch<Bandwidth>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub dns: Patch<Dns>,
    /// Replaces every label (`null` or `{}`: none).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub labels: Patch<Labels>,
}

/// The validated changes: applied to a namespace's [`Conf`] by the executor, which checks the
/// result as a whole (e.g. an egress address needs NAT) against the live namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfPatch {
    pub nat: Option<bool>,
    pub ports: Patch<Vec<PortForward>>,
    pub egress_addr: Patch<Ipv4Addr>,
    pub egress_addr6: Patch<std::net::Ipv6Addr>,
    pub bandwidth: Patch<Bandwidth>,
    pub dns: Patch<Dns>,
    pub labels: Patch<Labels>,
}

impl ConfPatch {
    /// The configuration after the patch, checked as a whole.
    pub fn apply(&self, conf: &Conf) -> Result<Conf, ConfError> {
        let mut c = conf.clone();
        if let Some(nat) = self.nat {
            c.nat = nat;
        }
        if let Some(p) = &self.ports {
            c.ports = sorted(p.clone().unwrap_or_default());
        }
        if let Some(e) = self.egress_addr {
            c.egress_addr = e;
        }
        if let Some(e) = self.egress_addr6 {
            c.egress_addr6 = e;
        }
        if let Some(b) = self.bandwidth {
            c.bandwidth = b;
        }
        if let Some(d) = &self.dns {
            c.dns = d.clone();
        }
        if let Some(l) = &self.labels {
            c.labels = l.clone().unwrap_or_default();
        }
        c.validate()?;
        Ok(c)
    }
}

impl Op for Update {
    const NAME: &'static str = "update";
    type Output = Namespace;

    fn validate(self, _: Limits) -> Result<Request, ApiError> {
        model::validate_name(&self.name)?;
        let patch = ConfPatch {
            nat: self.nat,
            ports: self.ports,
            egress_addr: self.egress_addr,
            egress_addr6: self.egress_addr6,
            bandwidth: self.bandwidth,
            dns: self.dns,
            labels: self.labels,
        };
        if patch == ConfPatch::default() {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "nothing to update: give nat, ports, egress_addr, egress_addr6, bandwidth, dns or labels",
            ));
        }
        // What can be checked without the namespace (the default has nat and no egress
        // address, so only what is wrong whatever the namespace is refused here; the executor
        // checks the result against the live namespace).
        patch
            .apply(&Conf::default())
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?;
        Ok(Request::Update {
            name: self.name,
            patch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(v: serde_json::Value) -> Update {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn absent_null_and_value_differ() {
        let u = decode(json!({"name":"a","egress_addr":null,"dns":{"nameservers":["9.9.9.9"]}}));
        assert_eq!(u.egress_addr, Some(None));
        assert!(matches!(u.dns, Some(Some(_))));
        assert_eq!(u.ports, None);
        assert_eq!(u.bandwidth, None);
        // And they survive the way back (the CLI encodes with this type).
        let back = serde_json::to_value(&u).unwrap();
        assert_eq!(back["egress_addr"], json!(null));
        assert!(back.get("ports").is_none());
    }

    #[test]
    fn a_patch_replaces_removes_and_keeps() {
        let conf = Conf {
            egress_addr: Some("198.18.0.9".parse().unwrap()),
            ..Conf::default()
        };
        let p = ConfPatch {
            nat: Some(false),
            ..ConfPatch::default()
        };
        assert!(p.apply(&conf).is_err(), "egress without nat");
        let p = ConfPatch {
            nat: Some(false),
            egress_addr: Some(None),
            ..ConfPatch::default()
        };
        let c = p.apply(&conf).unwrap();
        assert_eq!((c.nat, c.egress_addr), (false, None));
    }
}
