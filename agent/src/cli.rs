//! Client subcommands: `add`, `del`, `list`, `show`, `status` and `exec` talk to a running agent
//! over its socket only (never to the kernel; `exec` joins a namespace with setns), and
//! `completions`/`man` print generated files.
//!
//! Exit codes: 0 ok; 1 the agent refused (`nsagent: <code>: <message>` on stderr) or a local
//! error; 2 usage (clap); 3 the agent is not reachable; `exec` exits with its command's code
//! (126/127 when the command cannot be run, as env(1) and nsenter(1) do).

use anyhow::{bail, Context, Result};
use clap::builder::NonEmptyStringValueParser;
use clap::{ArgGroup, Args};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the client waits for the next response before giving up on the agent. The agent
/// answers `busy` after at most 10 s, so this only trips when it hangs.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most per-request failures a bulk operation prints before summarising the rest.
const MAX_REPORTED_FAILURES: usize = 10;

/// Where the agent listens.
#[derive(Args, Debug)]
pub struct Target {
    /// Unix socket of the agent.
    #[arg(
        long,
        env = "NSAGENT_SOCKET",
        default_value = "/run/nsagent/nsagent.sock",
        value_name = "PATH"
    )]
    pub socket: PathBuf,
}

/// Options of every client subcommand that prints a result.
#[derive(Args, Debug)]
pub struct ClientOpts {
    #[command(flatten)]
    pub target: Target,
    /// Print the protocol's result object(s) as one JSON document instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("what").required(true).args(["name", "count"])))]
pub struct AddArgs {
    /// Name of the namespace.
    #[arg(conflicts_with_all = ["count", "prefix"])]
    pub name: Option<String>,
    /// Create N namespaces named PREFIX0 .. PREFIX<N-1>, pipelined on one connection.
    #[arg(long, value_name = "N", requires = "prefix",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub count: Option<u32>,
    /// Name prefix of the namespaces --count creates.
    #[arg(long, requires = "count")]
    pub prefix: Option<String>,
    /// Subnet a.b.c.d/len (default: allocated from the agent's pool).
    #[arg(long, value_name = "CIDR", conflicts_with = "count")]
    pub subnet: Option<String>,
    /// Do not masquerade the namespace's traffic.
    #[arg(long)]
    pub no_nat: bool,
    /// MTU of the veth pair (68-65535).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(68..=65535))]
    pub mtu: Option<u32>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Args, Debug)]
pub struct DelArgs {
    /// Names of the namespaces to delete.
    #[arg(required_unless_present = "prefix", conflicts_with = "prefix")]
    pub names: Vec<String>,
    /// Delete every namespace whose name starts with PREFIX (listed, then deleted pipelined).
    #[arg(long, value_parser = NonEmptyStringValueParser::new())]
    pub prefix: Option<String>,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Name of the namespace.
    pub name: String,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Name of the namespace.
    pub name: String,
    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

// ---------------------------------------------------------------------------------------------
// Errors and exit codes.

/// The agent answered `ok: false`.
#[derive(Debug, Clone)]
struct AgentError {
    code: String,
    message: String,
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for AgentError {}

/// No agent at the socket, or it went away mid-conversation.
#[derive(Debug)]
struct Unreachable {
    socket: PathBuf,
    error: io::Error,
    lost: bool,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.socket.display();
        if self.lost {
            return write!(
                f,
                "lost the connection to the agent at {path}: {}",
                self.error
            );
        }
        write!(f, "cannot reach the agent at {path}: {}", self.error)?;
        match self.error.kind() {
            io::ErrorKind::PermissionDenied => write!(
                f,
                " (run as root or as a member of the socket's group, or pass --socket)"
            ),
            _ => write!(
                f,
                " (is it running? start it with `nsagent run`, or pass --socket)"
            ),
        }
    }
}

impl std::error::Error for Unreachable {}

/// Failures already printed (one line each); only the exit code is left to give.
#[derive(Debug)]
struct Reported;

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("failures reported above")
    }
}

impl std::error::Error for Reported {}

/// `exec` could not run its command.
#[derive(Debug)]
struct ExecFailed {
    program: OsString,
    error: io::Error,
}

impl fmt::Display for ExecFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot run {}: {}",
            self.program.to_string_lossy(),
            self.error
        )
    }
}

impl std::error::Error for ExecFailed {}

