//! nsagent: network namespaces at kernel speed.
//!
//! A request's way through the house:
//! [`protocol`] (lines, decode + validate, with one type per command in [`cmd`]) →
//! [`server`] (socket tasks) → bounded crossbeam queue → [`executor`] (its own thread: batches,
//! planning, rollback; a lone warm claim on an idle agent is run by the socket task itself) → [`driver`] (the kernel: [`netns`] + [`netlink`] for namespaces, links
//! and addresses, the `nft` crate for the table). [`model`] is the plain data both sides agree
//! on. Metrics observe at the edges, and [`events`] tells watchers what the executor committed;
//! neither steers.
//!
//! The binary is a thin shell over [`cli::main`]; `nsagent run` is [`server::run`] with a
//! [`config::Config`].

pub mod cli;
pub mod cmd;
pub mod cni;
pub mod config;
pub mod driver;
pub mod events;
pub mod model;
pub mod protocol;
pub mod server;

mod executor;
mod http;
mod netlink;
mod netns;
mod pool;

pub use pool::{Pool, Pool6};

#[cfg(test)]
mod tests {
    /// Every anchor of docs/kernel.md that the code cites names a heading that exists.
    #[test]
    fn kernel_doc_citations_resolve() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let doc = std::fs::read_to_string(root.join("docs/kernel.md")).unwrap();
        let anchors: Vec<String> = doc
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .map(|h| {
                h.trim_start_matches('#')
                    .trim()
                    .to_lowercase()
                    .chars()
                    .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                    .map(|c| if c == ' ' { '-' } else { c })
                    .collect()
            })
            .collect();
        let mut cited = 0;
        let mut stack = vec![root.join("agent/src"), root.join("nft/src")];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                let pattern = concat!("docs/kernel.md", "#");
                for (_, rest) in text
                    .match_indices(pattern)
                    .map(|(i, _)| text.split_at(i + pattern.len()))
                {
                    let anchor: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '-')
                        .collect();
                    assert!(
                        anchors.contains(&anchor),
                        "{}: no heading for #{anchor}",
                        p.display()
                    );
                    cited += 1;
                }
            }
        }
        assert!(cited > 5, "the code cites docs/kernel.md");
    }
}
