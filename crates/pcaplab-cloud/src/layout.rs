//! Where each output of a capture goes, under the output root (a directory or an S3 prefix):
//!
//! ```text
//! packets/date=YYYY-MM-DD/<id>[.<etag>].parquet   one Hive-partitioned dataset (Athena, Glue, DuckDB)
//! packets_csv/date=YYYY-MM-DD/<id>[.<etag>].csv    the same rows as CSV
//! csv/<base>.csv                                    the AWS lab's src,dst,len,proto file
//! flows/date=YYYY-MM-DD/<id>[.<etag>].flows.parquet the capture's flows (a second dataset)
//! flows_csv/date=YYYY-MM-DD/<id>[.<etag>].flows.csv the same flows as CSV
//! dynamodb/<id>.json                                the summary item as DynamoDB JSON
//! ```
//!
//! `date` is the UTC day of the capture's first packet (the object's modification day when no
//! packet has a timestamp): a capture's partition follows its content, so converting the same
//! object again writes the same keys. `<id>` is the capture's name — `bucket/key` for S3
//! objects, the path below the input directory for local files — with `%` and `/` escaped as
//! `%25` and `%2F` (Hive's escaping) so that every capture is one file of its partition.
//! `<etag>` is the S3 object's ETag: two versions of an object never write the same key, so a
//! slow run on an old version cannot overwrite a newer result. `<base>` is the object's file
//! name without its last extension, as the lab named it.

use pcaplab_core::Format;
use pcaplab_core::encode::rfc3339_ns;

/// An output file of one capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Output {
    Data(Format),
    /// The summary item as a DynamoDB JSON line.
    DynamodbJson,
}

impl Output {
    pub fn name(self) -> &'static str {
        match self {
            Output::Data(f) => f.name(),
            Output::DynamodbJson => "dynamodb-json",
        }
    }

    /// The output named `parquet`, `csv`, `lab-csv`, `flows`, `flows-csv` or `dynamodb-json`.
    pub fn parse(name: &str) -> Option<Output> {
        match name {
            "dynamodb-json" => Some(Output::DynamodbJson),
            other => Format::parse(other).map(Output::Data),
        }
    }
}