/// Ends the process with the exit code the outcome calls for, printing the error.
pub fn exit(outcome: Result<()>) -> ! {
    let Err(e) = outcome else {
        std::process::exit(0)
    };
    let code = if e.downcast_ref::<Reported>().is_some() {
        1
    } else if let Some(u) = e.downcast_ref::<Unreachable>() {
        warn(&u.to_string());
        3
    } else if let Some(x) = e.downcast_ref::<ExecFailed>() {
        warn(&x.to_string());
        if x.error.kind() == io::ErrorKind::NotFound {
            127
        } else {
            126
        }
    } else {
        // An AgentError prints as `<code>: <message>`; anything else with its context chain.
        warn(&format!("{e:#}"));
        1
    };
    std::process::exit(code)
}

/// One `nsagent: …` line on stderr.
fn warn(msg: &str) {
    let _ = writeln!(io::stderr().lock(), "nsagent: {msg}");
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn out(text: &str) -> Result<()> {
    let mut o = io::stdout().lock();
    match o.write_all(text.as_bytes()).and_then(|()| o.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("write to stdout"),
    }
}

fn print_json(v: &Value) -> Result<()> {
    let text = if io::stdout().is_terminal() {
        serde_json::to_string_pretty(v)?
    } else {
        serde_json::to_string(v)?
    };
    out(&format!("{text}\n"))
}

// ---------------------------------------------------------------------------------------------
// The protocol client.

struct Conn {
    socket: PathBuf,
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl Conn {
    fn connect(socket: &Path) -> Result<Conn> {
        let unreachable = |error| Unreachable {
            socket: socket.to_path_buf(),
            error,
            lost: false,
        };
        let stream = UnixStream::connect(socket).map_err(unreachable)?;
        stream
            .set_read_timeout(Some(RESPONSE_TIMEOUT))
            .map_err(unreachable)?;
        let reader = BufReader::new(stream.try_clone().map_err(unreachable)?);
        Ok(Conn {
            socket: socket.to_path_buf(),
            stream,
            reader,
            next_id: 1,
        })
    }

    fn lost(&self, error: io::Error) -> anyhow::Error {
        Unreachable {
            socket: self.socket.clone(),
            error,
            lost: true,
        }
        .into()
    }

    /// Reads one response line.
    fn recv(&mut self) -> Result<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(self.lost(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the agent closed the connection",
            ))),
            Ok(_) => serde_json::from_str(&line).with_context(|| {
                format!(
                    "the agent sent a line that is not JSON: {:?}",
                    line.trim_end()
                )
            }),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(self.lost(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no response within {} s", RESPONSE_TIMEOUT.as_secs()),
                )))
            }
            Err(e) => Err(self.lost(e)),
        }
    }

    /// One request, one response: the result, or the agent's error.
    fn call(&mut self, mut req: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        req["id"] = json!(id);
        let mut line = serde_json::to_vec(&req)?;
        line.push(b'\n');
        if let Err(e) = self.stream.write_all(&line) {
            return Err(self.lost(e));
        }
        let resp = self.recv()?;
        if resp["id"] != json!(id) {
            // A response to nothing we sent: the connection was refused (peer credentials) or
            // the agent misbehaves.
            outcome(&resp)?;
            bail!("the agent answered id {} to request {id}", resp["id"]);
        }
        Ok(outcome(&resp)?)
    }

    /// Sends every request at once (from a writer thread) while reading the responses as they
    /// come, in any order; returns the outcomes in request order.
    fn pipeline(
        &mut self,
        reqs: Vec<Value>,
        progress: &ProgressBar,
    ) -> Result<Vec<Result<Value, AgentError>>> {
        let n = reqs.len();
        let first = self.next_id;
        self.next_id += n as u64;
        let stream = self.stream.try_clone().map_err(|e| self.lost(e))?;
        let writer = std::thread::Builder::new()
            .name("requests".into())
            .spawn(move || -> io::Result<()> {
                let mut w = BufWriter::new(stream);
                for (id, mut req) in (first..).zip(reqs) {
                    req["id"] = json!(id);
                    serde_json::to_writer(&mut w, &req)?;
                    w.write_all(b"\n")?;
                }
                w.flush()
            })
            .context("spawn the request writer")?;
        let mut outcomes: Vec<Option<Result<Value, AgentError>>> = vec![None; n];
        for _ in 0..n {
            // On failure the writer thread is left behind: the process is about to exit.
            let resp = self.recv()?;
            let slot = resp["id"]
                .as_u64()
                .and_then(|id| id.checked_sub(first))
                .and_then(|i| usize::try_from(i).ok())
                .filter(|i| *i < n);
            let Some(i) = slot else {
                outcome(&resp)?;
                bail!("the agent answered id {} that was never sent", resp["id"]);
            };
            if outcomes[i].is_some() {
                bail!("the agent answered id {} twice", resp["id"]);
            }
            outcomes[i] = Some(outcome(&resp));
            progress.inc(1);
        }
        match writer.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.lost(e)),
            Err(_) => bail!("the request writer panicked"),
        }
        outcomes
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .context("a request got no response")
    }
}

