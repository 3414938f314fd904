//! `nsagent-cni`: a CNI plugin (spec 1.0/1.1) that forwards to the running agent. A runtime
//! executes it once per container and verb, as it would `ptp` or `bridge`; the agent does the
//! work (`attach`, `detach`, `check`), so containers get its constant-rule table, batching,
//! recovery and metrics. Its binary is `nsagent-cni` (src/bin/nsagent-cni.rs).
//!
//! Network configuration keys (docs/cni.md): `socket` (the agent's, default
//! [`crate::config::DEFAULT_SOCKET`]), `nat` (`ipMasq` is accepted as an alias; default true),
//! `ipv6`, `mtu`, `dns`; the runtime's `portMappings` and `bandwidth` capabilities
//! (`runtimeConfig`) become the namespace's `ports` and `bandwidth`.

use crate::cli::Client;
use crate::cmd::{Attach, Check, Create, Detach, Get, List, Ping};
use crate::model::{Bandwidth, Dns, Labels, Namespace, PortForward, Proto};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::io::Read;
use std::path::PathBuf;

/// The spec versions this plugin speaks.
pub const SUPPORTED: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The labels an attachment carries, so that GC and CHECK find it by what the runtime knows.
pub const LABEL_NETWORK: &str = "cni.dev/network";
pub const LABEL_CONTAINER: &str = "cni.dev/container-id";
pub const LABEL_IFNAME: &str = "cni.dev/ifname";

/// A CNI error: the spec's well-known codes, or ours from 100 up.
#[derive(Debug)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

fn err(code: u32, msg: impl Into<String>, details: impl Into<String>) -> CniError {
    CniError {
        code,
        msg: msg.into(),
        details: details.into(),
    }
}

/// Spec error codes.
const INCOMPATIBLE_VERSION: u32 = 1;
const UNKNOWN_CONTAINER: u32 = 3;
const INVALID_ENV: u32 = 4;
const IO_FAILURE: u32 = 5;
const DECODE_FAILURE: u32 = 6;
const INVALID_CONFIG: u32 = 7;
const TRY_AGAIN_LATER: u32 = 11;
const NOT_AVAILABLE: u32 = 50;
/// Ours: the agent refused the request (its code and message in `msg`).
const AGENT_REFUSED: u32 = 100;
/// Ours: CHECK found the container's network different from what it should be.
const DRIFTED: u32 = 101;

/// The network configuration a runtime passes on stdin (what this plugin reads of it).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetConf {
    #[serde(default)]
    cni_version: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    socket: Option<PathBuf>,
    #[serde(default)]
    nat: Option<bool>,
    #[serde(default)]
    ip_masq: Option<bool>,
    #[serde(default)]
    ipv6: Option<bool>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    dns: Option<Dns>,
    #[serde(default)]
    runtime_config: RuntimeConfig,
    /// Refused by ADD unless empty: addresses come from the agent's pool, and a subnet asked
    /// for here must not be silently ignored.
    #[serde(default)]
    ipam: Option<Value>,
    /// GC: what the runtime still uses.
    #[serde(default, rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<ValidAttachment>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig {
    #[serde(default)]
    port_mappings: Vec<PortMapping>,
    #[serde(default)]
    bandwidth: Option<CniBandwidth>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PortMapping {
    host_port: u16,
    container_port: u16,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default, rename = "hostIP")]
    host_ip: Option<String>,
}

/// The bandwidth capability: rates in bits per second (bursts are the agent's own).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CniBandwidth {
    #[serde(default)]
    ingress_rate: Option<u64>,
    #[serde(default)]
    egress_rate: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValidAttachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

/// The CNI_* variables.
struct Env {
    command: String,
    container_id: String,
    netns: String,
    ifname: String,
}

fn env() -> Result<Env, CniError> {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let command = var("CNI_COMMAND");
    if command.is_empty() {
        return Err(err(INVALID_ENV, "CNI_COMMAND is not set", ""));
    }
    Ok(Env {
        command,
        container_id: var("CNI_CONTAINERID"),
        netns: var("CNI_NETNS"),
        ifname: var("CNI_IFNAME"),
    })
}