/// Hive's escaping of a partition value or file name: `%`, `/`, control characters and a few
/// characters object stores dislike become `%XX`.
pub fn escape(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        if c == '%' || c == '/' || c == '\\' || c.is_ascii_control() {
            out.push_str(&format!("%{:02X}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// `YYYY-MM-DD` of a timestamp in ns since the epoch (UTC).
pub fn utc_date(ts_ns: i64) -> String {
    let s = rfc3339_ns(ts_ns);
    s.split('T').next().unwrap_or_default().to_owned()
}

/// The file name without its last extension (`x.pcap.gz` → `x.pcap`, `x.cap` → `x`).
pub fn base_name(file_name: &str) -> &str {
    match file_name.rsplit_once('.') {
        Some((base, _)) if !base.is_empty() => base,
        _ => file_name,
    }
}

/// Keeps an ETag's letters, digits and `-` (S3 quotes it; multipart ETags end in `-N`).
fn etag_part(etag: &str) -> String {
    etag.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

/// What names a capture's outputs.
#[derive(Clone, Debug)]
pub struct Naming<'a> {
    /// The capture's name (`bucket/key`, or the path below the input directory).
    pub id: &'a str,
    /// The object's file name.
    pub file_name: &'a str,
    pub etag: Option<&'a str>,
    /// `YYYY-MM-DD`.
    pub date: String,
}

/// The key of `output` relative to the output root.
pub fn key(output: Output, n: &Naming<'_>) -> String {
    let versioned = |dir: &str, ext: &str| {
        let mut k = format!("{dir}/date={}/{}", n.date, escape(n.id));
        if let Some(tag) = n.etag.map(etag_part).filter(|t| !t.is_empty()) {
            k.push('.');
            k.push_str(&tag);
        }
        k.push_str(ext);
        k
    };
    match output {
        Output::Data(Format::Parquet) => versioned("packets", ".parquet"),
        Output::Data(Format::Csv) => versioned("packets_csv", ".csv"),
        Output::Data(Format::LabCsv) => format!("csv/{}.csv", escape(base_name(n.file_name))),
        Output::Data(Format::Flows) => versioned("flows", ".flows.parquet"),
        Output::Data(Format::FlowsCsv) => versioned("flows_csv", ".flows.csv"),
        Output::DynamodbJson => format!("dynamodb/{}.json", escape(n.id)),
    }
}

/// The first part's marker in a packet output's key (see [`part_key`]).
const FIRST_PART: &str = ".part-00000.";

/// The key of range `index`'s file of a packet output (`parquet`, `csv`, `lab-csv`), for a
/// capture converted in byte ranges: the output's key with `.part-NNNNN` before its
/// extension, e.g. `packets/date=…/<id>[.<etag>].part-00003.parquet`. The parts sit side by
/// side in the partition, so that every reader of the dataset sees one table.
pub fn part_key(output: Output, n: &Naming<'_>, index: usize) -> String {
    let key = key(output, n);
    let ext = key.rfind('.').unwrap_or(key.len());
    format!("{}.part-{index:05}{}", &key[..ext], &key[ext..])
}

/// Every part's URL, given the first part's (the one an item lists) and how many there are;
/// any other URL alone.
pub fn part_urls(first: &str, parts: u64) -> Vec<String> {
    match first.rfind(FIRST_PART) {
        Some(at) if parts > 1 => (0..parts)
            .map(|i| {
                format!(
                    "{}.part-{i:05}.{}",
                    &first[..at],
                    &first[at + FIRST_PART.len()..]
                )
            })
            .collect(),
        _ => vec![first.to_owned()],
    }
}

/// An output's URL taken apart: the output root it was written under (ending in `/`, or empty
/// for a bare relative key), which output it is, and its key below the root — `None` if the
/// URL does not end in a key of the layout above.
///
/// The key is recognised from the right, by its shape (`packets/date=…/<file>.parquet`,
/// `csv/<file>.csv`, …), so a root may contain anything, even another layout's directories.
pub fn split_url(url: &str) -> Option<(&str, Output, &str)> {
    let dated = [
        ("packets", ".parquet", Output::Data(Format::Parquet)),
        ("packets_csv", ".csv", Output::Data(Format::Csv)),
        ("flows", ".flows.parquet", Output::Data(Format::Flows)),
        ("flows_csv", ".flows.csv", Output::Data(Format::FlowsCsv)),
    ];
    let flat = [
        ("csv", ".csv", Output::Data(Format::LabCsv)),
        ("dynamodb", ".json", Output::DynamodbJson),
    ];
    // A file name as the layout makes it: `<escaped name><ext>`, never `.` or `..`.
    let file_ok = |f: &str, ext: &str| f.len() > ext.len() && f.ends_with(ext) && f != "..";
    let root_at = |key_len: usize| {
        let root = &url[..url.len() - key_len];
        // `s3://` alone is a bucket name taken for a directory, not a root.
        (root.is_empty() || (root.ends_with('/') && !root.ends_with("://"))).then_some(root)
    };
    let mut parts = url.rsplitn(4, '/');
    let file = parts.next()?;
    let second = parts.next()?;
    if let Some(third) = parts.next()
        && let Some(date) = second.strip_prefix("date=")
        && !date.is_empty()
        && let Some(&(_, ext, output)) = dated.iter().find(|(dir, _, _)| *dir == third)
        && file_ok(file, ext)
    {
        let key_len = third.len() + second.len() + file.len() + 2;
        return root_at(key_len).map(|root| (root, output, &url[root.len()..]));
    }
    let &(_, ext, output) = flat.iter().find(|(dir, _, _)| *dir == second)?;
    if !file_ok(file, ext) {
        return None;
    }
    let root = root_at(second.len() + file.len() + 1)?;
    Some((root, output, &url[root.len()..]))
}

/// The output root of a dataset file's URL: the part before `packets/date=…` or
/// `flows/date=…` (or any other key of the layout), ending in `/`.
pub fn root_of(url: &str) -> Option<&str> {
    split_url(url).map(|(root, _, _)| root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let n = Naming {
            id: "bucket/in coming/x+y.pcap.gz",
            file_name: "x+y.pcap.gz",
            etag: Some("\"9b2cf535f27731c974343645a3985328-3\""),
            date: "2024-05-01".into(),
        };
        assert_eq!(
            key(Output::Data(Format::Parquet), &n),
            "packets/date=2024-05-01/bucket%2Fin coming%2Fx+y.pcap.gz.9b2cf535f27731c974343645a3985328-3.parquet"
        );
        assert_eq!(
            key(Output::Data(Format::Csv), &n),
            "packets_csv/date=2024-05-01/bucket%2Fin coming%2Fx+y.pcap.gz.9b2cf535f27731c974343645a3985328-3.csv"
        );
        assert_eq!(key(Output::Data(Format::LabCsv), &n), "csv/x+y.pcap.csv");
        assert_eq!(
            key(Output::Data(Format::Flows), &n),
            "flows/date=2024-05-01/bucket%2Fin coming%2Fx+y.pcap.gz.9b2cf535f27731c974343645a3985328-3.flows.parquet"
        );
        assert_eq!(
            key(Output::Data(Format::FlowsCsv), &n),
            "flows_csv/date=2024-05-01/bucket%2Fin coming%2Fx+y.pcap.gz.9b2cf535f27731c974343645a3985328-3.flows.csv"
        );
        assert_eq!(
            key(Output::DynamodbJson, &n),
            "dynamodb/bucket%2Fin coming%2Fx+y.pcap.gz.json"
        );
        let local = Naming {
            id: "sub/100%.cap",
            file_name: "100%.cap",
            etag: None,
            date: "1970-01-01".into(),
        };
        assert_eq!(
            key(Output::Data(Format::Parquet), &local),
            "packets/date=1970-01-01/sub%2F100%25.cap.parquet"
        );
        assert_eq!(key(Output::Data(Format::LabCsv), &local), "csv/100%25.csv");
    }

    #[test]
    fn parts_sit_beside_each_other_and_expand_from_the_first() {
        let n = Naming {
            id: "b/x.pcap",
            file_name: "x.pcap",
            etag: Some("\"e1\""),
            date: "2024-05-01".into(),
        };
        let first = part_key(Output::Data(Format::Parquet), &n, 0);
        assert_eq!(
            first,
            "packets/date=2024-05-01/b%2Fx.pcap.e1.part-00000.parquet"
        );
        assert_eq!(
            part_key(Output::Data(Format::LabCsv), &n, 12),
            "csv/x.part-00012.csv"
        );
        let url = format!("s3://o/{first}");
        assert_eq!(
            part_urls(&url, 3),
            [0, 1, 2].map(|i| format!(
                "s3://o/packets/date=2024-05-01/b%2Fx.pcap.e1.part-0000{i}.parquet"
            ))
        );
        // One part, or a URL that is not a first part: itself.
        assert_eq!(part_urls(&url, 1), std::slice::from_ref(&url));
        let whole = format!("s3://o/{}", key(Output::Data(Format::Parquet), &n));
        assert_eq!(part_urls(&whole, 3), std::slice::from_ref(&whole));
        // Every part is still recognised as its output.
        let third = part_urls(&url, 3).pop().expect("three parts");
        assert!(matches!(
            split_url(&third),
            Some(("s3://o/", Output::Data(Format::Parquet), _))
        ));
    }

    #[test]
    fn dates_and_base_names() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_714_608_000_000_000_000 - 1), "2024-05-01");
        assert_eq!(utc_date(-1), "1969-12-31");
        assert_eq!(base_name("lab.cap"), "lab");
        assert_eq!(base_name("lab.pcap.gz"), "lab.pcap");
        assert_eq!(base_name(".hidden"), ".hidden");
        assert_eq!(base_name("noext"), "noext");
    }

    #[test]
    fn roots_of_output_urls() {
        let n = Naming {
            id: "bucket/in/x.pcap",
            file_name: "x.pcap",
            etag: Some("\"abc\""),
            date: "2024-03-01".into(),
        };
        // Every key the layout makes splits back into its root and key, under any root.
        for root in [
            "out/",
            "/abs/dir/",
            "./",
            "",
            "s3://b-1/",
            "s3://b-1/p/q/",
            "s3://b-1/flows/date=2024-01-01/x/",
        ] {
            for output in [
                Output::Data(Format::Parquet),
                Output::Data(Format::Csv),
                Output::Data(Format::LabCsv),
                Output::Data(Format::Flows),
                Output::Data(Format::FlowsCsv),
                Output::DynamodbJson,
            ] {
                let k = key(output, &n);
                let url = format!("{root}{k}");
                assert_eq!(split_url(&url), Some((root, output, k.as_str())), "{url}");
                assert_eq!(root_of(&url), Some(root), "{url}");
            }
        }
        assert_eq!(
            root_of("out/flows/date=2024-03-01/lab-web.pcap.flows.parquet"),
            Some("out/")
        );
        assert_eq!(
            root_of(
                "s3://captures/packets/date=2024-03-01/captures%2Fin%2Flab web.pcap.0a1b.parquet"
            ),
            Some("s3://captures/")
        );
        // Not keys of the layout.
        for url in [
            "",
            "x.parquet",
            "out/packets/x.parquet",
            "out/packets/date=/x.parquet",
            "out/packets/date=2024-03-01/x.csv",
            "out/packets/date=2024-03-01/.parquet",
            "out/other/date=2024-03-01/x.parquet",
            "out/csv/x.parquet",
            "out/dynamodb/..",
            "/etc/passwd",
            "s3://packets/date=2024-03-01/x.parquet",
            "s3://csv/x.csv",
            "out/packets/date=2024-03-01/sub/x.parquet",
        ] {
            assert_eq!(split_url(url), None, "{url}");
        }
    }
}
