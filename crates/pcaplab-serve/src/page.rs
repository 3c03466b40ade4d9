//! The analyst page: server-rendered HTML with its charts as inline SVG, so there is no
//! front-end build and the page works without JavaScript (a few lines of script only reload
//! it when a notification arrives).

use std::fmt::Write as _;

use pcaplab_cloud::layout;
use pcaplab_core::human_bytes;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::Snapshot;
use crate::captures::{Capture, Count, Detail, Listing, NameCount, Talker, Timeline};
use crate::download::{flow_href, output_href};

/// Text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A capture's page: `/captures/<s3Id, percent-encoded as one path segment>`.
pub fn capture_href(id: &str) -> String {
    format!("/captures/{}", utf8_percent_encode(id, NON_ALPHANUMERIC))
}

/// 1234567 → "1,234,567".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn span(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1000.0)
    } else if seconds < 120.0 {
        format!("{seconds:.1} s")
    } else if seconds < 7200.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// "2024-03-01T12:00:05.086525000Z" → "2024-03-01 12:00:05".
fn when(ts: &str) -> String {
    let t = ts.get(..19).unwrap_or(ts);
    t.replace('T', " ")
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "–".into(), thousands)
}

const STYLE: &str = r#"
:root { color-scheme: light; --ink: #1d2430; --muted: #5c6878; --line: #d8dee6; --accent: #2f6fd0; }
body { font: 15px/1.45 system-ui, sans-serif; color: var(--ink); margin: 0 auto; max-width: 1100px; padding: 1rem 1.5rem 3rem; }
header { display: flex; align-items: baseline; gap: 1.5rem; border-bottom: 1px solid var(--line); margin-bottom: 1rem; }
header h1 { font-size: 1.4rem; margin: .5rem 0; } header h1 a { color: inherit; text-decoration: none; }
#last-updated { color: var(--muted); margin: 0; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
a { color: var(--accent); }
.status { font-weight: 600; } .status-ok { color: #1f7a3a; } .status-damaged { color: #a86200; } .status-failed { color: #b3261e; }
.muted { color: var(--muted); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; } dt { color: var(--muted); } dd { margin: 0; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 1rem 2rem; }
svg.chart { display: block; max-width: 100%; height: auto; }
svg.chart text { font: 12px system-ui, sans-serif; fill: var(--ink); }
svg.chart .axis { stroke: var(--line); }
rect.bar { fill: var(--accent); } rect.bar:hover { fill: #194f9f; }
code { font-size: .9em; word-break: break-all; }
"#;

fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"icon\" href=\"data:,\">\
         <title>{}</title><style>{STYLE}</style></head>\n",
        esc(title)
    )
}

fn header(snapshot: &Snapshot) -> String {
    let updated = match &snapshot.last_updated {
        Some(t) => format!("Updated on {}", esc(t)),
        None => "No update received yet".into(),
    };
    format!(
        "<header><h1><a href=\"/\">pcaplab</a></h1><p id=\"last-updated\">{updated}</p></header>\n"
    )
}

fn status(s: &str) -> String {
    format!("<span class=\"status status-{}\">{}</span>", esc(s), esc(s))
}

/// The front page: last update, recent notifications, and every capture.
pub fn index(snapshot: &Snapshot, listing: Result<&Listing, String>, source: &str) -> String {
    let mut h = head("pcaplab");
    let _ = write!(
        h,
        "<body data-version=\"{}\">\n{}",
        snapshot.version,
        header(snapshot)
    );

    h.push_str("<section><h2>Notifications</h2>\n");
    if snapshot.recent.is_empty() {
        h.push_str("<p class=\"muted\">None yet. Subscribe this server's <code>/sns</code> to the topic pcaplab announces on.</p>\n");
    } else {
        h.push_str("<table id=\"notifications\"><thead><tr><th>Received</th><th>Capture</th><th>Status</th><th class=\"n\">Packets</th><th>Topic</th></tr></thead><tbody>\n");
        for u in snapshot.recent.iter().rev().take(10) {
            let (capture, st, packets) = match &u.announcement {
                Some(a) => (
                    format!(
                        "<a href=\"{}\">{}</a>",
                        capture_href(&a.s3_id),
                        esc(&a.s3_id)
                    ),
                    a.status.as_deref().map(status).unwrap_or_default(),
                    opt(a.packets),
                ),
                None => (
                    format!("<span class=\"muted\">{}</span>", esc(&u.excerpt)),
                    String::new(),
                    String::new(),
                ),
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{capture}</td><td>{st}</td><td class=\"n\">{packets}</td><td><code>{}</code></td></tr>",
                esc(&u.received_at),
                esc(&u.topic_arn)
            );
        }
        h.push_str("</tbody></table>\n");
    }
    let _ = writeln!(
        h,
        "<p class=\"muted\">{} accepted, {} rejected (signature checks).</p></section>",
        thousands(snapshot.accepted),
        thousands(snapshot.rejected)
    );

    let _ = writeln!(h, "<section><h2>Captures</h2>");
    match listing {
        Err(e) => {
            let _ = writeln!(h, "<p class=\"status-failed\">{}</p>", esc(&e));
        }
        Ok(listing) => {
            let _ = writeln!(
                h,
                "<p class=\"muted\">{} from {}{}{}</p>",
                match listing.captures.len() {
                    1 => "1 capture".to_owned(),
                    n => format!("{} captures", thousands(n as u64)),
                },
                esc(source),
                if listing.truncated {
                    " (only the first ones read)"
                } else {
                    ""
                },
                match listing.unreadable {
                    0 => String::new(),
                    n => format!("; {n} unreadable item file(s), see the log"),
                }
            );
            h.push_str("<table id=\"captures\"><thead><tr><th>Capture</th><th>Status</th><th>First packet (UTC)</th><th class=\"n\">Span</th><th class=\"n\">Packets</th><th class=\"n\">Bytes</th><th>Processed (UTC)</th></tr></thead><tbody>\n");
            for c in &listing.captures {
                row(&mut h, c);
            }
            h.push_str("</tbody></table>\n");
        }
    }
    h.push_str("</section>\n");
    h.push_str(RELOAD_SCRIPT);
    h.push_str("</body></html>\n");
    h
}

/// Reload when `/api/updates` reports a new version (a notification arrived).
const RELOAD_SCRIPT: &str = r#"<script>
(() => {
  const seen = document.body.dataset.version;
  setInterval(async () => {
    try {
      const r = await fetch('/api/updates', { cache: 'no-store' });
      if (r.ok && String((await r.json()).version) !== seen) location.reload();
    } catch (_) { /* the server is away: try again later */ }
  }, 3000);
})();
</script>
"#;

fn row(h: &mut String, c: &Capture) {
    let reason = c
        .reason
        .as_deref()
        .map(|r| format!("<br><span class=\"muted\">{}</span>", esc(r)))
        .unwrap_or_default();
    let _ = writeln!(
        h,
        "<tr><td><a class=\"capture\" href=\"{}\">{}</a></td><td>{}{reason}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
        capture_href(&c.id),
        esc(&c.id),
        status(&c.status),
        c.first_ts.as_deref().map(when).unwrap_or_default(),
        c.duration_s.map(span).unwrap_or_default(),
        opt(c.packets),
        c.bytes.map(human_bytes).unwrap_or_default(),
        c.processed_at.as_deref().map(when).unwrap_or_default(),
    );
}

/// One capture: its summary and four charts.
pub fn capture(snapshot: &Snapshot, d: &Detail) -> String {
    let c = &d.capture;
    let mut h = head(&format!("{} — pcaplab", c.id));
    let _ = write!(h, "<body>\n{}", header(snapshot));
    let _ = writeln!(h, "<h2>{}</h2>\n<dl>", esc(&c.id));
    let mut field = |name: &str, value: String| {
        if !value.is_empty() {
            let _ = writeln!(h, "<dt>{name}</dt><dd>{value}</dd>");
        }
    };
    field("Status", status(&c.status));
    field("Reason", c.reason.as_deref().map(esc).unwrap_or_default());
    field(
        "Format",
        [d.capture_format.as_deref(), d.compression.as_deref()]
            .into_iter()
            .flatten()
            .map(esc)
            .collect::<Vec<_>>()
            .join(", "),
    );
    field("Packets", opt(c.packets));
    field(
        "Bytes captured",
        c.bytes.map(human_bytes).unwrap_or_default(),
    );
    field(
        "First packet",
        c.first_ts.as_deref().map(esc).unwrap_or_default(),
    );
    field(
        "Last packet",
        c.last_ts.as_deref().map(esc).unwrap_or_default(),
    );
    field("Span", c.duration_s.map(span).unwrap_or_default());
    field(
        "Decode errors",
        d.decode_errors.map(thousands).unwrap_or_default(),
    );
    let listed = |counts: &[Count]| {
        counts
            .iter()
            .map(|l| format!("{} ({})", esc(&l.name), thousands(l.packets)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    field("Link types", listed(&d.link_types));
    field("Tunnels (packets)", listed(&d.tunnels));
    field("Services (flows)", listed(&d.services));
    // Counter names are identifiers (`timed_out`): shown as words.
    field(
        "Fragmented datagrams",
        listed(&d.fragments).replace('_', " "),
    );
    field(
        "Processed",
        c.processed_at.as_deref().map(esc).unwrap_or_default(),
    );
    // Local dataset files are served (by format); S3 objects, and anything else, are named.
    field(
        "Outputs",
        d.outputs
            .iter()
            .map(|(k, v)| {
                let served = !v.starts_with("s3://")
                    && layout::split_url(v).is_some_and(|(_, output, _)| output.name() == k);
                if !served {
                    format!("{}: <code>{}</code>", esc(k), esc(v))
                } else {
                    format!(
                        "<a class=\"output\" href=\"{}\" download>{}</a>: <code>{}</code>",
                        esc(&output_href(&c.id, k)),
                        esc(k),
                        esc(v)
                    )
                }
            })
            .collect::<Vec<_>>()
            .join("<br>"),
    );
    h.push_str("</dl>\n<div class=\"charts\">\n");
    let protocols: Vec<Bar> = d
        .protocols
        .iter()
        .map(|p| Bar::packets(&p.name, p))
        .collect();
    chart(&mut h, "Protocol mix", "protocols", &bars(&protocols));
    let talkers_title = if d.talkers_approximate {
        "Top talkers (approximate)"
    } else {
        "Top talkers"
    };
    let talkers: Vec<Bar> = d.top_talkers.iter().map(Bar::talker).collect();
    chart(&mut h, talkers_title, "talkers", &bars(&talkers));
    let ports: Vec<Bar> = d
        .top_ports
        .iter()
        .map(|p| Bar::packets(&p.name, p))
        .collect();
    chart(&mut h, "Top ports", "ports", &bars(&ports));
    chart(
        &mut h,
        "Packets over time",
        "timeline",
        &d.timeline.as_ref().map(timeline).unwrap_or_default(),
    );
    for (title, kind, names) in [
        ("Top DNS names", "dns", &d.top_dns_names),
        ("Top TLS server names", "sni", &d.top_tls_sni),
        ("Top HTTP hosts", "http", &d.top_http_hosts),
    ] {
        if !names.is_empty() {
            let items: Vec<Bar> = names.iter().map(Bar::name).collect();
            chart(&mut h, title, kind, &bars(&items));
        }
    }
    h.push_str("</div>\n");
    flows_table(&mut h, d);
    h.push_str("<p><a href=\"/\">All captures</a></p>\n</body></html>\n");
    h
}

/// The biggest flows: who talked to whom, how much, for how long, about what.
fn flows_table(h: &mut String, d: &Detail) {
    let Some(total) = d.flows else { return };
    let evicted = match d.flows_evicted {
        Some(n) if n > 0 => format!(
            ", {} written early: the flow memory budget was reached",
            thousands(n)
        ),
        _ => String::new(),
    };
    let _ = writeln!(
        h,
        "<h2>Top flows <span class=\"muted\">({} flows in all{evicted})</span></h2>",
        thousands(total)
    );
    if d.top_flows.is_empty() {
        return;
    }
    // A flow's packets can be cut out of the capture when its flow table was written.
    let downloads = d.outputs.contains_key("flows");
    if !downloads {
        h.push_str("<p class=\"muted\">Convert the capture with flows among the formats (the default) to download a flow's packets.</p>\n");
    }
    let _ = writeln!(
        h,
        "<table id=\"flows\"><thead><tr><th>Originator</th><th>Responder</th><th>Proto</th><th>State</th><th class=\"n\">Packets</th><th class=\"n\">Bytes</th><th class=\"n\">Duration</th><th>Server name</th>{}</tr></thead><tbody>",
        if downloads { "<th></th>" } else { "" }
    );
    let endpoint = |a: &str, p: Option<u16>| match p {
        Some(p) if a.contains(':') => format!("[{}]:{p}", esc(a)),
        Some(p) => format!("{}:{p}", esc(a)),
        None => esc(a),
    };
    for f in &d.top_flows {
        let download = if downloads {
            format!(
                "<td><a class=\"flow-pcap\" href=\"{}\" download>Download pcap</a></td>",
                esc(&flow_href(&d.capture.id, &f.community_id))
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            h,
            "<tr title=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td>{download}</tr>",
            esc(&f.community_id),
            endpoint(&f.src, f.src_port),
            endpoint(&f.dst, f.dst_port),
            esc(&f.proto),
            esc(&f.conn_state),
            thousands(f.packets),
            human_bytes(f.bytes),
            f.duration_s.map(span).unwrap_or_default(),
            f.server_name.as_deref().map(esc).unwrap_or_default(),
        );
    }
    h.push_str("</tbody></table>\n");
}

/// A page for a capture that is not there, or a source that failed.
pub fn message(snapshot: &Snapshot, title: &str, text: &str) -> String {
    let mut h = head(&format!("{title} — pcaplab"));
    let _ = write!(
        h,
        "<body>\n{}<h2>{}</h2><p>{}</p><p><a href=\"/\">All captures</a></p></body></html>\n",
        header(snapshot),
        esc(title),
        esc(text)
    );
    h
}

fn chart(h: &mut String, title: &str, kind: &str, svg_body: &(u32, String)) {
    let (height, body) = svg_body;
    let (height, body) = if body.is_empty() {
        (
            40,
            "<text x=\"0\" y=\"24\" class=\"muted\">no data</text>".to_owned(),
        )
    } else {
        (*height, body.clone())
    };
    let _ = writeln!(
        h,
        "<figure><figcaption><h2>{title}</h2></figcaption>\
         <svg class=\"chart\" data-chart=\"{kind}\" role=\"img\" aria-label=\"{title}\" \
         viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\">{body}</svg></figure>"
    );
}

const WIDTH: u32 = 520;
const LABEL_W: u32 = 150;
const VALUE_W: u32 = 110;
const ROW_H: u32 = 22;

struct Bar {
    label: String,
    value: u64,
    text: String,
    tooltip: String,
}

impl Bar {
    fn packets(label: &str, c: &Count) -> Bar {
        Bar {
            label: label.to_owned(),
            value: c.packets,
            text: thousands(c.packets),
            tooltip: format!("{label}: {} packets", thousands(c.packets)),
        }
    }

    fn name(n: &NameCount) -> Bar {
        Bar {
            label: n.name.clone(),
            value: n.count,
            text: thousands(n.count),
            tooltip: format!("{}: {}", n.name, thousands(n.count)),
        }
    }

    fn talker(t: &Talker) -> Bar {
        Bar {
            label: t.addr.clone(),
            value: t.packets,
            text: thousands(t.packets),
            tooltip: format!(
                "{}: {} packets, {}",
                t.addr,
                thousands(t.packets),
                human_bytes(t.bytes)
            ),
        }
    }
}

/// Horizontal bars, biggest first as given; (height, SVG content).
fn bars(items: &[Bar]) -> (u32, String) {
    let Some(max) = items.iter().map(|b| b.value).max().filter(|m| *m > 0) else {
        return (0, String::new());
    };
    let plot = f64::from(WIDTH - LABEL_W - VALUE_W);
    let mut s = String::new();
    for (i, b) in items.iter().enumerate() {
        let y = i as u32 * ROW_H;
        // A non-zero count always shows at least a sliver.
        let w = (b.value as f64 / max as f64 * plot).max(if b.value > 0 { 1.5 } else { 0.0 });
        let label = if b.label.chars().count() > 22 {
            format!("{}…", b.label.chars().take(21).collect::<String>())
        } else {
            b.label.clone()
        };
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect class=\"bar\" x=\"{LABEL_W}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\"><title>{}</title></rect>\
             <text x=\"{:.1}\" y=\"{}\">{}</text>",
            LABEL_W - 6,
            y + 15,
            esc(&label),
            y + 3,
            ROW_H - 6,
            esc(&b.tooltip),
            f64::from(LABEL_W) + w + 5.0,
            y + 15,
            esc(&b.text),
        );
    }
    // At least three rows high, so short charts line up with their neighbours.
    (items.len().max(3) as u32 * ROW_H, s)
}

/// Packets per bucket as vertical bars, with the time axis labelled at both ends.
fn timeline(t: &Timeline) -> (u32, String) {
    const H: u32 = 200;
    const TOP: u32 = 16;
    const BOTTOM: u32 = 36;
    const LEFT: u32 = 56;
    let n = t.packets.len();
    let Some(max) = t.packets.iter().copied().max().filter(|m| *m > 0) else {
        return (0, String::new());
    };
    let plot_w = f64::from(WIDTH - LEFT - 8);
    let plot_h = f64::from(H - TOP - BOTTOM);
    let step = plot_w / n as f64;
    let mut s = String::new();
    let base = H - BOTTOM;
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>",
        WIDTH - 8,
        LEFT - 6,
        TOP + 4,
        thousands(max),
        LEFT - 6,
        base,
    );
    for (i, &p) in t.packets.iter().enumerate() {
        if p == 0 {
            continue;
        }
        let h = (p as f64 / max as f64 * plot_h).max(1.5);
        let bytes = t.bytes.get(i).copied().unwrap_or(0);
        let _ = write!(
            s,
            "<rect class=\"bar\" x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{h:.2}\"><title>+{} ms: {} packets, {}</title></rect>",
            f64::from(LEFT) + i as f64 * step,
            f64::from(base) - h,
            (step * 0.9).max(0.5),
            thousands(i as u64 * t.bucket_ms),
            thousands(p),
            human_bytes(bytes),
        );
    }
    let total_ms = n as u64 * t.bucket_ms;
    let _ = write!(
        s,
        "<text x=\"{LEFT}\" y=\"{}\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">+{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"muted\">{} buckets of {}</text>",
        base + 16,
        esc(&when(&t.start)),
        WIDTH - 8,
        base + 16,
        span(total_ms as f64 / 1000.0),
        f64::from(LEFT) + plot_w / 2.0,
        base + 32,
        n,
        span(t.bucket_ms as f64 / 1000.0),
    );
    (H, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(capture_href("b/k x+.pcap"), "/captures/b%2Fk%20x%2B%2Epcap");
        assert_eq!(
            when("2024-03-01T12:00:05.086525000Z"),
            "2024-03-01 12:00:05"
        );
    }

    #[test]
    fn bar_chart_scales_and_escapes() {
        let items = [
            Bar::packets(
                "tcp",
                &Count {
                    name: "tcp".into(),
                    packets: 100,
                },
            ),
            Bar::packets(
                "<udp>",
                &Count {
                    name: "<udp>".into(),
                    packets: 1,
                },
            ),
        ];
        let (h, svg) = bars(&items);
        assert_eq!(h, 3 * ROW_H);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 2);
        assert!(svg.contains("width=\"260.0\""), "{svg}");
        assert!(svg.contains("&lt;udp&gt;") && !svg.contains("<udp>"));
        assert_eq!(bars(&[]).1, "");
    }
}
