//! Inside a phase: the sandbox's network (the test harness's layout) and small kernel helpers.

use anyhow::{bail, Context};
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

pub const UPLINK_ADDR: &str = "198.18.0.1";
pub const UPSTREAM_ADDR: &str = "198.18.0.2";

const SETUP: &str = include_str!("../../scripts/sandbox-net.sh");

pub fn setup() -> anyhow::Result<()> {
    sh(SETUP)
}

pub fn sh(script: &str) -> anyhow::Result<()> {
    let st = Command::new("sh")
        .args(["-c", script])
        .status()
        .context("sh")?;
    if !st.success() {
        bail!("failed: {script}");
    }
    Ok(())
}

/// Runs one process (the baselines' unit of work); fails on a non-zero exit.
pub fn run(argv: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .with_context(|| argv[0].to_string())?;
    if !out.status.success() {
        bail!("{argv:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Runs one process with `input` on stdin.
pub fn run_stdin(argv: &[&str], input: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| argv[0].to_string())?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    let st = child.wait()?;
    if !st.success() {
        bail!("{argv:?} failed");
    }
    Ok(())
}

/// Number of links in this (the sandbox's host) namespace: /proc/net is the reading thread's
/// network namespace, and /proc/net/dev has one line per link after two header lines.
pub fn link_count() -> anyhow::Result<usize> {
    let dev = std::fs::read_to_string("/proc/net/dev")?;
    Ok(dev.lines().count().saturating_sub(2))
}

/// Waits until at most `target` links remain (the kernel frees them in the background).
pub fn wait_links(target: usize, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if link_count()? <= target {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("links not freed within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// (user, sys) CPU seconds of a process.
pub fn cpu(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(") ").map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / hz;
    (get(11), get(12))
}

/// Own (user, sys) CPU seconds, children included.
pub fn self_cpu() -> (f64, f64) {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut ch: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe {
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ch);
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (
        t(ru.ru_utime) + t(ch.ru_utime),
        t(ru.ru_stime) + t(ch.ru_stime),
    )
}

/// Peak RSS (VmHWM) of a process in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

pub fn percentiles(mut v: Vec<f64>) -> serde_json::Value {
    if v.is_empty() {
        return serde_json::json!(null);
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    serde_json::json!({"p50": p(0.5), "p90": p(0.9), "p99": p(0.99), "max": v[v.len() - 1], "n": v.len()})
}

/// The kernel's memory as the flatness run reads it: MemAvailable and each slab cache's
/// footprint (its slabs × pages per slab), in KiB.
pub struct KernelMem {
    available_kib: f64,
    slab_kib: HashMap<String, f64>,
}

pub fn kernel_mem() -> anyhow::Result<KernelMem> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let available_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("MemAvailable")?;
    // SAFETY: sysconf has no preconditions.
    let page_kib = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64 / 1024.0;
    let mut slab_kib = HashMap::new();
    // "name active num objsize perslab pagesperslab : tunables … : slabdata active_slabs num_slabs …"
    for l in std::fs::read_to_string("/proc/slabinfo")?.lines().skip(2) {
        let f: Vec<&str> = l.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
        if let (Some(name), Some(pages), Some(slabs)) = (f.first(), num(5), num(14)) {
            slab_kib.insert(name.to_string(), slabs * pages * page_kib);
        }
    }
    Ok(KernelMem {
        available_kib,
        slab_kib,
    })
}

/// What `n` namespaces cost the kernel between two readings: MemAvailable's drop and the slab
/// caches that grew most, per namespace. Slab counts lag frees (caches keep their pages), so
/// only growth between two readings on the way up is meaningful.
pub fn kernel_mem_growth(before: &KernelMem, after: &KernelMem, n: usize) -> serde_json::Value {
    let per = |kib: f64| kib / n.max(1) as f64;
    let mut grown: Vec<(&String, f64)> = after
        .slab_kib
        .iter()
        .map(|(k, v)| (k, v - before.slab_kib.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect();
    grown.sort_by(|a, b| b.1.total_cmp(&a.1));
    let slab_total: f64 = grown.iter().map(|x| x.1).sum();
    let top: Vec<serde_json::Value> = grown
        .iter()
        .take(15)
        .map(|(k, d)| serde_json::json!({"cache": k, "kib_per_ns": per(*d)}))
        .collect();
    serde_json::json!({
        "available_drop_kib_per_ns": per(before.available_kib - after.available_kib),
        "slab_kib_per_ns": per(slab_total),
        "slab_top": top,
    })
}

/// Waits until the CPUs were at least 85% idle for a whole second (or `limit` passed).
pub fn wait_idle(limit: std::time::Duration) {
    // (idle, total) jiffies of all CPUs.
    let sample = || -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // Niced time counts as idle: a `nice -n 19` build beside a run takes only what the run
        // leaves over.
        Some((cpu.get(1)? + cpu.get(3)? + cpu.get(4)?, cpu.iter().sum()))
    };
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        let Some((i0, t0)) = sample() else { return };
        std::thread::sleep(std::time::Duration::from_secs(1));
        let Some((i1, t1)) = sample() else { return };
        if t1 > t0 && (i1 - i0) * 100 >= (t1 - t0) * 85 {
            return;
        }
    }
    eprintln!("the machine did not go idle within {limit:?}; measuring anyway");
}
