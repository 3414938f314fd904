//! `create`: a fully wired namespace. The wire fields are checked here and become a
//! [`NamespaceSpec`]; the answer is the [`Namespace`] that now exists.

use super::{Op, Request};
use crate::model::{
    self, Bandwidth, Conf, Dns, Labels, Namespace, NamespaceSpec, PortForward, Subnet, Subnet6,
    ValidationError,
};
use crate::protocol::{ApiError, ErrorCode, Limits};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// The interface name inside the namespace when the client names none.
pub const DEFAULT_NS_IFNAME: &str = "eth0";
/// MTUs the kernel accepts on a veth that carries IPv4.
const MTU_RANGE: std::ops::RangeInclusive<u32> = 68..=65535;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Create {
    pub name: String,
    /// "a.b.c.d/len"; default: allocated from the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Dual stack (default: yes when the agent has an IPv6 pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<bool>,
    /// "addr/len"; default: allocated from the IPv6 pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<String>,
    /// Masquerade the namespace's traffic out of the uplink (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_ifname: Option<String>,
    /// Default: `nsv` + 8 hex digits, chosen by the agent (a reserved form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ifname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The namespace's resolv.conf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    /// Rate limits into and out of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    /// Published ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortForward>>,
    /// The address outbound traffic leaves from (needs nat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_addr: Option<Ipv4Addr>,
    /// The same for IPv6 traffic (needs nat and dual stack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_addr6: Option<std::net::Ipv6Addr>,
    /// The client's key/value pairs (model::labels has the rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
}

impl Op for Create {
    const NAME: &'static str = "create";
    type Output = Namespace;

    fn validate(self, limits: Limits) -> Result<Request, ApiError> {
        model::validate_name(&self.name)?;
        let ns_ifname = self
            .ns_ifname
            .unwrap_or_else(|| DEFAULT_NS_IFNAME.to_string());
        model::validate_ifname(&ns_ifname)?;
        if ns_ifname == "lo" {
            return Err(ValidationError::IfName(ns_ifname).into());
        }
        if let Some(h) = &self.host_ifname {
            model::validate_ifname(h)?;
            if model::is_agent_ifname(h) {
                return Err(ValidationError::ReservedIfName(h.clone()).into());
            }
        }
        let subnet = self
            .subnet
            .map(|s| Subnet::parse_for_namespace(&s, limits.min_prefix))
            .transpose()?;
        if let Some(m) = self.mtu {
            if !MTU_RANGE.contains(&m) {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    format!("mtu {m} out of range {MTU_RANGE:?}"),
                ));
            }
        }
        let conf = Conf {
            nat: self.nat.unwrap_or(true),
            dns: self.dns,
            bandwidth: self.bandwidth,
            ports: sorted(self.ports.unwrap_or_default()),
            egress_addr: self.egress_addr,
            egress_addr6: self.egress_addr6,
            labels: self.labels.unwrap_or_default(),
        };
        validate_conf(&conf)?;
        let subnet6 = match (self.subnet6, limits.min_prefix6) {
            (None, _) => None,
            (Some(s), Some(min)) => Some(Subnet6::parse_for_namespace(&s, min)?),
            (Some(_), None) => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "subnet6: the agent is IPv4 only (no --pool6)",
                ))
            }
        };
        if subnet6.is_some() && self.ipv6 == Some(false) {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "subnet6 with ipv6: false",
            ));
        }
        Ok(Request::Create(NamespaceSpec {
            name: self.name,
            subnet,
            ipv6: self.ipv6.unwrap_or(true),
            subnet6,
            conf,
            ns_ifname,
            host_ifname: self.host_ifname,
            mtu: self.mtu,
        }))
    }
}

/// Checks the parts of a [`Conf`] that can be wrong on their own.
pub fn validate_conf(conf: &Conf) -> Result<(), ApiError> {
    conf.validate()
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))
}

/// Published ports in one order (by what they listen on), so that an answer before and after a
/// restart (which reads them back from the kernel) is the same.
pub fn sorted(mut ports: Vec<PortForward>) -> Vec<PortForward> {
    ports.sort_by_key(|p| (p.listener(), p.port));
    ports
}
