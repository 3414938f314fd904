//! The configuration file (`/etc/nsagent/nsagent.toml`): every key is a `nsagent run` flag
//! (with `_` for `-`), and precedence is flag > environment > file > default. The file is
//! applied by re-parsing the command line with the file's values appended for exactly the
//! settings still at their defaults, so clap stays the one place that knows types and ranges.

use anyhow::{bail, Context};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::DEFAULT_PATH;

/// Keys that only make sense on the command line.
const NOT_IN_FILE: [&str; 2] = ["config", "check_config"];

/// Returns `argv` with the config file's settings added where neither a flag nor an
/// environment variable set them. `run` is the `run` subcommand's definition and matches.
pub fn apply_file(
    mut argv: Vec<OsString>,
    run: &Command,
    matches: &ArgMatches,
) -> anyhow::Result<Vec<OsString>> {
    let path: PathBuf = matches
        .get_one::<PathBuf>("config")
        .cloned()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    let explicit = matches!(
        matches.value_source("config"),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(argv),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    for (key, value, line) in parse(&text, &path)? {
        let arg = run
            .get_arguments()
            .find(|a| a.get_id().as_str() == key && !NOT_IN_FILE.contains(&key.as_str()));
        let Some(arg) = arg else {
            bail!("{}:{line}: unknown key `{key}`", path.display());
        };
        if !matches!(
            matches.value_source(&key),
            None | Some(ValueSource::DefaultValue)
        ) {
            continue; // a flag or the environment wins
        }
        let long = arg.get_long().context("config key without a flag")?;
        let flag = OsString::from(format!("--{long}"));
        match (arg.get_action(), value) {
            (ArgAction::SetTrue, toml::Value::Boolean(b)) => {
                if b {
                    argv.push(flag);
                }
            }
            (ArgAction::SetTrue, _) => {
                bail!("{}:{line}: `{key}` must be true or false", path.display())
            }
            (_, v) => {
                argv.push(flag);
                argv.push(OsString::from(scalar(&v).with_context(|| {
                    format!(
                        "{}:{line}: `{key}` has an unsupported value",
                        path.display()
                    )
                })?));
            }
        }
    }
    Ok(argv)
}

fn scalar(v: &toml::Value) -> Option<String> {
    Some(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(a) => a.iter().map(scalar).collect::<Option<Vec<_>>>()?.join(","),
        _ => return None,
    })
}

/// (key, value, line number) for every top-level key.
fn parse(text: &str, path: &Path) -> anyhow::Result<Vec<(String, toml::Value, usize)>> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
    let line_of = |key: &str| {
        text.lines()
            .position(|l| {
                let l = l.trim_start();
                l.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
            .map_or(0, |i| i + 1)
    };
    let mut out: Vec<_> = table
        .into_iter()
        .map(|(k, v)| {
            let line = line_of(&k);
            (k, v, line)
        })
        .collect();
    out.sort_by_key(|x| x.2);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    fn cmd() -> Command {
        Command::new("run")
            .arg(
                Arg::new("config")
                    .long("config")
                    .value_parser(clap::value_parser!(PathBuf)),
            )
            .arg(Arg::new("pool").long("pool").default_value("10.200.0.0/16"))
            .arg(
                Arg::new("prefix_len")
                    .long("prefix-len")
                    .default_value("30"),
            )
            .arg(Arg::new("allow_uid").long("allow-uid").value_delimiter(','))
            .arg(
                Arg::new("cleanup_on_exit")
                    .long("cleanup-on-exit")
                    .action(ArgAction::SetTrue),
            )
    }

    fn apply(args: &[&str], file: &str) -> anyhow::Result<Vec<String>> {
        let dir = std::env::temp_dir().join(format!("nsagent-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.toml", args.len() * 1000 + file.len()));
        std::fs::write(&path, file)?;
        let mut argv: Vec<OsString> = vec!["run".into(), "--config".into(), path.clone().into()];
        argv.extend(args.iter().map(OsString::from));
        let m = cmd().try_get_matches_from(argv.clone())?;
        let out = apply_file(argv, &cmd(), &m)?;
        Ok(out
            .into_iter()
            .skip(3)
            .map(|s| s.to_string_lossy().into_owned())
            .collect())
    }

    #[test]
    fn file_fills_defaults_only() {
        let out = apply(
            &["--pool", "100.64.0.0/16"],
            "pool = \"198.18.0.0/16\"\nprefix_len = 31\n",
        )
        .unwrap();
        assert_eq!(out, ["--pool", "100.64.0.0/16", "--prefix-len", "31"]);
    }

    #[test]
    fn lists_and_bools() {
        let out = apply(&[], "allow_uid = [1000, 1001]\ncleanup_on_exit = true\n").unwrap();
        assert_eq!(out, ["--allow-uid", "1000,1001", "--cleanup-on-exit"]);
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let e = apply(&[], "pool = \"198.18.0.0/16\"\n\npoool = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.ends_with(":3: unknown key `poool`"), "{e}");
        let e = apply(&[], "config = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("unknown key `config`"), "{e}");
    }

    #[test]
    fn missing_default_file_is_fine_but_an_explicit_one_is_not() {
        let m = cmd().try_get_matches_from(["run"]).unwrap();
        let argv = vec![OsString::from("run")];
        // The default path is very unlikely to exist on a test machine; if it does, skip.
        if !Path::new(DEFAULT_PATH).exists() {
            assert!(apply_file(argv, &cmd(), &m).is_ok());
        }
        let m = cmd()
            .try_get_matches_from(["run", "--config", "/nonexistent/x.toml"])
            .unwrap();
        let argv = vec![
            "run".into(),
            "--config".into(),
            "/nonexistent/x.toml".into(),
        ];
        assert!(apply_file(argv, &cmd(), &m).is_err());
    }
}
