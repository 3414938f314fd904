//! Human-readable output: tables and `label: value` blocks.

use crate::cmd::Status;
use crate::model::Namespace;

/// A namespace's columns in `list`.
pub const LIST_HEADER: [&str; 10] = [
    "NAME", "SUBNET", "ADDRESS", "ADDRESS6", "GATEWAY", "HOST_IF", "NS_IF", "NAT", "MTU", "PORTS",
];

pub fn list_row(ns: &Namespace) -> Vec<String> {
    vec![
        ns.name.clone(),
        ns.subnet.to_string(),
        ns.address.to_string(),
        optional(ns.v6.map(|v| v.address6)),
        ns.gateway.to_string(),
        ns.host_ifname.clone(),
        ns.ns_ifname.clone(),
        yes_no(ns.conf.nat),
        optional(ns.mtu),
        ports(ns),
    ]
}

pub fn namespace_details(ns: &Namespace) -> String {
    key_values(&[
        ("name", ns.name.clone()),
        ("netns path", ns.netns_path.clone()),
        ("subnet", ns.subnet.to_string()),
        ("address", ns.address.to_string()),
        ("gateway", ns.gateway.to_string()),
        ("subnet6", optional(ns.v6.map(|v| v.subnet6))),
        ("address6", optional(ns.v6.map(|v| v.address6))),
        ("gateway6", optional(ns.v6.map(|v| v.gateway6))),
        ("host interface", ns.host_ifname.clone()),
        ("ns interface", ns.ns_ifname.clone()),
        ("nat", yes_no(ns.conf.nat)),
        ("mtu", optional(ns.mtu)),
        ("dns", dns(ns)),
        ("bandwidth", bandwidth(ns)),
        ("ports", ports(ns)),
        ("egress address", optional(ns.conf.egress_addr)),
        ("labels", labels(ns)),
    ])
}

/// `k=v,k2=v2`, or `-`.
fn labels(ns: &Namespace) -> String {
    if ns.conf.labels.is_empty() {
        return "-".into();
    }
    let pairs: Vec<String> = ns
        .conf
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.join(",")
}

pub fn status_details(st: &Status) -> String {
    let pool = &st.pool;
    key_values(&[
        ("version", st.version.clone()),
        ("namespaces", st.namespaces.to_string()),
        ("pending deletions", st.pending_deletions.to_string()),
        (
            "warm",
            match st.warm.target {
                0 => "off".to_string(),
                t => format!("{} ready of {t}", st.warm.ready),
            },
        ),
        (
            "pool",
            format!(
                "{} (/{} subnets: {} free of {})",
                pool.cidr, pool.prefix_len, pool.free, pool.size
            ),
        ),
        (
            "pool6",
            st.pool6.as_ref().map_or_else(
                || "none (IPv4 only)".to_string(),
                |p| {
                    format!(
                        "{} (/{} subnets: {} free of {})",
                        p.cidr, p.prefix_len, p.free, p.size
                    )
                },
            ),
        ),
        (
            "uplink",
            st.uplink
                .clone()
                .unwrap_or_else(|| "none (any non-namespace interface)".into()),
        ),
        ("table", format!("inet {}", st.table)),
        ("netns dir", st.netns_dir.clone()),
        ("uptime", duration(st.uptime_seconds)),
    ])
}

/// `9.9.9.9, 1.1.1.1 (search a.example; options ndots:2)`, or `-`.
fn dns(ns: &Namespace) -> String {
    let Some(d) = &ns.conf.dns else {
        return "-".into();
    };
    let servers: Vec<String> = d.nameservers.iter().map(|a| a.to_string()).collect();
    let mut s = servers.join(", ");
    let mut extra = vec![];
    if !d.search.is_empty() {
        extra.push(format!("search {}", d.search.join(" ")));
    }
    if !d.options.is_empty() {
        extra.push(format!("options {}", d.options.join(" ")));
    }
    if !extra.is_empty() {
        s.push_str(&format!(" ({})", extra.join("; ")));
    }
    s
}

