//! Where a namespace's labels live: the kernel has no place for 32 key/value pairs (an ifalias
//! holds 255 bytes and already carries the ownership mark), so each labelled namespace has one
//! JSON file, `NAME`, in a directory beside the netns directory (`/run/.netns-nsagent-labels`
//! for `/run/netns`). Like the netns files it is on a tmpfs: it survives the agent's restarts
//! and `kill -9`, and goes with the namespaces at reboot. Only the agent reads it.

use crate::model::{labels, validate_name, Labels};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub struct LabelStore {
    dir: PathBuf,
}

impl LabelStore {
    /// Creates the directory (0700) if it is not there.
    pub fn open(dir: PathBuf) -> io::Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        Ok(LabelStore { dir })
    }

    /// Stores `name`'s labels, atomically (a reader sees the old set or the new one); none
    /// at all is no file.
    pub fn write(&self, name: &str, labels: &Labels) -> io::Result<()> {
        if labels.is_empty() {
            return self.remove(name);
        }
        // Names start with a letter or digit: a dot file cannot be anyone's.
        let tmp = self.dir.join(format!(".{name}.tmp"));
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&serde_json::to_vec(labels)?)?;
        }
        std::fs::rename(&tmp, self.dir.join(name))
    }

    /// `name`'s labels; none if it has no file. A file that is not a valid set of labels (not
    /// written by the agent) counts as none, and says so.
    pub fn read(&self, name: &str) -> Labels {
        let path = self.dir.join(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Labels::new(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "read labels");
                return Labels::new();
            }
        };
        match serde_json::from_slice::<Labels>(&bytes) {
            Ok(l) if labels::validate(&l).is_ok() => l,
            _ => {
                tracing::warn!(path = %path.display(), "not a set of labels; ignored");
                Labels::new()
            }
        }
    }

    /// Removes `name`'s file (none is fine).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        match std::fs::remove_file(self.dir.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Names that have a file.
    pub fn names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| validate_name(n).is_ok())
            .collect()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_replace_and_remove() {
        let d = std::env::temp_dir().join(format!("nsagent-labels-{}", std::process::id()));
        let s = LabelStore::open(d.clone()).unwrap();
        let mut l = Labels::new();
        l.insert("team".into(), "ci".into());
        s.write("a", &l).unwrap();
        assert_eq!(s.read("a"), l);
        assert_eq!(s.names(), vec!["a".to_string()]);
        l.insert("job".into(), "42".into());
        s.write("a", &l).unwrap();
        assert_eq!(s.read("a"), l);
        s.write("a", &Labels::new()).unwrap();
        assert!(s.read("a").is_empty());
        assert!(s.names().is_empty());
        std::fs::write(d.join("b"), b"{\"-bad\":\"x\"}").unwrap();
        assert!(s.read("b").is_empty(), "invalid labels are none");
        s.remove("b").unwrap();
        s.remove("never").unwrap();
        std::fs::remove_dir_all(d).unwrap();
    }
}
