//! Where objects are: a local path or `s3://bucket/key`.

use std::fmt;
use std::path::PathBuf;

/// An input object, or the root of the outputs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// A local file or directory (`PATH` or `file:///PATH`).
    Local(PathBuf),
    /// An S3 object or prefix; `key` is the decoded key, without a leading `/`.
    S3 { bucket: String, key: String },
}

/// A location the user wrote that we cannot use.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error("{url}: no bucket name (expected s3://BUCKET/KEY)")]
    NoBucket { url: String },
    #[error("{url}: {bucket:?} is not a valid S3 bucket name")]
    BadBucket { url: String, bucket: String },
    #[error("{url}: only file:///PATH is supported for file URLs (no host)")]
    FileHost { url: String },
    #[error("{url}: unsupported scheme {scheme:?} (use a path, file:// or s3://)")]
    Scheme { url: String, scheme: String },
}

/// Bucket names as S3 allows them (3–63 of `a-z 0-9 . -`, starting and ending alphanumeric);
/// S3-compatible stores are a little looser, so upper case and `_` pass too.
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        && b.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

impl Location {
    /// `s3://bucket/key`, `file:///path` or a plain path. S3 keys are taken literally (an
    /// `s3://` URL is not percent-decoded, as in the AWS CLI).
    pub fn parse(s: &str) -> Result<Self, LocationError> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(LocationError::NoBucket { url: s.to_owned() });
            }
            if !valid_bucket(bucket) {
                return Err(LocationError::BadBucket {
                    url: s.to_owned(),
                    bucket: bucket.to_owned(),
                });
            }
            return Ok(Location::S3 {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            });
        }
        if let Some(rest) = s.strip_prefix("file://") {
            return match rest.strip_prefix('/') {
                Some(_) => Ok(Location::Local(PathBuf::from(rest))),
                None => Err(LocationError::FileHost { url: s.to_owned() }),
            };
        }
        if let Some((scheme, _)) = s.split_once("://")
            && !scheme.is_empty()
            && scheme
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
        {
            return Err(LocationError::Scheme {
                url: s.to_owned(),
                scheme: scheme.to_owned(),
            });
        }
        Ok(Location::Local(PathBuf::from(s)))
    }

    /// The lab's item key: `bucket/key` for S3, the path for local files.
    pub fn s3_id(&self) -> String {
        match self {
            Location::Local(p) => p.display().to_string(),
            Location::S3 { bucket, key } => format!("{bucket}/{key}"),
        }
    }

    /// The object's file name (the last path segment).
    pub fn file_name(&self) -> String {
        match self {
            Location::Local(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Location::S3 { key, .. } => key.rsplit('/').next().unwrap_or_default().to_owned(),
        }
    }

    /// Whether this names an S3 prefix (ends with `/`, or is a bucket's root) rather than an
    /// object. Local paths are never prefixes here: the caller looks at the file system.
    pub fn is_prefix(&self) -> bool {
        match self {
            Location::Local(_) => false,
            Location::S3 { key, .. } => key.is_empty() || key.ends_with('/'),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str, key: &str) -> Location {
        Location::S3 {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    #[test]
    fn parses_s3_file_and_paths() {
        assert_eq!(
            Location::parse("s3://my-bucket/a b/c+d.pcap").expect("s3"),
            s3("my-bucket", "a b/c+d.pcap")
        );
        assert_eq!(
            Location::parse("s3://my-bucket").expect("root"),
            s3("my-bucket", "")
        );
        assert!(
            Location::parse("s3://my-bucket/")
                .expect("root")
                .is_prefix()
        );
        assert!(
            !Location::parse("s3://my-bucket/x")
                .expect("obj")
                .is_prefix()
        );
        assert_eq!(
            Location::parse("file:///tmp/x.pcap").expect("file"),
            Location::Local("/tmp/x.pcap".into())
        );
        assert_eq!(
            Location::parse("captures/x.pcap").expect("path"),
            Location::Local("captures/x.pcap".into())
        );
        // A colon in a file name is not a scheme.
        assert_eq!(
            Location::parse("a:b.pcap").expect("path"),
            Location::Local("a:b.pcap".into())
        );
    }

    #[test]
    fn rejects_bad_locations_by_name() {
        let e = Location::parse("s3:///key").expect_err("no bucket");
        assert!(e.to_string().contains("no bucket"), "{e}");
        let e = Location::parse("s3://a/k").expect_err("short bucket");
        assert!(e.to_string().contains("\"a\""), "{e}");
        let e = Location::parse("file://host/x").expect_err("host");
        assert!(e.to_string().contains("file:///PATH"), "{e}");
        let e = Location::parse("gs://b/k").expect_err("scheme");
        assert!(e.to_string().contains("\"gs\""), "{e}");
    }

    #[test]
    fn ids_and_names() {
        let l = s3("b-1", "dir/x y.cap");
        assert_eq!(l.s3_id(), "b-1/dir/x y.cap");
        assert_eq!(l.file_name(), "x y.cap");
        assert_eq!(l.to_string(), "s3://b-1/dir/x y.cap");
    }
}
