//! Churn benchmark. `churn` (the orchestrator) runs every method in its own fresh sandbox
//! (`unshare --mount --net`, tmpfs on /run, an uplink veth to an "upstream" namespace), one after
//! the other, and prints one table with the ratios, plus a JSON file for tracking:
//!
//! - nsagent: N creates through the socket by C pipelining clients, then N deletes (until the
//!   kernel has removed the links); an open-loop run at a fixed rate; lone creates on an idle agent;
//! - baselines: the shell recipe (one `ip`/`nft`/`sysctl` process per step) and the `ip -batch`
//!   path (peer born in the netns, one `nft -f`);
//! - flatness: create rate per bucket while up to F namespaces stay alive, nsagent vs. the naive
//!   floor (one namespace at a time, raw netlink, kernel defaults) in the same buckets.
//!
//! Every namespace of every method passes the same check: a TCP connection from inside it to a
//! listener upstream, which must see the uplink's address (masquerade).

mod check;
mod methods;
mod plot;
mod sandbox;

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use std::io::Write as _;
use std::process::{Command, Stdio};

#[derive(Parser, Debug, Clone)]
#[command(about = "nsagent churn benchmark (run as root)")]
pub struct Opts {
    /// Namespaces per method.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Concurrent pipelining clients.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Requests in flight per client.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Open-loop offered load (creates/s) and how many creates it sends.
    #[arg(long, default_value_t = 300)]
    pub rate: u32,
    #[arg(long, default_value_t = 600)]
    pub rate_n: usize,
    /// Lone creates on an idle agent.
    #[arg(long, default_value_t = 20)]
    pub lone: usize,
    /// Namespaces kept alive in the flatness run (0: skip it) and its bucket size.
    #[arg(long, default_value_t = 5000)]
    pub flat: usize,
    #[arg(long, default_value_t = 500)]
    pub bucket: usize,
    /// Flatness runs (floor and nsagent alternating); the report is the median of each figure.
    /// In the warm method: rounds of the cold burst and of the warm burst with its refill (rates
    /// are the rounds' medians, latencies pooled).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Comma-separated methods to run.
    #[arg(long, default_value = "nsagent,ipbatch,shell,flat")]
    pub methods: String,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench/churn.json")]
    pub json: String,
    /// The agent binary (default: next to this one).
    #[arg(long)]
    pub agent_bin: Option<String>,
    /// Seconds to let the kernel settle between methods.
    #[arg(long, default_value_t = 20)]
    pub settle: u64,
    /// Run the agent with this IPv6 pool (dual-stack namespaces) in the nsagent-based methods;
    /// `none`: IPv4 only.
    #[arg(long, default_value = "none")]
    pub pool6: String,
    /// The agent's IPv4 pool in the nsagent-based methods (a /13 for `--flat 30000`).
    #[arg(long, default_value = "100.64.0.0/16")]
    pub pool: String,
    /// Internal: run one method inside a sandbox.
    #[arg(long, hide = true)]
    pub phase: Option<String>,
}

fn main() {
    let opts = Opts::parse();
    let r = match opts.phase.clone() {
        Some(p) => run_phase(&p, &opts),
        None => orchestrate(opts),
    };
    if let Err(e) = r {
        eprintln!("churn: {e:#}");
        std::process::exit(1);
    }
}

fn run_phase(phase: &str, opts: &Opts) -> anyhow::Result<()> {
    sandbox::setup()?;
    let result = match phase {
        "nsagent" => methods::nsagent(opts)?,
        "ipbatch" => methods::ipbatch(opts)?,
        "shell" => methods::shell(opts)?,
        "flat-nsagent" => methods::flat_nsagent(opts)?,
        "flat-floor" => methods::flat_floor(opts)?,
        "features" => methods::features(opts)?,
        "dual" => methods::dual(opts)?,
        "warm" => methods::warm(opts)?,
        other => bail!("unknown phase {other}"),
    };
    println!("RESULT {}", serde_json::to_string(&result)?);
    Ok(())
}

