//! Drift: how a live namespace in the kernel differs from what the agent made. Plain data; the
//! driver finds it (`Driver::check`), the executor reports and repairs it.

use serde::{Deserialize, Serialize};

/// One way a namespace differs from what it should be. The names are the protocol's and the
/// `problem` label of `nsagent_drift_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// Its netns file is gone (the agent removes the rest: `removed_externally`).
    NetnsMissing,
    /// Its host veth is gone (the same).
    HostLinkMissing,
    HostLinkDown,
    /// The host veth lacks the gateway address.
    HostAddressMissing,
    /// The host lacks the route to the namespace's IPv6 subnet.
    HostRoute6Missing,
    /// The rate limit into the namespace (tbf on the host veth) is gone.
    IngressQdiscMissing,
    /// The veth inside is gone.
    LinkMissing,
    LinkDown,
    LoDown,
    AddressMissing,
    Address6Missing,
    /// The default route inside is gone or points elsewhere.
    RouteMissing,
    Route6Missing,
    /// The rate limit out of the namespace (tbf on the veth inside) is gone.
    EgressQdiscMissing,
    /// One of its set or map elements is not in the agent's table.
    ElementMissing,
    /// Its resolv.conf is gone or not what the agent wrote.
    ResolvConfMissing,
}

impl Problem {
    /// The protocol's name of it.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::NetnsMissing => "netns_missing",
            Problem::HostLinkMissing => "host_link_missing",
            Problem::HostLinkDown => "host_link_down",
            Problem::HostAddressMissing => "host_address_missing",
            Problem::HostRoute6Missing => "host_route6_missing",
            Problem::IngressQdiscMissing => "ingress_qdisc_missing",
            Problem::LinkMissing => "link_missing",
            Problem::LinkDown => "link_down",
            Problem::LoDown => "lo_down",
            Problem::AddressMissing => "address_missing",
            Problem::Address6Missing => "address6_missing",
            Problem::RouteMissing => "route_missing",
            Problem::Route6Missing => "route6_missing",
            Problem::EgressQdiscMissing => "egress_qdisc_missing",
            Problem::ElementMissing => "element_missing",
            Problem::ResolvConfMissing => "resolv_conf_missing",
        }
    }

    /// Whether the namespace itself is gone: nothing to put back, the rest is removed.
    pub fn is_gone(self) -> bool {
        matches!(self, Problem::NetnsMissing | Problem::HostLinkMissing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serde_names() {
        for p in [
            Problem::NetnsMissing,
            Problem::HostRoute6Missing,
            Problem::Address6Missing,
            Problem::ResolvConfMissing,
            Problem::ElementMissing,
        ] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
    }
}