/// A response's result or error.
fn outcome(resp: &Value) -> Result<Value, AgentError> {
    if resp["ok"] == json!(true) {
        return Ok(resp.get("result").cloned().unwrap_or(Value::Null));
    }
    let err = &resp["error"];
    Err(AgentError {
        code: err["code"].as_str().unwrap_or("unknown").to_string(),
        message: err["message"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| resp.to_string()),
    })
}

// ---------------------------------------------------------------------------------------------
// Bulk operations.

fn progress_bar(len: usize, verb: &str) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style =
        ProgressStyle::with_template("{msg} [{wide_bar:.cyan/blue}] {pos}/{len} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    bar.set_style(style);
    bar.set_message(verb.to_string());
    bar
}

/// Runs one request per name, pipelined, and reports: a summary line on stderr, the failures
/// (`nsagent: <code>: <message>`, at most [`MAX_REPORTED_FAILURES`]), the successful results.
/// Fails with [`Reported`] when any request failed.
fn bulk(
    conn: &mut Conn,
    names: &[String],
    reqs: Vec<Value>,
    verb: &str,
    json_out: bool,
    human: impl Fn(&[Value]) -> Result<()>,
) -> Result<()> {
    let started = Instant::now();
    let bar = progress_bar(reqs.len(), verb);
    let outcomes = conn.pipeline(reqs, &bar);
    bar.finish_and_clear();
    let outcomes = outcomes?;
    let mut done = vec![];
    let mut failed = vec![];
    for (name, o) in names.iter().zip(outcomes) {
        match o {
            Ok(v) => done.push(v),
            Err(e) => failed.push((name, e)),
        }
    }
    if json_out {
        print_json(&Value::Array(done.clone()))?;
    } else {
        human(&done)?;
    }
    for (name, e) in failed.iter().take(MAX_REPORTED_FAILURES) {
        if e.message.contains(name.as_str()) {
            warn(&e.to_string());
        } else {
            warn(&format!("{}: {name}: {}", e.code, e.message));
        }
    }
    if failed.len() > MAX_REPORTED_FAILURES {
        warn(&format!(
            "... and {} more failures",
            failed.len() - MAX_REPORTED_FAILURES
        ));
    }
    let secs = started.elapsed().as_secs_f64();
    let total = names.len();
    let summary = if failed.is_empty() {
        format!("{verb} {total} namespace{} in {secs:.2}s", plural(total))
    } else {
        format!(
            "{verb} {} of {total} namespace{} in {secs:.2}s ({} failed)",
            done.len(),
            plural(total),
            failed.len()
        )
    };
    let _ = writeln!(io::stderr().lock(), "{summary}");
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Reported.into())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

// ---------------------------------------------------------------------------------------------
// Subcommands.

pub fn add(a: AddArgs) -> Result<()> {
    let mut base = serde_json::Map::new();
    base.insert("op".into(), json!("create"));
    if let Some(s) = &a.subnet {
        base.insert("subnet".into(), json!(s));
    }
    if a.no_nat {
        base.insert("nat".into(), json!(false));
    }
    if let Some(m) = a.mtu {
        base.insert("mtu".into(), json!(m));
    }
    let request = |name: &str| {
        let mut r = base.clone();
        r.insert("name".into(), json!(name));
        Value::Object(r)
    };
    let mut conn = Conn::connect(&a.opts.target.socket)?;
    match (&a.name, a.count) {
        (Some(name), _) => {
            let ns = conn.call(request(name))?;
            if a.opts.json {
                print_json(&ns)
            } else {
                out(&namespace_details(&ns))
            }
        }
        (None, Some(count)) => {
            let prefix = a.prefix.as_deref().unwrap_or("");
            let names: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
            let reqs = names.iter().map(|n| request(n)).collect();
            bulk(&mut conn, &names, reqs, "created", a.opts.json, |_| Ok(()))
        }
        // clap's group makes NAME or --count required.
        (None, None) => bail!("give a NAME or --count"),
    }
}