/// Runs the plugin: the result (or error) on stdout, the exit code returned.
pub fn main() -> i32 {
    let mut stdin = String::new();
    let read = std::io::stdin().read_to_string(&mut stdin);
    let (version, out) = match read {
        Err(e) => (
            String::new(),
            Err(err(IO_FAILURE, "cannot read stdin", e.to_string())),
        ),
        Ok(_) => run(&stdin),
    };
    let version = if version.is_empty() {
        "1.1.0".to_string()
    } else {
        version
    };
    match out {
        Ok(Some(v)) => {
            println!("{v}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            let v =
                json!({"cniVersion": version, "code": e.code, "msg": e.msg, "details": e.details});
            println!("{v}");
            1
        }
    }
}

/// One verb: (the config's cniVersion, what to print).
fn run(stdin: &str) -> (String, Result<Option<Value>, CniError>) {
    let env = match env() {
        Ok(e) => e,
        Err(e) => return (String::new(), Err(e)),
    };
    if env.command == "VERSION" {
        let v = serde_json::from_str::<Value>(stdin)
            .ok()
            .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
            .unwrap_or_default();
        return (
            v,
            Ok(Some(
                json!({"cniVersion": "1.1.0", "supportedVersions": SUPPORTED}),
            )),
        );
    }
    let conf: NetConf = match serde_json::from_str(stdin) {
        Ok(c) => c,
        Err(e) => {
            return (
                String::new(),
                Err(err(
                    DECODE_FAILURE,
                    "cannot decode the network configuration",
                    e.to_string(),
                )),
            )
        }
    };
    let version = conf.cni_version.clone();
    if !SUPPORTED.contains(&version.as_str()) {
        let e = err(
            INCOMPATIBLE_VERSION,
            format!("cniVersion {version:?} is not supported"),
            format!("supported: {SUPPORTED:?}"),
        );
        return (version, Err(e));
    }
    let out = match env.command.as_str() {
        "ADD" => add(&conf, &env).map(Some),
        "DEL" => del(&conf, &env).map(|()| None),
        "CHECK" => check(&conf, &env).map(|()| None),
        "GC" => gc(&conf).map(|()| None),
        "STATUS" => status(&conf).map(|()| None),
        other => Err(err(
            INVALID_ENV,
            format!("unknown CNI_COMMAND {other:?}"),
            "",
        )),
    };
    (version, out)
}

fn connect(conf: &NetConf) -> Result<Client, CniError> {
    let socket = conf
        .socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_SOCKET));
    Client::connect(&socket).map_err(|e| {
        err(
            TRY_AGAIN_LATER,
            "the nsagent agent is not reachable",
            e.to_string(),
        )
    })
}

fn refused(e: crate::cli::CliError) -> CniError {
    match e {
        crate::cli::CliError::Agent(a) => err(AGENT_REFUSED, a.to_string(), ""),
        other => err(
            TRY_AGAIN_LATER,
            "talking to the nsagent agent",
            other.to_string(),
        ),
    }
}

/// The agent's name for the attachment of (network, container, interface): stable, short, and
/// valid whatever the runtime's ids look like.
pub fn attachment_name(network: &str, container_id: &str, ifname: &str) -> String {
    // FNV-1a, 64 bits: no cryptography needed, only a stable spread.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in [network, "\0", container_id, "\0", ifname].concat().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("cni-{h:016x}")
}

fn need(what: &str, v: &str) -> Result<(), CniError> {
    if v.is_empty() {
        return Err(err(INVALID_ENV, format!("{what} is not set"), ""));
    }
    Ok(())
}

