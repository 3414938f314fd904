//! Per-namespace files under the `/etc/netns` directory (`--etc-netns-dir`): what `ip netns exec
//! NAME` (and `nsagent exec`) bind over `/etc`. The agent writes only `NAME/resolv.conf`, marked
//! as its own on the first line, and only ever removes files that carry that mark.

use crate::model::Dns;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const RESOLV_CONF: &str = "resolv.conf";

pub struct EtcNetns {
    dir: PathBuf,
}

impl EtcNetns {
    pub fn new(dir: PathBuf) -> Self {
        EtcNetns { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name).join(RESOLV_CONF)
    }

    /// Writes `NAME/resolv.conf` (mode 0644; the directories 0755), atomically: a reader sees
    /// the old file or the new one, never half of one.
    pub fn write(&self, name: &str, dns: &Dns) -> io::Result<()> {
        let dir = self.dir.join(name);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)?;
        let tmp = dir.join(".resolv.conf.nsagent");
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&tmp)?;
            f.write_all(dns.resolv_conf(name).as_bytes())?;
        }
        std::fs::rename(&tmp, self.file(name))
    }

    /// The DNS configuration the agent wrote for `name`, if its file is there and ours.
    pub fn read(&self, name: &str) -> Option<Dns> {
        let text = std::fs::read_to_string(self.file(name)).ok()?;
        Dns::parse_resolv_conf(&text, name)
    }

    /// Removes `NAME/resolv.conf` if the agent wrote it, and the directory if that leaves it
    /// empty. Someone else's files stay.
    pub fn remove(&self, name: &str) {
        let file = self.file(name);
        let ours = std::fs::read_to_string(&file)
            .ok()
            .is_some_and(|t| Dns::parse_resolv_conf(&t, name).is_some());
        if ours {
            if let Err(e) = std::fs::remove_file(&file) {
                tracing::warn!(path = %file.display(), error = %e, "remove resolv.conf");
            }
        }
        // Fails (and stays) unless empty.
        let _ = std::fs::remove_dir(self.dir.join(name));
    }

    /// Names that have a file the agent wrote.
    pub fn names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| crate::model::validate_name(n).is_ok() && self.read(n).is_some())
            .collect()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