pub fn del(a: DelArgs) -> Result<()> {
    let mut conn = Conn::connect(&a.opts.target.socket)?;
    let names: Vec<String> = match &a.prefix {
        Some(prefix) => namespaces(&conn.call(json!({"op":"list"}))?)?
            .iter()
            .filter_map(|ns| ns["name"].as_str())
            .filter(|n| n.starts_with(prefix.as_str()))
            .map(String::from)
            .collect(),
        None => a.names.clone(),
    };
    if a.prefix.is_none() && names.len() == 1 {
        let r = conn.call(json!({"op":"delete","name":names[0]}))?;
        return if a.opts.json {
            print_json(&r)
        } else {
            out(&format!("deleted {}\n", names[0]))
        };
    }
    let reqs = names
        .iter()
        .map(|n| json!({"op":"delete","name":n}))
        .collect();
    bulk(&mut conn, &names, reqs, "deleted", a.opts.json, |_| Ok(()))
}

pub fn list(a: ListArgs) -> Result<()> {
    let mut conn = Conn::connect(&a.opts.target.socket)?;
    let r = conn.call(json!({"op":"list"}))?;
    if a.opts.json {
        return print_json(&r);
    }
    let rows: Vec<Vec<String>> = namespaces(&r)?
        .iter()
        .map(|ns| {
            [
                "name",
                "subnet",
                "address",
                "gateway",
                "host_ifname",
                "ns_ifname",
                "nat",
                "mtu",
            ]
            .iter()
            .map(|k| field(ns, k))
            .collect()
        })
        .collect();
    out(&table(
        &[
            "NAME", "SUBNET", "ADDRESS", "GATEWAY", "HOST_IF", "NS_IF", "NAT", "MTU",
        ],
        &rows,
    ))
}

pub fn show(a: ShowArgs) -> Result<()> {
    let mut conn = Conn::connect(&a.opts.target.socket)?;
    let ns = conn.call(json!({"op":"get","name":a.name}))?;
    if a.opts.json {
        print_json(&ns)
    } else {
        out(&namespace_details(&ns))
    }
}

pub fn status(a: StatusArgs) -> Result<()> {
    let mut conn = Conn::connect(&a.opts.target.socket)?;
    let st = conn.call(json!({"op":"status"}))?;
    if a.opts.json {
        return print_json(&st);
    }
    let pool = &st["pool"];
    let uplink = match &st["uplink"] {
        Value::Null => "none (any non-namespace interface)".to_string(),
        v => text(v),
    };
    let uptime = st["uptime_seconds"]
        .as_f64()
        .map(|s| duration(s as u64))
        .unwrap_or_else(|| text(&st["uptime_seconds"]));
    out(&key_values(&[
        ("version", text(&st["version"])),
        ("namespaces", text(&st["namespaces"])),
        ("pending deletions", text(&st["pending_deletions"])),
        (
            "pool",
            format!(
                "{} (/{} subnets: {} free of {})",
                text(&pool["cidr"]),
                text(&pool["prefix_len"]),
                text(&pool["free"]),
                text(&pool["size"])
            ),
        ),
        ("uplink", uplink),
        ("table", format!("inet {}", text(&st["table"]))),
        ("netns dir", text(&st["netns_dir"])),
        ("uptime", uptime),
    ]))
}

pub fn exec(a: ExecArgs) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let ns = Conn::connect(&a.target.socket)?.call(json!({"op":"get","name":a.name}))?;
    let path = ns["netns_path"]
        .as_str()
        .context("the agent's answer has no netns_path")?;
    let file = std::fs::File::open(path).with_context(|| format!("open {path}"))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns {path}"))?;
    drop(file);
    let (program, args) = a.command.split_first().context("no command given")?;
    // Only returns on failure; on success the command's exit code is ours.
    let error = std::process::Command::new(program).args(args).exec();
    Err(ExecFailed {
        program: program.clone(),
        error,
    }
    .into())
}

/// Shell completion script for `cmd` (the whole CLI).
pub fn completions(a: CompletionsArgs, cmd: clap::Command) -> Result<()> {
    let mut cmd = for_docs(cmd);
    let mut buf = vec![];
    clap_complete::generate(a.shell, &mut cmd, "nsagent", &mut buf);
    out(&String::from_utf8(buf).context("completions are not UTF-8")?)
}

