//! `pcaplab inspect`: a capinfos-like summary per file, on stdout.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use pcaplab_core::summary::{ip_proto_name, link_type_name};
use pcaplab_core::{Compression, Outputs, Report};

use crate::InspectArgs;
use pcaplab_core::human_bytes;

fn render(path: &str, r: &Report) -> String {
    let s = &r.summary;
    let mut o = String::new();
    let format = match r.compression {
        Compression::None => r.format.as_str().to_owned(),
        c => format!("{} ({}-compressed)", r.format.as_str(), c.as_str()),
    };
    let _ = writeln!(o, "File:            {path}");
    let _ = writeln!(o, "Format:          {format}");
    let links: Vec<String> = s
        .link_types
        .iter()
        .map(|(l, n)| match link_type_name(*l) {
            Some(name) => format!("{name} ({l}): {n}"),
            None => format!("{l}: {n}"),
        })
        .collect();
    let _ = writeln!(o, "Link types:      {}", links.join(", "));
    let _ = writeln!(o, "Packets:         {}", s.packets);
    let _ = writeln!(
        o,
        "Captured bytes:  {} ({})",
        s.cap_bytes,
        human_bytes(s.cap_bytes)
    );
    let _ = writeln!(
        o,
        "Wire bytes:      {} ({})",
        s.wire_bytes,
        human_bytes(s.wire_bytes)
    );
    if let (Some(first), Some(last)) = (s.first_ts, s.last_ts) {
        let _ = writeln!(
            o,
            "First packet:    {}",
            pcaplab_core::encode::rfc3339_ns(first)
        );
        let _ = writeln!(
            o,
            "Last packet:     {}",
            pcaplab_core::encode::rfc3339_ns(last)
        );
        let span = (last as i128 - first as i128) as f64 / 1e9;
        let _ = writeln!(o, "Duration:        {span:.9} s");
    }
    let net: Vec<String> = s.network.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(o, "Network:         {}", net.join(", "));
    let mut protos: Vec<(&u8, &u64)> = s.ip_protos.iter().collect();
    protos.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let protos: Vec<String> = protos
        .into_iter()
        .map(|(p, n)| match ip_proto_name(*p) {
            Some(name) => format!("{name} {n}"),
            None => format!("proto-{p} {n}"),
        })
        .collect();
    let _ = writeln!(o, "IP protocols:    {}", protos.join(", "));
    let _ = writeln!(o, "Decode errors:   {}", s.decode_errors);
    if s.quic_initials > 0 || s.quic_undecryptable > 0 {
        let _ = writeln!(
            o,
            "QUIC Initials:   {} decrypted, {} undecryptable",
            s.quic_initials, s.quic_undecryptable
        );
    }
    if let Some(d) = &r.damage {
        let _ = writeln!(o, "Damaged:         {d}");
    }
    o
}

pub fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let engine = args.engine.build()?;
    let mut failed = false;
    let mut stdout = io::stdout().lock();
    for (i, path) in args.files.iter().enumerate() {
        let shown = path.display().to_string();
        let result = File::open(path)
            .with_context(|| shown.clone())
            .and_then(|f| {
                engine
                    .convert(&shown, Box::new(f), Outputs::default())
                    .map_err(anyhow::Error::new)
            });
        match result {
            Ok(report) => {
                if i > 0 {
                    writeln!(stdout)?;
                }
                stdout.write_all(render(&shown, &report).as_bytes())?;
                failed |= report.damage.is_some();
            }
            Err(e) => {
                stdout.flush()?;
                let line = match e.downcast_ref::<pcaplab_core::ConvertError>() {
                    Some(c) => pcaplab_cloud::job::describe_convert(&shown, c),
                    None => format!("{e:#}"),
                };
                let _ = writeln!(io::stderr(), "pcaplab: {line}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
