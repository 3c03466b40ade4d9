//! The one Arrow schema every output is encoded from, and the chunk → `RecordBatch` builder.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    BooleanBuilder, ListBuilder, PrimitiveBuilder, StringBuilder, TimestampNanosecondBuilder,
    UInt16Builder,
};
use arrow_array::types::{UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::app::{AppFields, app_fields};
use crate::dissect::{Addr, Packet, dissect};
use crate::flows::{ChunkFlows, FlowConfig, Seen};
use crate::reader::{Chunk, NO_TIMESTAMP};
use crate::summary::{Counter, Summary};

/// Column names, in schema order.
pub mod col {
    pub const CAPTURE: &str = "capture";
    pub const FRAME_NUMBER: &str = "frame_number";
    pub const TS: &str = "ts";
    pub const INTERFACE_ID: &str = "interface_id";
    pub const LINK_TYPE: &str = "link_type";
    pub const CAP_LEN: &str = "cap_len";
    pub const WIRE_LEN: &str = "wire_len";
    pub const SRC_MAC: &str = "src_mac";
    pub const DST_MAC: &str = "dst_mac";
    pub const ETHERTYPE: &str = "ethertype";
    pub const VLAN_IDS: &str = "vlan_ids";
    pub const IP_VERSION: &str = "ip_version";
    pub const SRC_IP: &str = "src_ip";
    pub const DST_IP: &str = "dst_ip";
    pub const IP_PROTO: &str = "ip_proto";
    pub const IP_LEN: &str = "ip_len";
    pub const TTL: &str = "ttl";
    pub const FRAG_OFFSET: &str = "frag_offset";
    pub const MORE_FRAGMENTS: &str = "more_fragments";
    pub const SRC_PORT: &str = "src_port";
    pub const DST_PORT: &str = "dst_port";
    pub const TCP_FLAGS: &str = "tcp_flags";
    pub const ICMP_TYPE: &str = "icmp_type";
    pub const ICMP_CODE: &str = "icmp_code";
    pub const PAYLOAD_LEN: &str = "payload_len";
    pub const DNS_QNAME: &str = "dns_qname";
    pub const DNS_QTYPE: &str = "dns_qtype";
    pub const DNS_RCODE: &str = "dns_rcode";
    pub const DNS_ANSWERS: &str = "dns_answers";
    pub const TLS_SNI: &str = "tls_sni";
    pub const TLS_JA3: &str = "tls_ja3";
    pub const HTTP_METHOD: &str = "http_method";
    pub const HTTP_HOST: &str = "http_host";
    pub const HTTP_URI: &str = "http_uri";
    pub const DECODE_ERROR: &str = "decode_error";
}

/// The packet schema shared by Parquet and CSV (see the README for each column's meaning).
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(SCHEMA.get_or_init(|| {
        let f = |name: &str, t: DataType, nullable: bool| Field::new(name, t, nullable);
        Arc::new(Schema::new(vec![
            f(col::CAPTURE, DataType::Utf8, false),
            f(col::FRAME_NUMBER, DataType::UInt64, false),
            f(
                col::TS,
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                true,
            ),
            f(col::INTERFACE_ID, DataType::UInt32, false),
            f(col::LINK_TYPE, DataType::UInt16, false),
            f(col::CAP_LEN, DataType::UInt32, false),
            f(col::WIRE_LEN, DataType::UInt32, false),
            f(col::SRC_MAC, DataType::Utf8, true),
            f(col::DST_MAC, DataType::Utf8, true),
            f(col::ETHERTYPE, DataType::UInt16, true),
            f(
                col::VLAN_IDS,
                DataType::List(Arc::new(Field::new_list_field(DataType::UInt16, false))),
                true,
            ),
            f(col::IP_VERSION, DataType::UInt8, true),
            f(col::SRC_IP, DataType::Utf8, true),
            f(col::DST_IP, DataType::Utf8, true),
            f(col::IP_PROTO, DataType::UInt8, true),
            f(col::IP_LEN, DataType::UInt32, true),
            f(col::TTL, DataType::UInt8, true),
            f(col::FRAG_OFFSET, DataType::UInt16, true),
            f(col::MORE_FRAGMENTS, DataType::Boolean, true),
            f(col::SRC_PORT, DataType::UInt16, true),
            f(col::DST_PORT, DataType::UInt16, true),
            f(col::TCP_FLAGS, DataType::UInt16, true),
            f(col::ICMP_TYPE, DataType::UInt8, true),
            f(col::ICMP_CODE, DataType::UInt8, true),
            f(col::PAYLOAD_LEN, DataType::UInt32, true),
            f(col::DNS_QNAME, DataType::Utf8, true),
            f(col::DNS_QTYPE, DataType::UInt16, true),
            f(col::DNS_RCODE, DataType::UInt8, true),
            f(
                col::DNS_ANSWERS,
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, false))),
                true,
            ),
            f(col::TLS_SNI, DataType::Utf8, true),
            f(col::TLS_JA3, DataType::Utf8, true),
            f(col::HTTP_METHOD, DataType::Utf8, true),
            f(col::HTTP_HOST, DataType::Utf8, true),
            f(col::HTTP_URI, DataType::Utf8, true),
            f(col::DECODE_ERROR, DataType::Utf8, true),
        ]))
    }))
}