/// One roff page for the whole CLI: the top-level page, then every subcommand's synopsis and
/// options (clap_mangen alone would refer to per-subcommand pages that are not installed).
pub fn man(cmd: clap::Command) -> Result<()> {
    let mut cmd = for_docs(cmd);
    cmd.build();
    let top = clap_mangen::Man::new(cmd.clone());
    let mut page = vec![];
    top.render_title(&mut page)?;
    top.render_name_section(&mut page)?;
    top.render_synopsis_section(&mut page)?;
    top.render_description_section(&mut page)?;
    top.render_options_section(&mut page)?;
    page.extend_from_slice(b".SH COMMANDS\n");
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
        let m = clap_mangen::Man::new(sub.clone());
        page.extend_from_slice(format!(".SS \"{}\"\n", roff_escape(name)).as_bytes());
        let mut section = vec![];
        m.render_synopsis_section(&mut section)?;
        m.render_description_section(&mut section)?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            m.render_options_section(&mut section)?;
        }
        // Fold the subcommand's sections into this subsection: headings become paragraphs.
        for line in String::from_utf8(section)
            .context("man page is not UTF-8")?
            .lines()
        {
            match line {
                ".SH SYNOPSIS" | ".SH DESCRIPTION" => page.extend_from_slice(b".PP\n"),
                ".SH OPTIONS" => page.extend_from_slice(b".PP\nOptions:\n"),
                l => {
                    page.extend_from_slice(l.as_bytes());
                    page.push(b'\n');
                }
            }
        }
    }
    page.extend_from_slice(MAN_EXTRA.as_bytes());
    top.render_version_section(&mut page)?;
    out(&String::from_utf8(page).context("man page is not UTF-8")?)
}

const MAN_EXTRA: &str = r#".SH "EXIT STATUS"
.TP
0
Success.
.TP
1
The agent refused the request (\fBnsagent: \fIcode\fB: \fImessage\fR on standard error), some
requests of a bulk operation failed, or a local error.
.TP
2
Usage error.
.TP
3
The agent is not reachable at the socket.
.PP
\fBnsagent exec\fR exits with its command's status, or 126/127 when the command cannot be run.
.SH ENVIRONMENT
.TP
\fBNSAGENT_SOCKET\fR
The agent's socket, for \fBrun\fR and every client command (default
/run/nsagent/nsagent.sock).
.SH "SEE ALSO"
\fBip-netns\fR(8), the protocol in docs/protocol.md.
"#;

/// The CLI as the generated files describe it: environment values are never baked in.
fn for_docs(cmd: clap::Command) -> clap::Command {
    fn hide(cmd: clap::Command) -> clap::Command {
        cmd.mut_args(|a| a.hide_env_values(true))
            .mut_subcommands(hide)
    }
    hide(cmd)
}

fn roff_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('-', "\\-")
        .replace('"', "\\(dq")
}

// ---------------------------------------------------------------------------------------------
// Rendering.

fn namespaces(list: &Value) -> Result<&Vec<Value>> {
    list["namespaces"]
        .as_array()
        .context("the agent's list has no namespaces array")
}

/// A scalar as a table cell.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        other => other.to_string(),
    }
}

fn field(ns: &Value, key: &str) -> String {
    text(ns.get(key).unwrap_or(&Value::Null))
}

fn namespace_details(ns: &Value) -> String {
    let keys = [
        ("name", "name"),
        ("netns path", "netns_path"),
        ("subnet", "subnet"),
        ("address", "address"),
        ("gateway", "gateway"),
        ("host interface", "host_ifname"),
        ("ns interface", "ns_ifname"),
        ("nat", "nat"),
        ("mtu", "mtu"),
    ];
    let rows: Vec<(&str, String)> = keys.iter().map(|(l, k)| (*l, field(ns, k))).collect();
    key_values(&rows)
}

/// `label:  value` lines, values aligned.
fn key_values(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{:<width$}  {v}\n", format!("{k}:")))
        .collect()
}

/// Columns separated by two spaces, each as wide as its widest cell (the last not padded).
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
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

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m{s:02}s"),
        _ => format!("{d}d{h:02}h{m:02}m{s:02}s"),
    }
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
    fn outcomes_carry_the_agents_error() {
        let e = outcome(&json!({"id":1,"ok":false,"error":{"code":"exists","message":"m"}}))
            .expect_err("error");
        assert_eq!(e.to_string(), "exists: m");
        assert_eq!(
            outcome(&json!({"id":1,"ok":true,"result":{"x":1}})).expect("ok"),
            json!({"x":1})
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