fn add(conf: &NetConf, env: &Env) -> Result<Value, CniError> {
    need("CNI_CONTAINERID", &env.container_id)?;
    need("CNI_NETNS", &env.netns)?;
    need("CNI_IFNAME", &env.ifname)?;
    if conf.ipam.as_ref().is_some_and(|v| v != &json!({})) {
        return Err(err(
            INVALID_CONFIG,
            "nsagent-cni takes no ipam: addresses come from the agent's pool (--pool)",
            "",
        ));
    }
    let name = attachment_name(&conf.name, &env.container_id, &env.ifname);
    let mut labels = Labels::new();
    labels.insert(LABEL_NETWORK.into(), conf.name.clone());
    labels.insert(LABEL_CONTAINER.into(), env.container_id.clone());
    labels.insert(LABEL_IFNAME.into(), env.ifname.clone());
    let ports = conf
        .runtime_config
        .port_mappings
        .iter()
        .map(port)
        .collect::<Result<Vec<_>, _>>()?;
    let bandwidth = conf.runtime_config.bandwidth.as_ref().map(|b| Bandwidth {
        ingress_bps: b.ingress_rate.filter(|r| *r > 0),
        egress_bps: b.egress_rate.filter(|r| *r > 0),
    });
    let attach = Attach {
        netns_path: env.netns.clone(),
        create: Create {
            name: name.clone(),
            nat: conf.nat.or(conf.ip_masq),
            ipv6: conf.ipv6,
            ns_ifname: Some(env.ifname.clone()),
            mtu: conf.mtu,
            dns: conf.dns.clone(),
            bandwidth: bandwidth.filter(|b| b.ingress_bps.is_some() || b.egress_bps.is_some()),
            ports: (!ports.is_empty()).then_some(ports),
            labels: Some(labels),
            ..Create::default()
        },
    };
    let mut client = connect(conf)?;
    let ns = match client.call(&attach) {
        Ok(ns) => ns,
        // A runtime that retries an ADD it did not see answered: the same attachment.
        Err(crate::cli::CliError::Agent(a)) if a.code == "exists" => client
            .call(&Get { name: name.clone() })
            .map_err(refused)
            .and_then(|ns| match ns.netns_path == env.netns {
                true => Ok(ns),
                false => Err(err(AGENT_REFUSED, a.to_string(), "")),
            })?,
        Err(e) => return Err(refused(e)),
    };
    Ok(result(&conf.cni_version, &ns, env))
}