/// A decoded chunk: its rows and their statistics.
pub struct Decoded {
    pub batch: RecordBatch,
    pub summary: Summary,
    /// The chunk's flows, when asked for.
    pub flows: Option<ChunkFlows>,
}

/// Text of addresses, formatted into a stack buffer (no allocation per packet).
pub(crate) struct TextBuf {
    buf: [u8; 64],
    len: usize,
}

impl TextBuf {
    pub(crate) fn new() -> Self {
        TextBuf {
            buf: [0; 64],
            len: 0,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII is ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    fn push(&mut self, b: u8) {
        if self.len < self.buf.len() {
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    fn push_dec(&mut self, v: u8) {
        if v >= 100 {
            self.push(b'0' + v / 100);
        }
        if v >= 10 {
            self.push(b'0' + (v / 10) % 10);
        }
        self.push(b'0' + v % 10);
    }

    pub(crate) fn mac(&mut self, m: &[u8; 6]) -> &str {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.len = 0;
        for (i, b) in m.iter().enumerate() {
            if i > 0 {
                self.push(b':');
            }
            self.push(HEX[usize::from(b >> 4)]);
            self.push(HEX[usize::from(b & 0xf)]);
        }
        self.as_str()
    }

    pub(crate) fn ipv4(&mut self, a: &[u8; 4]) -> &str {
        self.len = 0;
        for (i, b) in a.iter().enumerate() {
            if i > 0 {
                self.push(b'.');
            }
            self.push_dec(*b);
        }
        self.as_str()
    }

    pub(crate) fn addr(&mut self, a: &Addr) -> &str {
        match a {
            Addr::V4(v4) => self.ipv4(v4),
            Addr::V6(v6) => {
                use std::fmt::Write;
                self.len = 0;
                let _ = write!(self, "{}", std::net::Ipv6Addr::from(*v6));
                self.as_str()
            }
        }
    }
}

impl std::fmt::Write for TextBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for b in s.bytes() {
            self.push(b);
        }
        Ok(())
    }
}

struct Builders {
    frame_number: PrimitiveBuilder<UInt64Type>,
    ts: TimestampNanosecondBuilder,
    interface_id: PrimitiveBuilder<UInt32Type>,
    link_type: PrimitiveBuilder<UInt16Type>,
    cap_len: PrimitiveBuilder<UInt32Type>,
    wire_len: PrimitiveBuilder<UInt32Type>,
    src_mac: StringBuilder,
    dst_mac: StringBuilder,
    ethertype: PrimitiveBuilder<UInt16Type>,
    vlan_ids: ListBuilder<UInt16Builder>,
    ip_version: PrimitiveBuilder<UInt8Type>,
    src_ip: StringBuilder,
    dst_ip: StringBuilder,
    ip_proto: PrimitiveBuilder<UInt8Type>,
    ip_len: PrimitiveBuilder<UInt32Type>,
    ttl: PrimitiveBuilder<UInt8Type>,
    frag_offset: PrimitiveBuilder<UInt16Type>,
    more_fragments: BooleanBuilder,
    src_port: PrimitiveBuilder<UInt16Type>,
    dst_port: PrimitiveBuilder<UInt16Type>,
    tcp_flags: PrimitiveBuilder<UInt16Type>,
    icmp_type: PrimitiveBuilder<UInt8Type>,
    icmp_code: PrimitiveBuilder<UInt8Type>,
    payload_len: PrimitiveBuilder<UInt32Type>,
    dns_qname: StringBuilder,
    dns_qtype: PrimitiveBuilder<UInt16Type>,
    dns_rcode: PrimitiveBuilder<UInt8Type>,
    dns_answers: ListBuilder<StringBuilder>,
    tls_sni: StringBuilder,
    tls_ja3: StringBuilder,
    http_method: StringBuilder,
    http_host: StringBuilder,
    http_uri: StringBuilder,
    decode_error: StringBuilder,
}

impl Builders {
    fn with_capacity(n: usize) -> Self {
        let strings = || StringBuilder::with_capacity(n, n * 17);
        Builders {
            frame_number: PrimitiveBuilder::with_capacity(n),
            ts: TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC"),
            interface_id: PrimitiveBuilder::with_capacity(n),
            link_type: PrimitiveBuilder::with_capacity(n),
            cap_len: PrimitiveBuilder::with_capacity(n),
            wire_len: PrimitiveBuilder::with_capacity(n),
            src_mac: strings(),
            dst_mac: strings(),
            ethertype: PrimitiveBuilder::with_capacity(n),
            vlan_ids: ListBuilder::with_capacity(UInt16Builder::new(), n)
                .with_field(Arc::new(Field::new_list_field(DataType::UInt16, false))),
            ip_version: PrimitiveBuilder::with_capacity(n),
            src_ip: strings(),
            dst_ip: strings(),
            ip_proto: PrimitiveBuilder::with_capacity(n),
            ip_len: PrimitiveBuilder::with_capacity(n),
            ttl: PrimitiveBuilder::with_capacity(n),
            frag_offset: PrimitiveBuilder::with_capacity(n),
            more_fragments: BooleanBuilder::with_capacity(n),
            src_port: PrimitiveBuilder::with_capacity(n),
            dst_port: PrimitiveBuilder::with_capacity(n),
            tcp_flags: PrimitiveBuilder::with_capacity(n),
            icmp_type: PrimitiveBuilder::with_capacity(n),
            icmp_code: PrimitiveBuilder::with_capacity(n),
            payload_len: PrimitiveBuilder::with_capacity(n),
            dns_qname: StringBuilder::new(),
            dns_qtype: PrimitiveBuilder::with_capacity(n),
            dns_rcode: PrimitiveBuilder::with_capacity(n),
            dns_answers: ListBuilder::new(StringBuilder::new())
                .with_field(Arc::new(Field::new_list_field(DataType::Utf8, false))),
            tls_sni: StringBuilder::new(),
            tls_ja3: StringBuilder::new(),
            http_method: StringBuilder::new(),
            http_host: StringBuilder::new(),
            http_uri: StringBuilder::new(),
            decode_error: StringBuilder::new(),
        }
    }
}

/// Dissect every frame of `chunk` and build its columns (and statistics).
///
/// The builders produce exactly the schema's types and lengths, so an error here is a bug;
/// it is returned, never turned into a missing or empty batch.
pub fn decode_chunk(capture: &str, chunk: &Chunk) -> Result<Decoded, ArrowError> {
    decode_chunk_with(capture, chunk, None)
}

/// [`decode_chunk`], also folding the frames into the chunk's flows when `flows` is set.
pub fn decode_chunk_with(
    capture: &str,
    chunk: &Chunk,
    flows: Option<&FlowConfig>,
) -> Result<Decoded, ArrowError> {
    let n = chunk.frames.len();
    let mut b = Builders::with_capacity(n);
    let mut counter = Counter::new();
    let mut p = Packet::default();
    let mut app = AppFields::default();
    let mut text = TextBuf::new();
    let mut chunk_flows = flows.map(|_| ChunkFlows::default());
    for (i, f) in chunk.frames.iter().enumerate() {
        let data = chunk.frame_data(f);
        let frame = chunk.first_frame + i as u64;
        dissect(f.link_type, data, &mut p);
        let has_app = match (p.ip, p.src_port, p.dst_port, p.payload) {
            (Some(ip), Some(sp), Some(dp), Some((off, len))) => {
                app_fields(ip.proto, sp, dp, &data[off..off + len], &mut app)
            }
            _ => {
                app.clear();
                false
            }
        };
        counter.add(f, &p);
        if has_app {
            counter.add_app(&app);
        }
        if let (Some(cfg), Some(table)) = (flows, &mut chunk_flows) {
            let seen = Seen {
                frame,
                ts: f.ts_ns,
                wire_len: f.wire_len,
                payload_len: p.payload_len.unwrap_or(0),
                tcp_flags: p.tcp_flags,
                server_name: app
                    .tls_sni
                    .as_deref()
                    .or(app.http_host.as_deref())
                    .or(app.dns_qname.as_deref().filter(|_| app.dns_rcode.is_none())),
            };
            table.add(cfg, f, &p, &seen);
        }
        b.frame_number.append_value(frame);
        if f.ts_ns == NO_TIMESTAMP {
            b.ts.append_null();
        } else {
            b.ts.append_value(f.ts_ns);
        }
        b.interface_id.append_value(f.interface_id);
        b.link_type.append_value(f.link_type);
        b.cap_len.append_value(f.cap_len);
        b.wire_len.append_value(f.wire_len);
        match &p.src_mac {
            Some(m) => b.src_mac.append_value(text.mac(m)),
            None => b.src_mac.append_null(),
        }
        match &p.dst_mac {
            Some(m) => b.dst_mac.append_value(text.mac(m)),
            None => b.dst_mac.append_null(),
        }
        b.ethertype.append_option(p.ethertype);
        if p.vlan_count > 0 {
            b.vlan_ids.values().append_slice(p.vlans());
            b.vlan_ids.append(true);
        } else {
            b.vlan_ids.append_null();
        }
        match &p.ip {
            Some(ip) => {
                b.ip_version.append_value(ip.version);
                b.src_ip.append_value(text.addr(&ip.src));
                b.dst_ip.append_value(text.addr(&ip.dst));
                b.ip_proto.append_value(ip.proto);
                b.ip_len.append_value(ip.len);
                b.ttl.append_value(ip.ttl);
                b.frag_offset.append_value(ip.frag_offset);
                b.more_fragments.append_value(ip.more_fragments);
            }
            None => {
                b.ip_version.append_null();
                b.src_ip.append_null();
                b.dst_ip.append_null();
                b.ip_proto.append_null();
                b.ip_len.append_null();
                b.ttl.append_null();
                b.frag_offset.append_null();
                b.more_fragments.append_null();
            }
        }
        b.src_port.append_option(p.src_port);
        b.dst_port.append_option(p.dst_port);
        b.tcp_flags.append_option(p.tcp_flags);
        b.icmp_type.append_option(p.icmp_type);
        b.icmp_code.append_option(p.icmp_code);
        b.payload_len.append_option(p.payload_len);
        b.dns_qname.append_option(app.dns_qname.as_deref());
        b.dns_qtype.append_option(app.dns_qtype);
        b.dns_rcode.append_option(app.dns_rcode);
        if app.dns_rcode.is_some() {
            for a in &app.dns_answers {
                b.dns_answers.values().append_value(a);
            }
            b.dns_answers.append(true);
        } else {
            b.dns_answers.append_null();
        }
        b.tls_sni.append_option(app.tls_sni.as_deref());
        b.tls_ja3.append_option(app.tls_ja3.as_deref());
        b.http_method.append_option(app.http_method.as_deref());
        b.http_host.append_option(app.http_host.as_deref());
        b.http_uri.append_option(app.http_uri.as_deref());
        b.decode_error.append_option(p.error);
    }
    let capture: ArrayRef = Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
        capture, n,
    )));
    let columns: Vec<ArrayRef> = vec![
        capture,
        Arc::new(b.frame_number.finish()),
        Arc::new(b.ts.finish()),
        Arc::new(b.interface_id.finish()),
        Arc::new(b.link_type.finish()),
        Arc::new(b.cap_len.finish()),
        Arc::new(b.wire_len.finish()),
        Arc::new(b.src_mac.finish()),
        Arc::new(b.dst_mac.finish()),
        Arc::new(b.ethertype.finish()),
        Arc::new(b.vlan_ids.finish()),
        Arc::new(b.ip_version.finish()),
        Arc::new(b.src_ip.finish()),
        Arc::new(b.dst_ip.finish()),
        Arc::new(b.ip_proto.finish()),
        Arc::new(b.ip_len.finish()),
        Arc::new(b.ttl.finish()),
        Arc::new(b.frag_offset.finish()),
        Arc::new(b.more_fragments.finish()),
        Arc::new(b.src_port.finish()),
        Arc::new(b.dst_port.finish()),
        Arc::new(b.tcp_flags.finish()),
        Arc::new(b.icmp_type.finish()),
        Arc::new(b.icmp_code.finish()),
        Arc::new(b.payload_len.finish()),
        Arc::new(b.dns_qname.finish()),
        Arc::new(b.dns_qtype.finish()),
        Arc::new(b.dns_rcode.finish()),
        Arc::new(b.dns_answers.finish()),
        Arc::new(b.tls_sni.finish()),
        Arc::new(b.tls_ja3.finish()),
        Arc::new(b.http_method.finish()),
        Arc::new(b.http_host.finish()),
        Arc::new(b.http_uri.finish()),
        Arc::new(b.decode_error.finish()),
    ];
    Ok(Decoded {
        batch: RecordBatch::try_new(schema(), columns)?,
        summary: counter.finish(),
        flows: chunk_flows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_formats() {
        let mut t = TextBuf::new();
        assert_eq!(
            t.mac(&[0, 0x1b, 0xab, 0xcd, 0xef, 0xff]),
            "00:1b:ab:cd:ef:ff"
        );
        assert_eq!(t.ipv4(&[192, 168, 0, 255]), "192.168.0.255");
        assert_eq!(t.ipv4(&[0, 10, 100, 9]), "0.10.100.9");
        let v6 = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(t.addr(&Addr::V6(v6)), "2001:db8::1");
    }

    #[test]
    fn empty_chunk_gives_empty_batch_with_schema() {
        let d = decode_chunk("x", &Chunk::default()).expect("decode");
        assert_eq!(d.batch.num_rows(), 0);
        assert_eq!(d.batch.schema(), schema());
    }
}
