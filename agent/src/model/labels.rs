//! Labels: string → string pairs a client attaches to a namespace (to select it later), and the
//! selectors that pick namespaces by them. Plain data with its validation.

use std::collections::BTreeMap;

/// A namespace's labels, sorted by key (so answers and stored files are stable).
pub type Labels = BTreeMap<String, String>;

/// Most labels one namespace may carry.
pub const MAX_LABELS: usize = 32;
/// Longest key (bytes).
pub const MAX_KEY: usize = 63;
/// Longest value (bytes of UTF-8).
pub const MAX_VALUE: usize = 255;

/// Why a label or selector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("at most {MAX_LABELS} labels")]
    TooMany,
    #[error("invalid label key {0:?}: must match ^[A-Za-z0-9][A-Za-z0-9_./-]{{0,62}}$")]
    Key(String),
    #[error("label {0:?}: value longer than {MAX_VALUE} bytes")]
    Value(String),
}

pub fn validate_key(key: &str) -> Result<(), LabelError> {
    let b = key.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_KEY
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(LabelError::Key(key.to_string()))
    }
}

/// Checks a set of labels, or a selector (the same rules: a selector names labels).
pub fn validate(labels: &Labels) -> Result<(), LabelError> {
    if labels.len() > MAX_LABELS {
        return Err(LabelError::TooMany);
    }
    for (k, v) in labels {
        validate_key(k)?;
        if v.len() > MAX_VALUE {
            return Err(LabelError::Value(k.clone()));
        }
    }
    Ok(())
}

/// Whether `labels` carry every pair of `selector` (an empty selector selects everything).
pub fn selects(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Parses the CLI's `key=value`.
pub fn parse_pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected key=value"))?;
    validate_key(k).map_err(|e| e.to_string())?;
    Ok((k.to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_follow_the_documented_pattern() {
        for good in ["a", "team", "A9", "k8s.io/app", "x-y_z.w", &"k".repeat(63)] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            ".a",
            "/a",
            "a b",
            "a=b",
            "ä",
            &"k".repeat(64),
            "a:b",
        ] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_and_counts_are_bounded() {
        assert!(validate(&labels(&[("a", &"v".repeat(255))])).is_ok());
        assert_eq!(
            validate(&labels(&[("a", &"v".repeat(256))])),
            Err(LabelError::Value("a".into()))
        );
        // 255 bytes of UTF-8, not 255 characters.
        assert!(validate(&labels(&[("a", &"é".repeat(128))])).is_err());
        let many: Labels = (0..33).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(validate(&many), Err(LabelError::TooMany));
        assert!(validate(&many.into_iter().take(32).collect()).is_ok());
    }

    #[test]
    fn a_selector_needs_every_pair() {
        let l = labels(&[("team", "ci"), ("job", "42")]);
        assert!(selects(&Labels::new(), &l));
        assert!(selects(&labels(&[("team", "ci")]), &l));
        assert!(selects(&labels(&[("team", "ci"), ("job", "42")]), &l));
        assert!(!selects(&labels(&[("team", "ci"), ("job", "43")]), &l));
        assert!(!selects(&labels(&[("other", "")]), &l));
    }

    #[test]
    fn pairs_parse() {
        assert_eq!(parse_pair("team=ci"), Ok(("team".into(), "ci".into())));
        assert_eq!(parse_pair("k=a=b"), Ok(("k".into(), "a=b".into())));
        assert_eq!(parse_pair("k="), Ok(("k".into(), String::new())));
        assert!(parse_pair("novalue").is_err());
        assert!(parse_pair("-k=v").is_err());
    }
}