fn spawn_phase(phase: &str, opts: &Opts) -> anyhow::Result<Value> {
    let me = std::env::current_exe()?;
    let agent = opts
        .agent_bin
        .clone()
        .unwrap_or_else(|| me.with_file_name("nsagent").to_string_lossy().into_owned());
    eprintln!("== {phase}");
    let out = Command::new("unshare")
        .args(["--mount", "--net", "--propagation", "private", "--"])
        .arg(&me)
        .args(["--phase", phase, "--agent-bin", &agent])
        .args([
            "--n",
            &opts.n.to_string(),
            "--clients",
            &opts.clients.to_string(),
        ])
        .args([
            "--window",
            &opts.window.to_string(),
            "--rate",
            &opts.rate.to_string(),
        ])
        .args([
            "--rate-n",
            &opts.rate_n.to_string(),
            "--lone",
            &opts.lone.to_string(),
        ])
        .args([
            "--flat",
            &opts.flat.to_string(),
            "--bucket",
            &opts.bucket.to_string(),
        ])
        .args(["--pool6", &opts.pool6, "--pool", &opts.pool])
        // The flatness phases run once each (alternated above); the warm phase does its rounds.
        .args(["--runs", &opts.runs.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .context("spawn phase")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("phase {phase} failed: {stdout}");
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .context("phase printed no result")?;
    Ok(serde_json::from_str(line)?)
}

fn orchestrate(opts: Opts) -> anyhow::Result<()> {
    let methods: Vec<&str> = opts.methods.split(',').map(str::trim).collect();
    let mut results = serde_json::Map::new();
    let mut first = true;
    let mut run = |name: &str,
                   phase: &str,
                   results: &mut serde_json::Map<String, Value>|
     -> anyhow::Result<()> {
        if !first {
            std::thread::sleep(std::time::Duration::from_secs(opts.settle));
            // The kernel may still be freeing the last method's namespaces (minutes after a
            // sandbox with thousands ends): start on an idle machine.
            sandbox::wait_idle(std::time::Duration::from_secs(600));
        }
        first = false;
        let result = spawn_phase(phase, &opts)?;
        // Each phase's result is also appended as it ends: a 30,000-namespace run takes an hour
        // a phase, and one that is stopped early should not lose what it measured.
        let line = json!({"method": name, "result": &result});
        let partial = format!("{}.phases.jsonl", opts.json);
        if let Some(dir) = std::path::Path::new(&partial).parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&partial)?;
        writeln!(file, "{line}")?;
        results.insert(name.to_string(), result);
        Ok(())
    };
    for m in &methods {
        match *m {
            "nsagent" => run("nsagent", "nsagent", &mut results)?,
            "ipbatch" => run("ipbatch", "ipbatch", &mut results)?,
            "shell" => run("shell", "shell", &mut results)?,
            "flat" if opts.flat > 0 => {
                let (mut floor, mut agent) = (vec![], vec![]);
                for _ in 0..opts.runs.max(1) {
                    run("flat_floor", "flat-floor", &mut results)?;
                    floor.extend(results.remove("flat_floor"));
                    run("flat_nsagent", "flat-nsagent", &mut results)?;
                    agent.extend(results.remove("flat_nsagent"));
                }
                results.insert("flat_floor".into(), median_of(floor));
                results.insert("flat_nsagent".into(), median_of(agent));
            }
            "flat" => {}
            // The agent alone at scale (e.g. `--flat 10000` for its memory at 10,000).
            "flat-nsagent" => run("flat_nsagent", "flat-nsagent", &mut results)?,
            // Creates with 2 published ports and a rate limit vs plain ones, one agent.
            "features" => run("features", "features", &mut results)?,
            // Dual-stack creates vs IPv4-only ones, one agent with an IPv6 pool.
            "dual" => run("dual", "dual", &mut results)?,
            // The warm pool (`--warm n`) vs cold creates, one agent after the other.
            "warm" => run("warm", "warm", &mut results)?,
            other => bail!("unknown method {other}"),
        }
    }
    let report = json!({
        "params": {"n": opts.n, "clients": opts.clients, "window": opts.window, "rate": opts.rate,
                   "flat": opts.flat, "bucket": opts.bucket, "runs": opts.runs},
        "results": results,
    });
    print_table(&report);
    if let Some(dir) = std::path::Path::new(&opts.json).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&opts.json, serde_json::to_vec_pretty(&report)?)?;
    println!("\nJSON: {}", opts.json);
    if !report["results"]["flat_nsagent"].is_null() && !report["results"]["flat_floor"].is_null() {
        let svg = std::path::Path::new(&opts.json).with_extension("svg");
        plot::flatness_svg(&report, &svg)?;
        println!("plot: {}", svg.display());
    }
    Ok(())
}

