//! The `nsagent` command line: `run` starts the agent ([`crate::server::run`]); the client
//! subcommands talk to a running one over its socket ([`client`], [`commands`]);
//! `completions` and `man` print generated files ([`docs`]).
//!
//! Exit codes are carried by the error ([`CliError::exit_code`]).

mod client;
mod commands;
mod docs;
mod error;
mod render;

pub use client::Client;
pub use error::{AgentError, CliError};

use crate::config::{self, LogFormat, RunArgs};
use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Serialize;
use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};

#[derive(Parser)]
#[command(
    name = "nsagent",
    version,
    about = "Network namespaces at kernel speed"
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent.
    Run(RunArgs),
    /// Create a namespace, or --count of them.
    Add(commands::AddArgs),
    /// Change a namespace's NAT, ports, egress address, rate limits, DNS or labels.
    Set(commands::SetArgs),
    /// Delete namespaces by name, every one whose name has a --prefix, or by label.
    Del(commands::DelArgs),
    /// List the namespaces (all, or those with the given labels).
    List(commands::ListArgs),
    /// Print every change to namespaces as it happens, until interrupted.
    Watch(commands::WatchArgs),
    /// Compare the kernel with the agent's view of every namespace; --repair puts back what
    /// is missing.
    Check(commands::CheckArgs),
    /// Show one namespace.
    Show(commands::ShowArgs),
    /// Show the agent's status.
    Status(commands::StatusArgs),
    /// Run a command inside a namespace's network namespace.
    Exec(commands::ExecArgs),
    /// Print a shell completion script.
    Completions(commands::CompletionsArgs),
    /// Print the man page (roff).
    Man,
}

/// Parses the process's arguments, runs the subcommand, and returns the exit code.
pub fn main() -> i32 {
    let cli = parse();
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            if !e.printed() {
                warn(&e.to_string());
            }
            e.exit_code()
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.cmd {
        Cmd::Run(args) => run_agent(args),
        Cmd::Add(a) => commands::add(a),
        Cmd::Set(a) => commands::set(a),
        Cmd::Del(a) => commands::del(a),
        Cmd::List(a) => commands::list(a),
        Cmd::Watch(a) => commands::watch(a),
        Cmd::Check(a) => commands::check(a),
        Cmd::Show(a) => commands::show(a),
        Cmd::Status(a) => commands::status(a),
        Cmd::Exec(a) => commands::exec(a),
        Cmd::Completions(a) => docs::completions(a.shell, Cli::command()),
        Cmd::Man => docs::man(Cli::command()),
    }
}

/// Parses the command line; for `run`, the config file fills in what flags and environment
/// left at their defaults.
fn parse() -> Cli {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let matches = Cli::command().get_matches_from(argv.clone());
    if let Some(("run", run_matches)) = matches.subcommand() {
        let cmd = Cli::command();
        if let Some(run_cmd) = cmd.find_subcommand("run") {
            match config::apply_file(argv, run_cmd, run_matches) {
                Ok(argv) => return Cli::parse_from(argv),
                Err(e) => {
                    warn(&format!("{e:#}"));
                    std::process::exit(2);
                }
            }
        }
    }
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `nsagent run`: checks the configuration once, then starts the agent (or, with
/// `--check-config`, prints the effective configuration).
fn run_agent(args: RunArgs) -> Result<(), CliError> {
    let config = args
        .validate()
        .context("invalid configuration")
        .map_err(CliError::Local)?;
    if args.check_config {
        let text = toml::to_string(&args).context("print the configuration")?;
        return out(&text);
    }
    init_logging(&config.log_level, config.log_format);
    crate::server::run(config).map_err(|e| {
        tracing::error!("{e:#}");
        CliError::Local(e)
    })
}

fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => fmt.json().init(),
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// One `nsagent: …` line on stderr.
fn warn(msg: &str) {
    let _ = writeln!(io::stderr().lock(), "nsagent: {msg}");
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn out(text: &str) -> Result<(), CliError> {
    let mut o = io::stdout().lock();
    match o.write_all(text.as_bytes()).and_then(|()| o.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r.context("write to stdout")?),
    }
}

/// A result as JSON: pretty on a terminal, one line otherwise.
fn print_json<T: Serialize>(v: &T) -> Result<(), CliError> {
    let text = if io::stdout().is_terminal() {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    }
    .context("encode JSON")?;
    out(&format!("{text}\n"))
}