fn port(p: &PortMapping) -> Result<PortForward, CniError> {
    let bad = |why: String| err(INVALID_CONFIG, "portMappings", why);
    let proto = match p.protocol.as_deref().unwrap_or("tcp") {
        "tcp" | "TCP" => Proto::Tcp,
        "udp" | "UDP" => Proto::Udp,
        other => return Err(bad(format!("protocol {other:?}: tcp or udp"))),
    };
    let host_addr = match p.host_ip.as_deref() {
        None | Some("") | Some("0.0.0.0") | Some("::") => None,
        Some(a) => Some(a.parse().map_err(|_| bad(format!("hostIP {a:?}")))?),
    };
    Ok(PortForward {
        proto,
        host_port: p.host_port,
        port: p.container_port,
        host_addr,
    })
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The ADD result of the spec version asked for: both interfaces (with MACs: podman refuses a
/// result without them), the addresses with their gateways, default routes, DNS.
fn result(version: &str, ns: &Namespace, env: &Env) -> Value {
    let old = version.starts_with("0.");
    let (host_mac, ns_mac) = ns.macs();
    let mut ips = vec![];
    let mut routes = vec![json!({"dst": "0.0.0.0/0", "gw": ns.gateway.to_string()})];
    let ip = |address: String, gateway: String, v: &str| {
        let mut o = Map::new();
        if old {
            o.insert("version".into(), json!(v));
        }
        o.insert("address".into(), json!(address));
        o.insert("gateway".into(), json!(gateway));
        o.insert("interface".into(), json!(1));
        Value::Object(o)
    };
    ips.push(ip(
        format!("{}/{}", ns.address, ns.subnet.prefix),
        ns.gateway.to_string(),
        "4",
    ));
    if let Some(v6) = ns.v6 {
        ips.push(ip(
            format!("{}/{}", v6.address6, v6.subnet6.prefix),
            v6.gateway6.to_string(),
            "6",
        ));
        routes.push(json!({"dst": "::/0", "gw": v6.gateway6.to_string()}));
    }
    let dns = ns.conf.dns.as_ref().map_or(
        json!({}),
        |d| json!({"nameservers": d.nameservers, "search": d.search, "options": d.options}),
    );
    json!({
        "cniVersion": version,
        "interfaces": [
            {"name": ns.host_ifname, "mac": mac(host_mac)},
            {"name": env.ifname, "mac": mac(ns_mac), "sandbox": env.netns},
        ],
        "ips": ips,
        "routes": routes,
        "dns": dns,
    })
}

fn del(conf: &NetConf, env: &Env) -> Result<(), CniError> {
    need("CNI_CONTAINERID", &env.container_id)?;
    need("CNI_IFNAME", &env.ifname)?;
    let name = attachment_name(&conf.name, &env.container_id, &env.ifname);
    match connect(conf)?.call(&Detach { name }) {
        Ok(_) => Ok(()),
        // The spec: deleting what is not there succeeds.
        Err(crate::cli::CliError::Agent(a)) if a.code == "not_found" => Ok(()),
        Err(e) => Err(refused(e)),
    }
}

fn check(conf: &NetConf, env: &Env) -> Result<(), CniError> {
    need("CNI_CONTAINERID", &env.container_id)?;
    need("CNI_IFNAME", &env.ifname)?;
    let name = attachment_name(&conf.name, &env.container_id, &env.ifname);
    let mut client = connect(conf)?;
    let ns = match client.call(&Get { name: name.clone() }) {
        Ok(ns) => ns,
        Err(crate::cli::CliError::Agent(a)) if a.code == "not_found" => {
            return Err(err(UNKNOWN_CONTAINER, "no such attachment", name))
        }
        Err(e) => return Err(refused(e)),
    };
    if !env.netns.is_empty() && ns.netns_path != env.netns {
        return Err(err(DRIFTED, "attached to another namespace", ns.netns_path));
    }
    let report = client
        .call(&Check {
            repair: false,
            name: Some(name),
        })
        .map_err(refused)?;
    match report.drift.first() {
        None => Ok(()),
        Some(d) => Err(err(
            DRIFTED,
            "the container's network is not what nsagent made",
            d.problem.as_str(),
        )),
    }
}

fn gc(conf: &NetConf) -> Result<(), CniError> {
    let valid: std::collections::HashSet<String> = conf
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| attachment_name(&conf.name, &a.container_id, &a.ifname))
        .collect();
    let mut client = connect(conf)?;
    let mut selector = Labels::new();
    selector.insert(LABEL_NETWORK.into(), conf.name.clone());
    let list = client
        .call(&List {
            selector: Some(selector),
        })
        .map_err(refused)?;
    for ns in list.namespaces {
        if ns.attached && !valid.contains(&ns.name) {
            match client.call(&Detach { name: ns.name }) {
                Ok(_) => {}
                Err(crate::cli::CliError::Agent(a)) if a.code == "not_found" => {}
                Err(e) => return Err(refused(e)),
            }
        }
    }
    Ok(())
}

fn status(conf: &NetConf) -> Result<(), CniError> {
    let unavailable = |e: crate::cli::CliError| {
        err(
            NOT_AVAILABLE,
            "the nsagent agent is not available",
            e.to_string(),
        )
    };
    let socket = conf
        .socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_SOCKET));
    Client::connect(&socket)
        .and_then(|mut c| c.call(&Ping {}))
        .map(|_| ())
        .map_err(unavailable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_valid_and_distinct() {
        let a = attachment_name("net", &"f".repeat(64), "eth0");
        assert_eq!(a, attachment_name("net", &"f".repeat(64), "eth0"));
        assert!(crate::model::validate_name(&a).is_ok());
        assert_ne!(a, attachment_name("net", &"f".repeat(64), "eth1"));
        assert_ne!(a, attachment_name("net2", &"f".repeat(64), "eth0"));
    }

    #[test]
    fn port_mappings_become_forwards() {
        let p: PortMapping = serde_json::from_value(
            json!({"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":""}),
        )
        .unwrap();
        let f = port(&p).unwrap();
        assert_eq!((f.host_port, f.port, f.host_addr), (8080, 80, None));
        let p: PortMapping =
            serde_json::from_value(json!({"hostPort":1,"containerPort":2,"protocol":"sctp"}))
                .unwrap();
        assert_eq!(port(&p).unwrap_err().code, INVALID_CONFIG);
    }
}
