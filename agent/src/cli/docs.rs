//! Generated documentation: shell completions and the man page, from the clap definitions.

use super::error::CliError;
use super::out;
use anyhow::Context;

pub fn completions(shell: clap_complete::Shell, cmd: clap::Command) -> Result<(), CliError> {
    let mut cmd = for_docs(cmd);
    let mut buf = vec![];
    clap_complete::generate(shell, &mut cmd, "nsagent", &mut buf);
    out(&String::from_utf8(buf).context("completions are not UTF-8")?)
}

/// One roff page for the whole CLI: the top-level page, then every subcommand's synopsis and
/// options (clap_mangen alone would refer to per-subcommand pages that are not installed).
pub fn man(cmd: clap::Command) -> Result<(), CliError> {
    let mut cmd = for_docs(cmd);
    cmd.build();
    let top = clap_mangen::Man::new(cmd.clone());
    let mut page = vec![];
    let io =
        |e: std::io::Error| CliError::Local(anyhow::Error::new(e).context("render the man page"));
    top.render_title(&mut page).map_err(io)?;
    top.render_name_section(&mut page).map_err(io)?;
    top.render_synopsis_section(&mut page).map_err(io)?;
    top.render_description_section(&mut page).map_err(io)?;
    top.render_options_section(&mut page).map_err(io)?;
    page.extend_from_slice(b".SH COMMANDS\n");
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
        let m = clap_mangen::Man::new(sub.clone());
        page.extend_from_slice(format!(".SS \"{}\"\n", roff_escape(name)).as_bytes());
        let mut section = vec![];
        m.render_synopsis_section(&mut section).map_err(io)?;
        m.render_description_section(&mut section).map_err(io)?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            m.render_options_section(&mut section).map_err(io)?;
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
    top.render_version_section(&mut page).map_err(io)?;
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