/// `tcp/*:8080->80, udp/198.18.0.1:53->53`, or `-`.
pub fn ports(ns: &Namespace) -> String {
    if ns.conf.ports.is_empty() {
        return "-".into();
    }
    let all: Vec<String> = ns
        .conf
        .ports
        .iter()
        .map(|p| format!("{}->{}", p.listener(), p.port))
        .collect();
    all.join(", ")
}

/// `in 10mbit, out 1mbit`, or `-`.
fn bandwidth(ns: &Namespace) -> String {
    let Some(b) = ns.conf.bandwidth else {
        return "-".into();
    };
    let mut parts = vec![];
    if let Some(i) = b.ingress_bps {
        parts.push(format!("in {}", rate(i)));
    }
    if let Some(e) = b.egress_bps {
        parts.push(format!("out {}", rate(e)));
    }
    parts.join(", ")
}

/// Bits per second the way tc writes them: `10mbit`, `1500kbit`, `8000bit`.
pub fn rate(bps: u64) -> String {
    match bps {
        b if b % 1_000_000_000 == 0 => format!("{}gbit", b / 1_000_000_000),
        b if b % 1_000_000 == 0 => format!("{}mbit", b / 1_000_000),
        b if b % 1_000 == 0 => format!("{}kbit", b / 1_000),
        b => format!("{b}bit"),
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn optional<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// `label:  value` lines, values aligned.
pub fn key_values(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{:<width$}  {v}\n", format!("{k}:")))
        .collect()
}

/// Columns separated by two spaces, each as wide as its widest cell (the last not padded).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.push('\n');
        s
    };
    let mut s = line(header.to_vec());
    for row in rows {
        s.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    s
}

pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m{s:02}s"),
        _ => format!("{d}d{h:02}h{m:02}m{s:02}s"),
    }
}

/// One event line for people: `TIME EVENT NAME SUBNET ADDRESS [labels]`; an overflow says
/// what it means.
pub fn event_row(line: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
        return line.to_string();
    };
    let event = v["event"].as_str().unwrap_or("?");
    if event == "overflow" {
        return "overflow: this watcher fell too far behind and is cut off\n".into();
    }
    let ns = &v["namespace"];
    let text = |k: &str| ns[k].as_str().unwrap_or("-").to_string();
    let labels = ns["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into());
    format!(
        "{} {event} {} {} {} {labels}\n",
        v["time"].as_str().unwrap_or("-"),
        text("name"),
        text("subnet"),
        text("address"),
    )
}

/// A check's report: one row per problem, then a one-line summary.
pub fn check_report(r: &crate::cmd::CheckReport) -> String {
    let mut text = String::new();
    if !r.drift.is_empty() {
        let rows: Vec<Vec<String>> = r
            .drift
            .iter()
            .map(|d| {
                vec![
                    d.name.clone(),
                    d.problem.as_str().to_string(),
                    yes_no(d.repaired),
                ]
            })
            .collect();
        text = table(&["NAME", "PROBLEM", "REPAIRED"], &rows);
    }
    let repaired = r.drift.iter().filter(|d| d.repaired).count();
    text.push_str(&match (r.drift.len(), repaired) {
        (0, _) => format!("{} namespaces checked: clean\n", r.checked),
        (n, 0) => format!("{} namespaces checked: {n} problems\n", r.checked),
        (n, k) => format!(
            "{} namespaces checked: {n} problems, {k} repaired\n",
            r.checked
        ),
    });
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["NAME", "NAT"],
            &[
                vec!["a".into(), "yes".into()],
                vec!["longer".into(), "no".into()],
            ],
        );
        assert_eq!(t, "NAME    NAT\na       yes\nlonger  no\n");
        assert_eq!(
            key_values(&[("name", "a".into()), ("netns path", "/x".into())]),
            "name:        a\nnetns path:  /x\n"
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(65), "1m05s");
        assert_eq!(duration(3 * 3600 + 5), "3h00m05s");
        assert_eq!(duration(86400 + 61), "1d00h01m01s");
    }
}
