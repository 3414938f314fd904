//! nsagent's Prometheus metrics. The names are a contract (docs/metrics.md). This crate only
//! holds and encodes them: it knows nothing of namespaces or firewalls, and the agent only ever
//! writes to it (metrics observe, they never steer).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from 50 µs to 10 s: a lone netlink step is tens of µs, a create ~1 ms, a
/// batch of hundreds of creates a few hundred ms, a stalled kernel seconds.
const SECONDS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
/// Commands per executor batch.
const BATCH: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("prometheus: {0}")]
    Prometheus(#[from] prometheus::Error),
}

pub struct Metrics {
    registry: Registry,
    pub commands_total: IntCounterVec,
    pub command_duration_seconds: HistogramVec,
    pub queue_depth: IntGauge,
    pub queue_capacity: IntGauge,
    pub batch_size: Histogram,
    pub netlink_requests_total: IntCounterVec,
    pub netlink_errors_total: IntCounterVec,
    pub nft_transactions_total: IntCounterVec,
    pub nft_transaction_duration_seconds: Histogram,
    pub nft_elements: IntGauge,
    pub nft_rules: IntGauge,
    pub namespaces: IntGauge,
    pub pool_addresses: IntGauge,
    pub pool_addresses_free: IntGauge,
    /// Namespace subnets in each pool, by family (`ipv4`, `ipv6`).
    pub pool_subnets: IntGaugeVec,
    pub pool_subnets_free: IntGaugeVec,
    pub socket_connections: IntGauge,
    pub socket_rejected_total: IntCounterVec,
    pub recovery_total: IntCounterVec,
    pub warm_ready: IntGauge,
    pub warm_claims_total: IntCounterVec,
    pub warm_claims_direct_total: IntCounter,
    pub warm_refill_duration_seconds: Histogram,
    pub watchers: IntGauge,
    pub drift_total: IntCounterVec,
    pub check_duration_seconds: Histogram,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("nsagent")
}

fn hopts(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help)
        .namespace("nsagent")
        .buckets(buckets.to_vec())
}

