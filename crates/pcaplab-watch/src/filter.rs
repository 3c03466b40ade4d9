//! Which keys are captures to process, like the lab's trigger (a suffix filter on the bucket
//! notification).

/// The default suffixes: `.cap`, `.pcap`, `.pcapng`, each also gzip- or zstd-compressed.
pub const DEFAULT_SUFFIXES: [&str; 9] = [
    ".cap",
    ".pcap",
    ".pcapng",
    ".cap.gz",
    ".pcap.gz",
    ".pcapng.gz",
    ".cap.zst",
    ".pcap.zst",
    ".pcapng.zst",
];

/// Keys that start with one of `prefixes` (any key if there are none) and end with one of
/// `suffixes` (ASCII case-insensitively: `X.PCAP` is a capture too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFilter {
    prefixes: Vec<String>,
    suffixes: Vec<String>,
}

impl Default for KeyFilter {
    fn default() -> Self {
        KeyFilter::new(Vec::new(), Vec::new())
    }
}

impl KeyFilter {
    /// No suffixes given: [`DEFAULT_SUFFIXES`].
    pub fn new(prefixes: Vec<String>, suffixes: Vec<String>) -> Self {
        let suffixes = if suffixes.is_empty() {
            DEFAULT_SUFFIXES.iter().map(|s| (*s).to_owned()).collect()
        } else {
            suffixes
        };
        KeyFilter {
            prefixes,
            suffixes: suffixes.iter().map(|s| s.to_ascii_lowercase()).collect(),
        }
    }

    pub fn matches(&self, key: &str) -> bool {
        let prefixed = self.prefixes.is_empty() || self.prefixes.iter().any(|p| key.starts_with(p));
        let lower = key.to_ascii_lowercase();
        prefixed && self.suffixes.iter().any(|s| lower.ends_with(s.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_takes_captures_in_every_compression() {
        let f = KeyFilter::default();
        for key in [
            "a.cap",
            "dir/b.pcap",
            "c.pcapng",
            "d.pcap.gz",
            "e.pcapng.zst",
            "f.cap.gz",
            "UPPER.PCAP",
        ] {
            assert!(f.matches(key), "{key}");
        }
        for key in ["notes.txt", "a.pcap.bak", "x.gz", "pcap", "dir/"] {
            assert!(!f.matches(key), "{key}");
        }
    }

    #[test]
    fn prefixes_and_suffixes_replace_the_default() {
        let f = KeyFilter::new(vec!["in/".into(), "also/".into()], vec![".dump".into()]);
        assert!(f.matches("in/x.dump"));
        assert!(f.matches("also/y.DUMP"));
        assert!(!f.matches("out/x.dump"));
        assert!(!f.matches("in/x.pcap"));
    }
}