/// The middle value (NaN of none).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The median of several runs of one method: every number (bucket by bucket for arrays of
/// numbers) is the median over the runs; the runs themselves are kept under `runs`.
fn median_of(runs: Vec<Value>) -> Value {
    fn merge(vals: &[&Value]) -> Value {
        match vals.first() {
            Some(Value::Number(_)) => {
                json!(median(vals.iter().filter_map(|v| v.as_f64()).collect()))
            }
            Some(Value::Array(a)) if a.iter().all(Value::is_number) => {
                let len = vals
                    .iter()
                    .filter_map(|v| v.as_array())
                    .map(Vec::len)
                    .min()
                    .unwrap_or(0);
                (0..len)
                    .map(|i| merge(&vals.iter().map(|v| &v[i]).collect::<Vec<_>>()))
                    .collect()
            }
            Some(Value::Object(o)) => o
                .keys()
                .map(|k| {
                    (
                        k.clone(),
                        merge(&vals.iter().map(|v| &v[k]).collect::<Vec<_>>()),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into(),
            // Strings (the NAT check's "ok/sampled") and lists of objects: the first run's,
            // every run's is under `runs`.
            Some(v) => (*v).clone(),
            None => Value::Null,
        }
    }
    let mut out = merge(&runs.iter().collect::<Vec<_>>());
    if let Some(o) = out.as_object_mut() {
        o.insert("runs".into(), Value::Array(runs));
    }
    out
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn print_table(report: &Value) {
    let r = &report["results"];
    println!(
        "\n{:<10} {:>6} {:>10} {:>12} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>7}",
        "method",
        "N",
        "creates/s",
        "deletes/s*",
        "µs/create",
        "p50 ms",
        "p99 ms",
        "max ms",
        "user s",
        "sys s",
        "RSS MiB",
        "check"
    );
    for m in ["nsagent", "ipbatch", "shell"] {
        let x = &r[m];
        if x.is_null() {
            continue;
        }
        println!(
            "{:<10} {:>6} {:>10.0} {:>12.0} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>8.2} {:>8.2} {:>8.1} {:>7}",
            m,
            x["n"],
            f(&x["creates_per_s"]),
            f(&x["deletes_per_s"]),
            1e6 / f(&x["creates_per_s"]),
            f(&x["latency_ms"]["p50"]),
            f(&x["latency_ms"]["p99"]),
            f(&x["latency_ms"]["max"]),
            f(&x["cpu"]["user_s"]),
            f(&x["cpu"]["sys_s"]),
            f(&x["peak_rss_mib"]),
            x["check"].as_str().unwrap_or("-"),
        );
    }
    println!("* deletes/s: until the kernel has removed every link of the method.");
    let x = &r["dual"];
    if !x.is_null() {
        println!(
            "dual: IPv4-only {:.0} creates/s, dual stack {:.0} creates/s = {:.2}x (IPv4-only before and after: {:.0}, {:.0}); rules {}",
            f(&x["plain_creates_per_s"]),
            f(&x["featured_creates_per_s"]),
            f(&x["ratio"]),
            f(&x["plain_runs"][0]),
            f(&x["plain_runs"][1]),
            x["featured_rules"],
        );
    }
    let x = &r["features"];
    if !x.is_null() {
        println!(
            "features: plain {:.0} creates/s ({} rules), with 2 published ports + a rate limit {:.0} creates/s ({} rules) = {:.2}x plain (plain before and after: {:.0}, {:.0})",
            f(&x["plain_creates_per_s"]),
            x["plain_rules"],
            f(&x["featured_creates_per_s"]),
            x["featured_rules"],
            f(&x["ratio"]),
            f(&x["plain_runs"][0]),
            f(&x["plain_runs"][1]),
        );
    }
    let a = &r["nsagent"];
    for b in ["ipbatch", "shell"] {
        if !a.is_null() && !r[b].is_null() {
            println!(
                "ratio nsagent/{b}: setup {:.1}x, teardown {:.1}x",
                f(&a["creates_per_s"]) / f(&r[b]["creates_per_s"]),
                f(&a["deletes_per_s"]) / f(&r[b]["deletes_per_s"])
            );
        }
    }
    if !a.is_null() {
        println!(
            "nsagent acked deletes/s: {:.0}; open loop @{}/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; lone create: p50 {:.2} ms, p99 {:.2} ms",
            f(&a["deletes_acked_per_s"]),
            a["open_loop"]["rate"],
            f(&a["open_loop"]["latency_ms"]["p50"]),
            f(&a["open_loop"]["latency_ms"]["p99"]),
            f(&a["open_loop"]["latency_ms"]["max"]),
            f(&a["lone"]["latency_ms"]["p50"]),
            f(&a["lone"]["latency_ms"]["p99"]),
        );
        println!(
            "nsagent while scraped every 100 ms ({} scrapes): {:.0} creates/s = {:.2}x the unscraped run",
            a["scraped"]["scrapes"],
            f(&a["scraped"]["creates_per_s"]),
            f(&a["scraped"]["creates_per_s"]) / f(&a["creates_per_s"])
        );
        println!(
            "nsagent CPU during creates: user {:.2} s, sys {:.2} s (user/sys = {:.1}%); batch sizes: {}",
            f(&a["cpu"]["user_s"]),
            f(&a["cpu"]["sys_s"]),
            100.0 * f(&a["cpu"]["user_s"]) / f(&a["cpu"]["sys_s"]),
            a["batch_sizes"]
        );
    }
    let (fa, ff) = (&r["flat_nsagent"], &r["flat_floor"]);
    for (name, x) in [("flat-nsagent", fa), ("flat-floor", ff)] {
        if x.is_null() {
            continue;
        }
        println!(
            "{name}: {:.0} created at {:.0}/s, all deleted at {:.0}/s (until freed); NAT check 1 in 100: {}; kernel per namespace: MemAvailable -{:.0} KiB, slab +{:.0} KiB",
            f(&x["n"]),
            f(&x["creates_per_s"]),
            f(&x["deletes_per_s"]),
            x["check"].as_str().unwrap_or("-"),
            f(&x["kernel_mem"]["available_drop_kib_per_ns"]),
            f(&x["kernel_mem"]["slab_kib_per_ns"]),
        );
    }
    if !fa.is_null() && !ff.is_null() {
        let size = report["params"]["bucket"].as_u64().unwrap_or(500) as usize;
        let n = report["params"]["flat"].as_u64().unwrap_or(0) as usize;
        println!(
            "\nflatness (median of {} runs; ns/s; deletes run from the full host down)",
            report["params"]["runs"]
        );
        println!(
            "{:>13} {:>9} {:>9} {:>7} {:>13} {:>9} {:>9}",
            "alive", "creates", "floor", "ratio", "alive", "deletes", "floor"
        );
        let col = |x: &Value, k: &str, i: usize| f(&x[k][i]);
        let rows = fa["buckets"].as_array().map_or(0, Vec::len);
        for i in 0..rows {
            let down = n.saturating_sub(i * size);
            println!(
                "{:>6}-{:<6} {:>9.0} {:>9.0} {:>7.2} {:>6}-{:<6} {:>9.0} {:>9.0}",
                i * size,
                (i + 1) * size,
                col(fa, "buckets", i),
                col(ff, "buckets", i),
                col(fa, "buckets", i) / col(ff, "buckets", i),
                down,
                down.saturating_sub(size),
                col(fa, "delete_buckets", i),
                col(ff, "delete_buckets", i),
            );
        }
        let last = rows.saturating_sub(1);
        println!(
            "flatness, last bucket / first: creates nsagent {:.2} (floor {:.2}); deletes, full host / last {} alive: nsagent {:.2} (floor {:.2})",
            col(fa, "buckets", last) / col(fa, "buckets", 0),
            col(ff, "buckets", last) / col(ff, "buckets", 0),
            size,
            col(fa, "delete_buckets", 0) / col(fa, "delete_buckets", last),
            col(ff, "delete_buckets", 0) / col(ff, "delete_buckets", last),
        );
        println!(
            "overall: nsagent {:.0} ns/s, floor {:.0} ns/s; nsagent peak RSS {:.1} MiB with {:.0} alive",
            f(&fa["creates_per_s"]),
            f(&ff["creates_per_s"]),
            f(&fa["peak_rss_mib"]),
            f(&fa["n"])
        );
        println!("slab caches that grew most (nsagent run, KiB per namespace):");
        for c in fa["kernel_mem"]["slab_top"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            println!(
                "  {:<28} {:>7.1}",
                c["cache"].as_str().unwrap_or("?"),
                f(&c["kib_per_ns"])
            );
        }
    }
}