impl Metrics {
    pub fn new(version: &str, commit: &str) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let m = Metrics {
            commands_total: IntCounterVec::new(
                opts(
                    "commands_total",
                    "Commands answered, by op and outcome (ok or the error code).",
                ),
                &["op", "outcome"],
            )?,
            command_duration_seconds: HistogramVec::new(
                hopts(
                    "command_duration_seconds",
                    "From a request's arrival to its response being written.",
                    SECONDS,
                ),
                &["op"],
            )?,
            queue_depth: IntGauge::with_opts(opts(
                "queue_depth",
                "Commands waiting in the queue.",
            ))?,
            queue_capacity: IntGauge::with_opts(opts(
                "queue_capacity",
                "Capacity of the command queue.",
            ))?,
            batch_size: Histogram::with_opts(hopts(
                "batch_size",
                "Commands per executor batch.",
                BATCH,
            ))?,
            netlink_requests_total: IntCounterVec::new(
                opts("netlink_requests_total", "Netlink requests sent, by kind."),
                &["kind"],
            )?,
            netlink_errors_total: IntCounterVec::new(
                opts(
                    "netlink_errors_total",
                    "Netlink requests the kernel refused, by errno.",
                ),
                &["errno"],
            )?,
            nft_transactions_total: IntCounterVec::new(
                opts(
                    "nft_transactions_total",
                    "nft transactions, by outcome (ok, partial, failed).",
                ),
                &["outcome"],
            )?,
            nft_transaction_duration_seconds: Histogram::with_opts(hopts(
                "nft_transaction_duration_seconds",
                "Duration of one nft transaction, retries included.",
                SECONDS,
            ))?,
            nft_elements: IntGauge::with_opts(opts(
                "nft_elements",
                "Live set elements in the agent's table.",
            ))?,
            nft_rules: IntGauge::with_opts(opts("nft_rules", "Rules in the agent's table."))?,
            namespaces: IntGauge::with_opts(opts("namespaces", "Live managed namespaces."))?,
            pool_addresses: IntGauge::with_opts(opts(
                "pool_addresses",
                "Addresses in the pool.",
            ))?,
            pool_addresses_free: IntGauge::with_opts(opts(
                "pool_addresses_free",
                "Addresses in the pool not used by a live or dying namespace.",
            ))?,
            pool_subnets: IntGaugeVec::new(
                opts("pool_subnets", "Namespace subnets in the pool, by family."),
                &["family"],
            )?,
            pool_subnets_free: IntGaugeVec::new(
                opts(
                    "pool_subnets_free",
                    "Namespace subnets in the pool not used by a live or dying namespace, by family.",
                ),
                &["family"],
            )?,
            socket_connections: IntGauge::with_opts(opts(
                "socket_connections",
                "Open client connections.",
            ))?,
            socket_rejected_total: IntCounterVec::new(
                opts(
                    "socket_rejected_total",
                    "Connections or lines refused, by reason.",
                ),
                &["reason"],
            )?,
            recovery_total: IntCounterVec::new(
                opts(
                    "recovery_total",
                    "Kernel state reconciled: adopted (whole at start-up), removed (half-built at start-up), external (deleted by someone else, rest cleaned up).",
                ),
                &["action"],
            )?,
            warm_ready: IntGauge::with_opts(opts(
                "warm_ready",
                "Warm namespaces built and not claimed yet.",
            ))?,
            warm_claims_total: IntCounterVec::new(
                opts(
                    "warm_claims_total",
                    "Creates with a warm pool configured, by result: hit (served by a warm namespace), miss (built cold: the pool was empty or the create asked for its own address plan or interfaces).",
                ),
                &["result"],
            )?,
            warm_claims_direct_total: IntCounter::with_opts(opts(
                "warm_claims_direct_total",
                "Creates a warm namespace serves, run by the socket task that read them (alone, with the executor idle) instead of through the queue.",
            ))?,
            warm_refill_duration_seconds: Histogram::with_opts(hopts(
                "warm_refill_duration_seconds",
                "Duration of one refill batch of the warm pool (client commands wait for at most one).",
                SECONDS,
            ))?,
            watchers: IntGauge::with_opts(opts(
                "watchers",
                "Connections receiving the watch stream.",
            ))?,
            drift_total: IntCounterVec::new(
                opts(
                    "drift_total",
                    "Differences a check found between the kernel and the agent's view, by problem (docs/protocol.md#check).",
                ),
                &["problem"],
            )?,
            check_duration_seconds: Histogram::with_opts(hopts(
                "check_duration_seconds",
                "Duration of a whole check, from its start to its report (it runs in slices between commands).",
                SECONDS,
            ))?,
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.commands_total.clone()))?;
        r.register(Box::new(m.command_duration_seconds.clone()))?;
        r.register(Box::new(m.queue_depth.clone()))?;
        r.register(Box::new(m.queue_capacity.clone()))?;
        r.register(Box::new(m.batch_size.clone()))?;
        r.register(Box::new(m.netlink_requests_total.clone()))?;
        r.register(Box::new(m.netlink_errors_total.clone()))?;
        r.register(Box::new(m.nft_transactions_total.clone()))?;
        r.register(Box::new(m.nft_transaction_duration_seconds.clone()))?;
        r.register(Box::new(m.nft_elements.clone()))?;
        r.register(Box::new(m.nft_rules.clone()))?;
        r.register(Box::new(m.namespaces.clone()))?;
        r.register(Box::new(m.pool_addresses.clone()))?;
        r.register(Box::new(m.pool_addresses_free.clone()))?;
        r.register(Box::new(m.pool_subnets.clone()))?;
        r.register(Box::new(m.pool_subnets_free.clone()))?;
        r.register(Box::new(m.socket_connections.clone()))?;
        r.register(Box::new(m.socket_rejected_total.clone()))?;
        r.register(Box::new(m.recovery_total.clone()))?;
        r.register(Box::new(m.warm_ready.clone()))?;
        r.register(Box::new(m.warm_claims_total.clone()))?;
        r.register(Box::new(m.warm_claims_direct_total.clone()))?;
        r.register(Box::new(m.warm_refill_duration_seconds.clone()))?;
        r.register(Box::new(m.watchers.clone()))?;
        r.register(Box::new(m.drift_total.clone()))?;
        r.register(Box::new(m.check_duration_seconds.clone()))?;
        let build = IntGaugeVec::new(
            opts("build_info", "Build information; always 1."),
            &["version", "commit"],
        )?;
        build.with_label_values(&[version, commit]).set(1);
        r.register(Box::new(build))?;
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(m)
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> Result<Vec<u8>, MetricsError> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_contract_names() {
        let m = Metrics::new("1.2.3", "abc").unwrap();
        m.commands_total.with_label_values(&["create", "ok"]).inc();
        m.command_duration_seconds
            .with_label_values(&["create"])
            .observe(0.001);
        let text = String::from_utf8(m.encode().unwrap()).unwrap();
        for name in [
            "nsagent_commands_total{op=\"create\",outcome=\"ok\"} 1",
            "nsagent_command_duration_seconds_bucket{op=\"create\",le=\"0.00005\"} 0",
            "nsagent_queue_depth 0",
            "nsagent_batch_size_bucket",
            "nsagent_build_info{commit=\"abc\",version=\"1.2.3\"} 1",
            "process_resident_memory_bytes",
        ] {
            assert!(text.contains(name), "missing {name}");
        }
        // Reading does not reset.
        let again = String::from_utf8(m.encode().unwrap()).unwrap();
        assert!(again.contains("nsagent_commands_total{op=\"create\",outcome=\"ok\"} 1"));
    }
}
