//! The one Arrow schema every output is encoded from, and the chunk → `RecordBatch` builder.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    BooleanBuilder, ListBuilder, PrimitiveBuilder, StringBuilder, TimestampNanosecondBuilder,
    UInt16Builder,
};
use arrow_array::types::{UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::app::quic::{self, LongPacket};
use crate::app::{AppFields, IPPROTO_UDP, Parsed, parse_app, udp_by_port};
use crate::dissect::defrag::ChunkDatagrams;
use crate::dissect::frag::Expired;
use crate::dissect::{Envelope, FragKey, Fragments, Packet, dissect_with};
use crate::flows::{ChunkFlows, FlowConfig, FlowKey, Seen, key_of};
use crate::reader::{Chunk, FrameMeta, NO_TIMESTAMP, RecordSpan};
use crate::summary::{Counter, Counts, Summary};
use crate::text::AddrColumn;

/// Column names, in schema order.
pub mod col {
    pub const CAPTURE: &str = "capture";
    pub const FRAME_NUMBER: &str = "frame_number";
    pub const TS: &str = "ts";
    pub const INTERFACE_ID: &str = "interface_id";
    pub const LINK_TYPE: &str = "link_type";
    pub const CAP_LEN: &str = "cap_len";
    pub const WIRE_LEN: &str = "wire_len";
    pub const RECORD_OFFSET: &str = "record_offset";
    pub const RECORD_LEN: &str = "record_len";
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
    pub const DECODE_ERROR: &str = "decode_error";
    pub const DNS_QNAME: &str = "dns_qname";
    pub const DNS_QTYPE: &str = "dns_qtype";
    pub const DNS_RCODE: &str = "dns_rcode";
    pub const DNS_ANSWERS: &str = "dns_answers";
    pub const TLS_SNI: &str = "tls_sni";
    pub const TLS_JA3: &str = "tls_ja3";
    pub const TLS_JA4: &str = "tls_ja4";
    pub const TLS_ALPN: &str = "tls_alpn";
    pub const TLS_VERSION: &str = "tls_version";
    pub const QUIC_VERSION: &str = "quic_version";
    pub const HTTP_METHOD: &str = "http_method";
    pub const HTTP_HOST: &str = "http_host";
    pub const HTTP_URI: &str = "http_uri";
    pub const HTTP_USER_AGENT: &str = "http_user_agent";
    pub const HTTP_STATUS: &str = "http_status";
    pub const HTTP_CONTENT_TYPE: &str = "http_content_type";
    pub const SSH_BANNER: &str = "ssh_banner";
    pub const DHCP_MSG_TYPE: &str = "dhcp_msg_type";
    pub const DHCP_HOSTNAME: &str = "dhcp_hostname";
    pub const DHCP_ADDR: &str = "dhcp_addr";
    pub const TUNNELS: &str = "tunnels";
    pub const TUNNEL_ID: &str = "tunnel_id";
    pub const OUTER_SRC_IP: &str = "outer_src_ip";
    pub const OUTER_DST_IP: &str = "outer_dst_ip";
    pub const OUTER_SRC_PORT: &str = "outer_src_port";
    pub const OUTER_DST_PORT: &str = "outer_dst_port";
    pub const FRAG_DATAGRAM: &str = "frag_datagram";
    pub const FRAG_COUNT: &str = "frag_count";
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
            f(col::RECORD_OFFSET, DataType::UInt64, false),
            f(col::RECORD_LEN, DataType::UInt32, false),
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
            f(col::DECODE_ERROR, DataType::Utf8, true),
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
            f(col::TLS_JA4, DataType::Utf8, true),
            f(col::TLS_ALPN, DataType::Utf8, true),
            f(col::TLS_VERSION, DataType::Utf8, true),
            f(col::QUIC_VERSION, DataType::UInt32, true),
            f(col::HTTP_METHOD, DataType::Utf8, true),
            f(col::HTTP_HOST, DataType::Utf8, true),
            f(col::HTTP_URI, DataType::Utf8, true),
            f(col::HTTP_USER_AGENT, DataType::Utf8, true),
            f(col::HTTP_STATUS, DataType::UInt16, true),
            f(col::HTTP_CONTENT_TYPE, DataType::Utf8, true),
            f(col::SSH_BANNER, DataType::Utf8, true),
            f(col::DHCP_MSG_TYPE, DataType::UInt8, true),
            f(col::DHCP_HOSTNAME, DataType::Utf8, true),
            f(col::DHCP_ADDR, DataType::Utf8, true),
            f(
                col::TUNNELS,
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, false))),
                true,
            ),
            f(col::TUNNEL_ID, DataType::UInt32, true),
            f(col::OUTER_SRC_IP, DataType::Utf8, true),
            f(col::OUTER_DST_IP, DataType::Utf8, true),
            f(col::OUTER_SRC_PORT, DataType::UInt16, true),
            f(col::OUTER_DST_PORT, DataType::UInt16, true),
            f(col::FRAG_DATAGRAM, DataType::UInt64, true),
            f(col::FRAG_COUNT, DataType::UInt32, true),
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

struct Builders {
    frame_number: PrimitiveBuilder<UInt64Type>,
    ts: TimestampNanosecondBuilder,
    interface_id: PrimitiveBuilder<UInt32Type>,
    link_type: PrimitiveBuilder<UInt16Type>,
    cap_len: PrimitiveBuilder<UInt32Type>,
    wire_len: PrimitiveBuilder<UInt32Type>,
    record_offset: PrimitiveBuilder<UInt64Type>,
    record_len: PrimitiveBuilder<UInt32Type>,
    src_mac: AddrColumn,
    dst_mac: AddrColumn,
    ethertype: PrimitiveBuilder<UInt16Type>,
    vlan_ids: ListBuilder<UInt16Builder>,
    ip_version: PrimitiveBuilder<UInt8Type>,
    src_ip: AddrColumn,
    dst_ip: AddrColumn,
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
    tls_ja4: StringBuilder,
    tls_alpn: StringBuilder,
    tls_version: StringBuilder,
    quic_version: PrimitiveBuilder<UInt32Type>,
    http_method: StringBuilder,
    http_host: StringBuilder,
    http_uri: StringBuilder,
    http_user_agent: StringBuilder,
    http_status: PrimitiveBuilder<UInt16Type>,
    http_content_type: StringBuilder,
    ssh_banner: StringBuilder,
    dhcp_msg_type: PrimitiveBuilder<UInt8Type>,
    dhcp_hostname: StringBuilder,
    dhcp_addr: StringBuilder,
    decode_error: StringBuilder,
    tunnels: ListBuilder<StringBuilder>,
    tunnel_id: PrimitiveBuilder<UInt32Type>,
    outer_src_ip: AddrColumn,
    outer_dst_ip: AddrColumn,
    outer_src_port: PrimitiveBuilder<UInt16Type>,
    outer_dst_port: PrimitiveBuilder<UInt16Type>,
    /// Rows before this one have their envelope columns.
    env_next: usize,
    /// Per group of application columns (DNS, TLS, HTTP, SSH and DHCP): the rows before this
    /// one have their columns.
    app_next: [usize; 4],
    frag_datagram: PrimitiveBuilder<UInt64Type>,
    frag_count: PrimitiveBuilder<UInt32Type>,
    frag_next: usize,
}

impl Builders {
    /// `n` rows without application fields.
    fn dns_nulls(&mut self, n: usize) {
        self.dns_qname.append_nulls(n);
        self.dns_qtype.append_nulls(n);
        self.dns_rcode.append_nulls(n);
        self.dns_answers.append_nulls(n);
    }

    fn tls_nulls(&mut self, n: usize) {
        self.tls_sni.append_nulls(n);
        self.tls_ja3.append_nulls(n);
        self.tls_ja4.append_nulls(n);
        self.tls_alpn.append_nulls(n);
        self.tls_version.append_nulls(n);
    }

    fn http_nulls(&mut self, n: usize) {
        self.http_method.append_nulls(n);
        self.http_host.append_nulls(n);
        self.http_uri.append_nulls(n);
        self.http_user_agent.append_nulls(n);
        self.http_status.append_nulls(n);
        self.http_content_type.append_nulls(n);
    }

    fn ssh_dhcp_nulls(&mut self, n: usize) {
        self.ssh_banner.append_nulls(n);
        self.dhcp_msg_type.append_nulls(n);
        self.dhcp_hostname.append_nulls(n);
        self.dhcp_addr.append_nulls(n);
    }

    /// The application columns of the rows that have fields (by row, ascending, after every
    /// row given so far), the others null. Each protocol's columns are filled only on the
    /// rows that have its fields, with the nulls between in runs, not once per column of every
    /// row.
    fn app_rows(&mut self, rows: Vec<(usize, AppFields)>) {
        for (row, app) in rows {
            self.app_row(row, &app);
        }
    }

    /// Row `row`'s application columns (rows since the last one with each protocol's fields
    /// are null there).
    fn app_row(&mut self, row: usize, app: &AppFields) {
        let [dns, tls, http, other] = self.app_next;
        if app.dns_qname.is_some() || app.dns_qtype.is_some() || app.dns_rcode.is_some() {
            self.dns_nulls(row.saturating_sub(dns));
            self.app_next[0] = row + 1;
            self.dns_qname.append_option(app.dns_qname.as_deref());
            self.dns_qtype.append_option(app.dns_qtype);
            self.dns_rcode.append_option(app.dns_rcode);
            if app.dns_rcode.is_some() {
                for a in &app.dns_answers {
                    self.dns_answers.values().append_value(a);
                }
                self.dns_answers.append(true);
            } else {
                self.dns_answers.append_null();
            }
        }
        if app.tls_sni.is_some()
            || app.tls_ja3.is_some()
            || app.tls_ja4.is_some()
            || app.tls_alpn.is_some()
            || app.tls_version.is_some()
        {
            self.tls_nulls(row.saturating_sub(tls));
            self.app_next[1] = row + 1;
            self.tls_sni.append_option(app.tls_sni.as_deref());
            self.tls_ja3.append_option(app.tls_ja3.as_deref());
            self.tls_ja4.append_option(app.tls_ja4.as_deref());
            self.tls_alpn.append_option(app.tls_alpn.as_deref());
            self.tls_version
                .append_option(app.tls_version.map(crate::app::tls_version_text));
        }
        if app.http_method.is_some()
            || app.http_host.is_some()
            || app.http_uri.is_some()
            || app.http_user_agent.is_some()
            || app.http_status.is_some()
            || app.http_content_type.is_some()
        {
            self.http_nulls(row.saturating_sub(http));
            self.app_next[2] = row + 1;
            self.http_method.append_option(app.http_method.as_deref());
            self.http_host.append_option(app.http_host.as_deref());
            self.http_uri.append_option(app.http_uri.as_deref());
            self.http_user_agent
                .append_option(app.http_user_agent.as_deref());
            self.http_status.append_option(app.http_status);
            self.http_content_type
                .append_option(app.http_content_type.as_deref());
        }
        if app.ssh_banner.is_some()
            || app.dhcp_msg_type.is_some()
            || app.dhcp_hostname.is_some()
            || app.dhcp_addr.is_some()
        {
            self.ssh_dhcp_nulls(row.saturating_sub(other));
            self.app_next[3] = row + 1;
            self.ssh_banner.append_option(app.ssh_banner.as_deref());
            self.dhcp_msg_type.append_option(app.dhcp_msg_type);
            self.dhcp_hostname
                .append_option(app.dhcp_hostname.as_deref());
            self.dhcp_addr.append_option(app.dhcp_addr.as_deref());
        }
    }

    /// End of the chunk's `n` rows: the application columns of the rows after the last one
    /// with fields are null.
    fn app_end(&mut self, n: usize) {
        let [dns, tls, http, other] = self.app_next;
        self.dns_nulls(n.saturating_sub(dns));
        self.tls_nulls(n.saturating_sub(tls));
        self.http_nulls(n.saturating_sub(http));
        self.ssh_dhcp_nulls(n.saturating_sub(other));
    }

    /// Row `row`'s envelope columns (rows since the last tunnelled one are null there).
    fn envelope(&mut self, row: usize, env: &Envelope) {
        self.env_nulls(row);
        self.env_next = row + 1;
        for e in env.layers() {
            self.tunnels.values().append_value(e.name());
        }
        self.tunnels.append(true);
        self.tunnel_id.append_option(env.tunnel_id);
        match &env.outer {
            Some(o) => {
                self.outer_src_ip.addr(&o.src);
                self.outer_dst_ip.addr(&o.dst);
                self.outer_src_port.append_option(o.src_port);
                self.outer_dst_port.append_option(o.dst_port);
            }
            None => {
                self.outer_src_ip.append_null();
                self.outer_dst_ip.append_null();
                self.outer_src_port.append_null();
                self.outer_dst_port.append_null();
            }
        }
    }

    /// Null envelope columns for the rows from `env_next` to `row` (excluded).
    fn env_nulls(&mut self, row: usize) {
        let n = row - self.env_next;
        if n == 0 {
            return;
        }
        self.tunnels.append_nulls(n);
        self.tunnel_id.append_nulls(n);
        self.outer_src_ip.append_nulls(n);
        self.outer_dst_ip.append_nulls(n);
        self.outer_src_port.append_nulls(n);
        self.outer_dst_port.append_nulls(n);
    }

    /// Row `row` holds a fragment of datagram `datagram`, which it completed from `count`
    /// fragments if `count` is set.
    fn fragment(&mut self, row: usize, datagram: u64, count: Option<u32>) {
        self.frag_nulls(row);
        self.frag_next = row + 1;
        self.frag_datagram.append_value(datagram);
        self.frag_count.append_option(count);
    }

    /// Null fragment columns for the rows from `frag_next` to `row` (excluded).
    fn frag_nulls(&mut self, row: usize) {
        let n = row - self.frag_next;
        if n > 0 {
            self.frag_datagram.append_nulls(n);
            self.frag_count.append_nulls(n);
        }
    }

    /// Null envelope and fragment columns up to row `n`.
    fn finish_sparse(&mut self, n: usize) {
        self.env_nulls(n);
        self.env_next = n;
        self.frag_nulls(n);
        self.frag_next = n;
    }

    /// The chunk's batch: `n` rows of capture `capture`, once the sparse columns are filled
    /// to the end and `ready`, the application fields of the messages completed last, are in.
    fn batch(
        mut self,
        capture: &str,
        n: usize,
        ready: Option<Vec<(usize, AppFields)>>,
    ) -> Result<RecordBatch, ArrowError> {
        self.finish_sparse(n);
        if let Some(rows) = ready {
            self.app_rows(rows);
        }
        self.app_end(n);
        let capture: ArrayRef = Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            capture, n,
        )));
        let columns: Vec<ArrayRef> = vec![
            capture,
            Arc::new(self.frame_number.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.interface_id.finish()),
            Arc::new(self.link_type.finish()),
            Arc::new(self.cap_len.finish()),
            Arc::new(self.wire_len.finish()),
            Arc::new(self.record_offset.finish()),
            Arc::new(self.record_len.finish()),
            Arc::new(self.src_mac.finish()?),
            Arc::new(self.dst_mac.finish()?),
            Arc::new(self.ethertype.finish()),
            Arc::new(self.vlan_ids.finish()),
            Arc::new(self.ip_version.finish()),
            Arc::new(self.src_ip.finish()?),
            Arc::new(self.dst_ip.finish()?),
            Arc::new(self.ip_proto.finish()),
            Arc::new(self.ip_len.finish()),
            Arc::new(self.ttl.finish()),
            Arc::new(self.frag_offset.finish()),
            Arc::new(self.more_fragments.finish()),
            Arc::new(self.src_port.finish()),
            Arc::new(self.dst_port.finish()),
            Arc::new(self.tcp_flags.finish()),
            Arc::new(self.icmp_type.finish()),
            Arc::new(self.icmp_code.finish()),
            Arc::new(self.payload_len.finish()),
            Arc::new(self.decode_error.finish()),
            Arc::new(self.dns_qname.finish()),
            Arc::new(self.dns_qtype.finish()),
            Arc::new(self.dns_rcode.finish()),
            Arc::new(self.dns_answers.finish()),
            Arc::new(self.tls_sni.finish()),
            Arc::new(self.tls_ja3.finish()),
            Arc::new(self.tls_ja4.finish()),
            Arc::new(self.tls_alpn.finish()),
            Arc::new(self.tls_version.finish()),
            Arc::new(self.quic_version.finish()),
            Arc::new(self.http_method.finish()),
            Arc::new(self.http_host.finish()),
            Arc::new(self.http_uri.finish()),
            Arc::new(self.http_user_agent.finish()),
            Arc::new(self.http_status.finish()),
            Arc::new(self.http_content_type.finish()),
            Arc::new(self.ssh_banner.finish()),
            Arc::new(self.dhcp_msg_type.finish()),
            Arc::new(self.dhcp_hostname.finish()),
            Arc::new(self.dhcp_addr.finish()),
            Arc::new(self.tunnels.finish()),
            Arc::new(self.tunnel_id.finish()),
            Arc::new(self.outer_src_ip.finish()?),
            Arc::new(self.outer_dst_ip.finish()?),
            Arc::new(self.outer_src_port.finish()),
            Arc::new(self.outer_dst_port.finish()),
            Arc::new(self.frag_datagram.finish()),
            Arc::new(self.frag_count.finish()),
        ];
        RecordBatch::try_new(schema(), columns)
    }

    /// Frame `frame`'s own columns (all but the sparse ones: application fields, tunnels,
    /// fragments), from its record and its dissection `p`.
    fn frame_row(
        &mut self,
        frame: u64,
        f: &FrameMeta,
        record: RecordSpan,
        p: &Packet,
        quic: Option<LongPacket>,
    ) {
        self.frame_number.append_value(frame);
        if f.ts_ns == NO_TIMESTAMP {
            self.ts.append_null();
        } else {
            self.ts.append_value(f.ts_ns);
        }
        self.interface_id.append_value(f.interface_id);
        self.link_type.append_value(f.link_type);
        self.cap_len.append_value(f.cap_len);
        self.wire_len.append_value(f.wire_len);
        self.record_offset.append_value(record.offset);
        self.record_len.append_value(record.len);
        match &p.src_mac {
            Some(m) => self.src_mac.mac(m),
            None => self.src_mac.append_null(),
        }
        match &p.dst_mac {
            Some(m) => self.dst_mac.mac(m),
            None => self.dst_mac.append_null(),
        }
        self.ethertype.append_option(p.ethertype);
        if p.vlan_count > 0 {
            self.vlan_ids.values().append_slice(p.vlans());
            self.vlan_ids.append(true);
        } else {
            self.vlan_ids.append_null();
        }
        match &p.ip {
            Some(ip) => {
                self.ip_version.append_value(ip.version);
                self.src_ip.addr(&ip.src);
                self.dst_ip.addr(&ip.dst);
                self.ip_proto.append_value(ip.proto);
                self.ip_len.append_value(ip.len);
                self.ttl.append_value(ip.ttl);
                self.frag_offset.append_value(ip.frag_offset);
                self.more_fragments.append_value(ip.more_fragments);
            }
            None => {
                self.ip_version.append_null();
                self.src_ip.append_null();
                self.dst_ip.append_null();
                self.ip_proto.append_null();
                self.ip_len.append_null();
                self.ttl.append_null();
                self.frag_offset.append_null();
                self.more_fragments.append_null();
            }
        }
        self.src_port.append_option(p.src_port);
        self.dst_port.append_option(p.dst_port);
        self.tcp_flags.append_option(p.tcp_flags);
        self.icmp_type.append_option(p.icmp_type);
        self.icmp_code.append_option(p.icmp_code);
        self.payload_len.append_option(p.payload_len);
        self.quic_version
            .append_option(quic.and_then(LongPacket::version));
        // A frame salvaged from a cut record says so, before any dissection error.
        match f.cut_note(p.error) {
            Some(note) => self.decode_error.append_value(note),
            None => self.decode_error.append_option(p.error),
        }
    }

    fn with_capacity(n: usize) -> Self {
        let macs = || AddrColumn::with_capacity(n, n * 17);
        let addrs = || AddrColumn::with_capacity(n, n * 15);
        Builders {
            frame_number: PrimitiveBuilder::with_capacity(n),
            ts: TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC"),
            interface_id: PrimitiveBuilder::with_capacity(n),
            link_type: PrimitiveBuilder::with_capacity(n),
            cap_len: PrimitiveBuilder::with_capacity(n),
            wire_len: PrimitiveBuilder::with_capacity(n),
            record_offset: PrimitiveBuilder::with_capacity(n),
            record_len: PrimitiveBuilder::with_capacity(n),
            src_mac: macs(),
            dst_mac: macs(),
            ethertype: PrimitiveBuilder::with_capacity(n),
            vlan_ids: ListBuilder::with_capacity(UInt16Builder::new(), n)
                .with_field(Arc::new(Field::new_list_field(DataType::UInt16, false))),
            ip_version: PrimitiveBuilder::with_capacity(n),
            src_ip: addrs(),
            dst_ip: addrs(),
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
            tls_ja4: StringBuilder::new(),
            tls_alpn: StringBuilder::new(),
            tls_version: StringBuilder::new(),
            quic_version: PrimitiveBuilder::with_capacity(n),
            http_method: StringBuilder::new(),
            http_host: StringBuilder::new(),
            http_uri: StringBuilder::new(),
            http_user_agent: StringBuilder::new(),
            http_status: PrimitiveBuilder::new(),
            http_content_type: StringBuilder::new(),
            ssh_banner: StringBuilder::new(),
            dhcp_msg_type: PrimitiveBuilder::new(),
            dhcp_hostname: StringBuilder::new(),
            dhcp_addr: StringBuilder::new(),
            decode_error: StringBuilder::new(),
            tunnels: ListBuilder::new(StringBuilder::new())
                .with_field(Arc::new(Field::new_list_field(DataType::Utf8, false))),
            tunnel_id: PrimitiveBuilder::new(),
            outer_src_ip: AddrColumn::with_capacity(0, 0),
            outer_dst_ip: AddrColumn::with_capacity(0, 0),
            outer_src_port: PrimitiveBuilder::new(),
            outer_dst_port: PrimitiveBuilder::new(),
            env_next: 0,
            app_next: [0; 4],
            frag_datagram: PrimitiveBuilder::new(),
            frag_count: PrimitiveBuilder::new(),
            frag_next: 0,
        }
    }
}

/// The name a flow is about, from one packet's fields: TLS SNI, HTTP Host, or a DNS query's name.
fn server_name(app: &AppFields) -> Option<&str> {
    app.tls_sni
        .as_deref()
        .or(app.http_host.as_deref())
        .or(app.dns_qname.as_deref().filter(|_| app.dns_rcode.is_none()))
}

/// Most bytes of one message followed over TCP segments (a ClientHello is at most 16 KiB plus
/// its record header; request heads beyond that are cut there).
const MAX_MESSAGE: usize = 16 * 1024 + 5;
/// Most messages followed at once in a chunk (so at most 4 MiB of message bytes per chunk).
const MAX_FOLLOWED: usize = 256;

/// A message whose first segment did not hold all of it.
struct Followed {
    /// Row of its first segment.
    row: usize,
    /// Its bytes so far.
    buf: Vec<u8>,
    /// The sequence number the next segment must start at.
    next_seq: u32,
    /// What the bytes so far gave.
    partial: AppFields,
}

/// UDP port 443: long-header packets of versions pcaplab cannot read count as undecryptable
/// QUIC there (elsewhere they may be anything).
const QUIC_PORT: u16 = 443;

/// A QUIC connection whose client Initials gave part of a ClientHello.
struct QuicFollowed {
    /// The client's direction, as [`key_of`] gives it: the sender of the first Initial that
    /// decrypted.
    client: bool,
    /// Row of that first Initial.
    row: usize,
    /// The keys and the CRYPTO stream so far.
    conn: quic::Connection,
    /// The version of that first Initial (0 until one decrypted).
    version: u32,
    /// What the ClientHello's part so far gave.
    partial: AppFields,
}

/// The first QUIC long-header packet of a UDP packet's payload, if it starts with one (not on
/// the ports read by port, [`udp_by_port`]): read once per packet, for its row's
/// `quic_version` and for [`Messages::add`].
fn quic_packet(data: &[u8], p: &Packet) -> Option<LongPacket> {
    match (p.ip, p.payload, p.src_port, p.dst_port) {
        (Some(ip), Some((off, len)), Some(sp), Some(dp))
            if ip.proto == IPPROTO_UDP && !udp_by_port(sp, dp) =>
        {
            quic::long_packet(data.get(off..off + len)?)
        }
        _ => None,
    }
}

/// The application fields of one chunk's rows, following TCP messages over segments within
/// the chunk. A message completed by a later segment lands on that segment's row (as tshark
/// shows it); one that is not completed — a gap, more than [`MAX_MESSAGE`] bytes, or the end
/// of the chunk — lands with what it gave on its first segment's row. QUIC connections are
/// followed the same way over their client Initial datagrams (up to [`MAX_FOLLOWED`] at once,
/// [`quic::MAX_CRYPTO`] bytes of CRYPTO stream each): the ClientHello lands on the row of the
/// datagram that completes it, or with what it gave on its first datagram's row.
#[derive(Default)]
struct Messages {
    /// (row, fields), for rows that have any and cannot be written yet: while a message is
    /// followed, what it gives may land on its first row, before them.
    rows: Vec<(usize, AppFields)>,
    /// Set when the latest row's fields were left in the caller's scratch space, to be
    /// written at once (after [`Messages::ready`]): no message was followed, so no later
    /// fields can land before that row.
    direct: bool,
    /// Followed messages by flow and direction.
    followed: rustc_hash::FxHashMap<(FlowKey, bool), Followed>,
    /// Fields that landed on an earlier row since the last [`Messages::settle`], with their
    /// flow: messages given up on.
    given_up: Vec<(FlowKey, AppFields)>,
    /// QUIC connections whose client Initials are followed, by flow.
    quic: rustc_hash::FxHashMap<FlowKey, QuicFollowed>,
    /// QUIC connections whose ClientHello was read (or whose CRYPTO stream does not start with
    /// one): their further Initial packets are not decrypted.
    quic_done: rustc_hash::FxHashSet<FlowKey>,
    /// Client Initial packets decrypted and not.
    quic_stats: quic::InitialStats,
}

impl Messages {
    /// Decode packet `row`'s application fields (with `app` as scratch space); the fields the
    /// row gets, if any. `quic`: the packet's QUIC long header ([`quic_packet`]).
    fn add<'a>(
        &'a mut self,
        row: usize,
        data: &[u8],
        p: &Packet,
        quic: Option<LongPacket>,
        app: &'a mut AppFields,
    ) -> Option<&'a AppFields> {
        let (Some(ip), Some(sp), Some(dp), Some((off, len))) =
            (p.ip, p.src_port, p.dst_port, p.payload)
        else {
            return None;
        };
        let payload = &data[off..off + len];
        match quic {
            Some(LongPacket::Initial(_)) => return self.quic_initial(row, payload, p, app),
            Some(LongPacket::Other(_)) => return None,
            Some(LongPacket::UnknownVersion) if sp == QUIC_PORT || dp == QUIC_PORT => {
                self.quic_stats.undecryptable += 1;
                return None;
            }
            _ => {}
        }
        // The whole declared payload was captured: a segment can be followed.
        let whole = p.payload_len == Some(len as u32);
        let seq = p.tcp_seq.filter(|_| ip.proto == crate::flows::IPPROTO_TCP);
        // The flow and direction, looked up only when a message may continue or start.
        let id = || key_of(p);
        if let Some(seq) = seq
            && !self.followed.is_empty()
            && let Some(id) = id()
            && let Some(m) = self.followed.get_mut(&id)
        {
            if seq == m.next_seq && whole && m.buf.len() + len <= MAX_MESSAGE {
                m.buf.extend_from_slice(payload);
                m.next_seq = seq.wrapping_add(len as u32);
                // Same flow and direction: this segment's protocol and ports are the message's.
                match parse_app(ip.proto, sp, dp, &m.buf, app) {
                    Parsed::Partial => {
                        std::mem::swap(&mut m.partial, app);
                        return None;
                    }
                    _ => {
                        // Complete (or no longer parseable: then nothing more to give).
                        let m = self.followed.remove(&id)?;
                        if app.is_empty() {
                            self.give_up(id.0, m.row, m.partial);
                            return None;
                        }
                        return self.push(row, app);
                    }
                }
            }
            // A retransmission of what was followed already: nothing new.
            if seq.wrapping_sub(m.next_seq) > u32::MAX / 2 {
                return None;
            }
            // A gap or a cut segment: give up on the message, then decode this one afresh.
            if let Some(m) = self.followed.remove(&id) {
                self.give_up(id.0, m.row, m.partial);
            }
        }
        let parsed = parse_app(ip.proto, sp, dp, payload, app);
        let follow = match (parsed, seq) {
            (Parsed::Partial, Some(seq)) if whole && self.followed.len() < MAX_FOLLOWED => {
                id().map(|id| (id, seq))
            }
            _ => None,
        };
        match (parsed, follow) {
            (Parsed::Partial, Some((id, seq))) => {
                let partial = std::mem::take(app);
                self.followed.insert(
                    id,
                    Followed {
                        row,
                        buf: payload.to_vec(),
                        next_seq: seq.wrapping_add(len as u32),
                        partial,
                    },
                );
            }
            (Parsed::Nothing, _) => {}
            _ if !app.is_empty() => return self.push(row, app),
            _ => {}
        }
        None
    }

    /// A UDP datagram starting with a QUIC Initial packet, on row `row`: decrypt it if it is
    /// the client's and its connection's ClientHello is not read yet; the fields the row gets,
    /// if it completes the ClientHello.
    fn quic_initial<'a>(
        &'a mut self,
        row: usize,
        payload: &[u8],
        p: &Packet,
        app: &'a mut AppFields,
    ) -> Option<&'a AppFields> {
        let (key, dir) = key_of(p)?;
        if self.quic_done.contains(&key) {
            return None;
        }
        let mut c = match self.quic.remove(&key) {
            // The server's Initials (whose keys derive from the client's first connection ID,
            // which they do not carry) are not read.
            Some(c) if c.client != dir => {
                self.quic.insert(key, c);
                return None;
            }
            Some(c) => c,
            None => QuicFollowed {
                client: dir,
                row,
                conn: quic::Connection::default(),
                version: 0,
                partial: AppFields::default(),
            },
        };
        let Some(version) = c.conn.add_datagram(payload, &mut self.quic_stats) else {
            // Nothing decrypted: keep following what did before, if anything.
            if c.version != 0 {
                self.quic.insert(key, c);
            }
            return None;
        };
        if c.version == 0 {
            c.version = version;
            c.row = row;
        }
        match c.conn.client_hello(c.version, app) {
            Parsed::Partial => {
                c.partial = std::mem::take(app);
                if self.quic.len() < MAX_FOLLOWED {
                    self.quic.insert(key, c);
                } else {
                    // Too many followed at once: the part read lands here.
                    self.give_up(key, c.row, c.partial);
                }
                None
            }
            Parsed::Complete if !app.is_empty() => {
                self.quic_done.insert(key);
                self.push(row, app)
            }
            _ => {
                self.quic_done.insert(key);
                None
            }
        }
    }

    /// Row `row` gets the fields in `app`: left there to be written at once ([`Self::direct`])
    /// when no message is followed, else kept (and `app` left empty).
    fn push<'a>(&'a mut self, row: usize, app: &'a mut AppFields) -> Option<&'a AppFields> {
        if self.idle() {
            self.direct = true;
            return Some(app);
        }
        self.rows.push((row, std::mem::take(app)));
        self.rows.last().map(|(_, a)| a)
    }

    /// No TCP message or QUIC connection is followed: no fields can land on an earlier row.
    fn idle(&self) -> bool {
        self.followed.is_empty() && self.quic.is_empty()
    }

    /// The rows kept that can be written now (by row), when no message is followed any more
    /// (after [`Messages::flush`], every row kept).
    fn ready(&mut self) -> Option<Vec<(usize, AppFields)>> {
        if self.rows.is_empty() || !self.idle() {
            return None;
        }
        let mut rows = std::mem::take(&mut self.rows);
        rows.sort_by_key(|(row, _)| *row);
        Some(rows)
    }

    /// A message (TCP or QUIC) given up on: what it gave lands on its first row `row`.
    fn give_up(&mut self, key: FlowKey, row: usize, partial: AppFields) {
        if !partial.is_empty() {
            self.given_up.push((key, partial.clone()));
            self.rows.push((row, partial));
        }
    }

    /// Count the fields given up on since the last call, and name their flows.
    fn settle(&mut self, counter: &mut Counter, flows: Option<&mut ChunkFlows>) {
        // Called for every packet, and there is mostly nothing: no drain to set up and drop.
        if self.given_up.is_empty() {
            return;
        }
        let mut flows = flows;
        for (key, fields) in self.given_up.drain(..) {
            counter.add_app(&fields);
            if let Some(table) = flows.as_deref_mut() {
                table.confirm(&key, server_name(&fields), fields.services());
            }
        }
    }

    /// End of chunk: give up on the messages still followed (they land on their first row).
    fn flush(&mut self) {
        let followed: Vec<_> = self.followed.drain().collect();
        for ((key, _), m) in followed {
            self.give_up(key, m.row, m.partial);
        }
        let quic: Vec<_> = self.quic.drain().collect();
        for (key, c) in quic {
            self.give_up(key, c.row, c.partial);
        }
    }
}

/// An incomplete datagram given up by the reassembly counts its fragments in its flow (the
/// transport's ports when its first fragment came, else the addresses alone).
fn fold_given_up(cfg: &FlowConfig, table: &mut ChunkFlows, e: &Expired<FragKey>, p: &mut Packet) {
    crate::dissect::defrag::given_up_packet(e, p);
    let mut seen = Seen::packet(e.first_frame, e.last_ts, 0, p);
    seen.packets = e.fragments;
    seen.wire_len = e.wire_bytes;
    seen.payload_len = 0;
    table.add(cfg, p, &seen);
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
    decode_chunk_as(capture, chunk, flows, Rows::Build, Counts::All)
}

/// Whether rows are built — a decoded chunk's packet rows, a flow table's flow rows — or only
/// the statistics (and, for a chunk, its flows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    Build,
    /// No packet output wants them (`--format flows` or `dynamodb-json` alone): the batch is
    /// empty, the statistics and flows are those [`Rows::Build`] gives.
    Skip,
}

impl Rows {
    /// [`Rows::Build`] when some output wants the rows, else [`Rows::Skip`].
    pub fn wanted(by_an_output: bool) -> Rows {
        if by_an_output {
            Rows::Build
        } else {
            Rows::Skip
        }
    }
}

/// [`decode_chunk_with`], building the rows or not, counting the whole summary or its totals.
pub fn decode_chunk_as(
    capture: &str,
    chunk: &Chunk,
    flows: Option<&FlowConfig>,
    rows: Rows,
    counts: Counts,
) -> Result<Decoded, ArrowError> {
    let n = chunk.frames.len();
    let mut b = (rows == Rows::Build).then(|| Builders::with_capacity(n));
    let mut counter = Counter::new(counts);
    let mut p = Packet::default();
    let mut scratch = AppFields::default();
    let mut chunk_flows = flows.map(|_| ChunkFlows::sized_like_the_last(chunk.time_before));
    let mut messages = Messages::default();
    let frags = &chunk.frags;
    let mut datagrams = ChunkDatagrams::new(frags);
    let (mut notes, mut expired) = (frags.notes.iter().peekable(), frags.expired.iter());
    let mut expired_next = expired.next();
    let mut given_up = Packet::default();
    counter.fragments(&frags.stats);
    for (i, f) in chunk.frames.iter().enumerate() {
        let data = chunk.frame_data(f);
        let frame = chunk.first_frame + i as u64;
        // (Chunks made by hand, in tests and fuzzing, may not say where their records are.)
        let record = chunk.records.get(i).copied().unwrap_or_default();
        // Datagrams given up before this frame count in their flows here.
        while let Some((_, e)) = expired_next.filter(|(at, _)| *at as usize <= i) {
            if let (Some(cfg), Some(table)) = (flows, &mut chunk_flows) {
                fold_given_up(cfg, table, e, &mut given_up);
            }
            expired_next = expired.next();
        }
        let datagram = datagrams.at(i as u32);
        let hook: Option<&mut dyn Fragments<'_>> = match datagram {
            Some(_) => Some(&mut datagrams),
            None => None,
        };
        dissect_with(f.link_type, data, &mut p, hook);
        let note = notes.next_if(|(at, _)| *at as usize == i).map(|(_, n)| n);
        if let Some(n) = note {
            if let Some(b) = &mut b {
                b.fragment(i, n.datagram, datagram.map(|d| d.fragments));
            }
            if p.error.is_none() {
                p.error = n.error;
            }
        }
        if let Some(b) = &mut b
            && !p.env.is_empty()
        {
            b.envelope(i, &p.env);
        }
        counter.add(f, &p);
        let buf = match datagram {
            Some(d) if p.payload_in_datagram => d.bytes.as_slice(),
            _ => data,
        };
        let quic = quic_packet(buf, &p);
        let app = messages.add(i, buf, &p, quic, &mut scratch);
        if let Some(app) = app {
            counter.add_app(app);
        }
        // A fragment counts in its flow with the datagram it belongs to: on the frame that
        // completed it, or when it was given up.
        if let (Some(cfg), Some(table)) = (flows, &mut chunk_flows)
            && (note.is_none() || datagram.is_some())
        {
            let mut seen = Seen::packet(frame, f.ts_ns, f.wire_len, &p);
            seen.offset = record.offset;
            seen.server_name = app.and_then(server_name);
            seen.services = app.map(AppFields::services).unwrap_or_default();
            if let Some(d) = datagram {
                seen.packets = d.fragments;
                seen.wire_len = d.wire_bytes;
            }
            table.add(cfg, &p, &seen);
        }
        messages.settle(&mut counter, chunk_flows.as_mut());
        if let (Some(rows), Some(b)) = (messages.ready(), &mut b) {
            b.app_rows(rows);
        }
        if std::mem::take(&mut messages.direct) {
            if let Some(b) = &mut b {
                b.app_row(i, &scratch);
            }
            scratch.clear();
        }
        if let Some(b) = &mut b {
            b.frame_row(frame, f, record, &p, quic);
        }
    }
    // Datagrams given up at the end of the capture, after its last frame.
    if let (Some(cfg), Some(table)) = (flows, &mut chunk_flows) {
        while let Some((_, e)) = expired_next {
            fold_given_up(cfg, table, e, &mut given_up);
            expired_next = expired.next();
        }
    }
    // Application fields: sparse, and a message followed over segments lands on the row of
    // the segment that completed it, so they are built after the rows.
    messages.flush();
    messages.settle(&mut counter, chunk_flows.as_mut());
    counter.add_quic(&messages.quic_stats);
    let ready = messages.ready();
    let batch = match b {
        Some(b) => b.batch(capture, n, ready)?,
        None => RecordBatch::new_empty(schema()),
    };
    Ok(Decoded {
        batch,
        summary: counter.finish(),
        flows: chunk_flows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet/IPv4/TCP frame from 10.0.0.1:40000 to 10.0.0.2:80 (or back).
    fn tcp_frame(back: bool, seq: u32, payload: &[u8]) -> Vec<u8> {
        if back {
            tcp_between(([10, 0, 0, 2], 80), ([10, 0, 0, 1], 40000), seq, payload)
        } else {
            tcp_between(([10, 0, 0, 1], 40000), ([10, 0, 0, 2], 80), seq, payload)
        }
    }

    /// An Ethernet/IPv4/TCP frame (ACK set) from `src` to `dst` (address, port).
    fn tcp_between(src: ([u8; 4], u16), dst: ([u8; 4], u16), seq: u32, payload: &[u8]) -> Vec<u8> {
        let builder = etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(src.0, dst.0, 64)
            .tcp(src.1, dst.1, seq, 1024)
            .ack(1);
        let mut v = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut v, payload).expect("write");
        v
    }

    fn chunk_of(frames: &[Vec<u8>]) -> Chunk {
        let mut c = Chunk {
            first_frame: 1,
            ..Chunk::default()
        };
        for (i, f) in frames.iter().enumerate() {
            let ethernet = crate::dissect::linktype::ETHERNET;
            c.push(i as i64, 0, ethernet, f.len() as u32, f);
        }
        c
    }

    fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
        let a = batch
            .column_by_name(name)
            .expect("column")
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("strings");
        a.iter().map(|v| v.map(str::to_owned)).collect()
    }

    #[test]
    fn a_request_over_segments_lands_on_the_segment_that_completes_it() {
        let head = b"GET /index.html HTTP/1.1\r\nUser-Agent: a-rather-long-agent\r\n";
        let rest = b"Host: www.example.com\r\n\r\n";
        let frames = [
            tcp_frame(false, 1000, head),
            // The server's ACK and a retransmission of the first part: ignored.
            tcp_frame(true, 5000, b""),
            tcp_frame(false, 1000, head),
            tcp_frame(false, 1000 + head.len() as u32, rest),
            // A second request, cut short and never completed in this chunk: what its first
            // segment gave stays on that segment.
            tcp_frame(
                false,
                1000 + (head.len() + rest.len()) as u32,
                b"POST /form HTTP/1.1\r\nHo",
            ),
        ];
        let d = decode_chunk_with("x", &chunk_of(&frames), Some(&FlowConfig::default()))
            .expect("decode");
        let host = strings(&d.batch, col::HTTP_HOST);
        let method = strings(&d.batch, col::HTTP_METHOD);
        assert_eq!(
            host,
            [None, None, None, Some("www.example.com".into()), None]
        );
        assert_eq!(
            method,
            [None, None, None, Some("GET".into()), Some("POST".into())]
        );
        assert_eq!(d.summary.http_hosts.get("www.example.com"), Some(&1));
        let flows = d.flows.expect("flows");
        assert_eq!(flows.len(), 1);
        // Without rows: an empty batch of the schema, the same statistics and flow.
        let skipped = decode_chunk_as(
            "x",
            &chunk_of(&frames),
            Some(&FlowConfig::default()),
            Rows::Skip,
            Counts::All,
        )
        .expect("decode");
        assert_eq!(skipped.batch.num_rows(), 0);
        assert_eq!(skipped.batch.schema(), schema());
        assert_eq!(skipped.summary, d.summary);
        // Only the totals: the same rows and totals, no talkers, ports, names or timeline.
        let totals = decode_chunk_as("x", &chunk_of(&frames), None, Rows::Build, Counts::Totals)
            .expect("decode");
        assert_eq!(totals.batch, d.batch);
        let s = &d.summary;
        assert!(!s.talkers.is_empty() && !s.http_hosts.is_empty());
        assert_ne!(s.ports, Default::default());
        assert_ne!(s.timeline, Default::default());
        let detail_cleared = Summary {
            talkers: Default::default(),
            ports: Default::default(),
            timeline: Default::default(),
            http_hosts: Default::default(),
            flows: None,
            ..s.clone()
        };
        assert_eq!(totals.summary, detail_cleared);
        let finished = |chunk: ChunkFlows| {
            let mut table = crate::flows::FlowTable::new(FlowConfig::default(), Rows::Build);
            table.merge(chunk.into_shards());
            table.finish().0.into_vec()
        };
        assert_eq!(finished(skipped.flows.expect("flows")), finished(flows));
    }

    #[test]
    fn a_client_hello_over_segments_gives_sni_and_ja3() {
        // A ClientHello with a server_name extension and 1,500 bytes of padding (extension 21)
        // after it, split in three segments.
        let name = b"split.example.org";
        let mut ext = Vec::new();
        let sni_list_len = 3 + name.len();
        ext.extend_from_slice(&[0, 0]);
        ext.extend_from_slice(&((sni_list_len + 2) as u16).to_be_bytes());
        ext.extend_from_slice(&(sni_list_len as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
        ext.extend_from_slice(&[0, 21]);
        ext.extend_from_slice(&1500u16.to_be_bytes());
        ext.extend_from_slice(&[0; 1500]);
        let mut hello = vec![3, 3];
        hello.extend_from_slice(&[7; 32]);
        hello.push(0); // session id
        hello.extend_from_slice(&[0, 2, 0x13, 0x01]); // one cipher suite
        hello.extend_from_slice(&[1, 0]); // null compression
        hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        hello.extend_from_slice(&ext);
        let mut msg = vec![1, 0];
        msg.extend_from_slice(&(hello.len() as u16).to_be_bytes());
        msg.extend_from_slice(&hello);
        let mut rec = vec![0x16, 3, 1];
        rec.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        rec.extend_from_slice(&msg);
        let (a, rest) = rec.split_at(40);
        let (b, c) = rest.split_at(700);
        let frames = [
            tcp_frame(false, 1, a),
            tcp_frame(false, 1 + a.len() as u32, b),
            tcp_frame(false, 1 + (a.len() + b.len()) as u32, c),
        ];
        let d = decode_chunk("x", &chunk_of(&frames)).expect("decode");
        let sni = strings(&d.batch, col::TLS_SNI);
        let ja3 = strings(&d.batch, col::TLS_JA3);
        assert_eq!(sni, [None, None, Some("split.example.org".into())]);
        assert!(ja3[2].is_some() && ja3[0].is_none() && ja3[1].is_none());
        // Decoded in one piece, the same fields.
        let whole = decode_chunk("x", &chunk_of(&[tcp_frame(false, 1, &rec)])).expect("decode");
        assert_eq!(strings(&whole.batch, col::TLS_JA3)[0], ja3[2]);
    }

    /// An Ethernet/IPv4/UDP frame from 10.0.0.1:50000 to 10.0.0.2:443 (or back).
    fn udp_frame(back: bool, payload: &[u8]) -> Vec<u8> {
        let (src, dst, sp, dp) = if back {
            ([10, 0, 0, 2], [10, 0, 0, 1], 443, 50000)
        } else {
            ([10, 0, 0, 1], [10, 0, 0, 2], 50000, 443)
        };
        let builder = etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(src, dst, 64)
            .udp(sp, dp);
        let mut v = Vec::with_capacity(builder.size(payload.len()));
        builder.write(&mut v, payload).expect("write");
        v
    }

    /// A CRYPTO frame (2-byte variable-length offset and length).
    fn crypto_frame(offset: usize, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x06];
        f.extend_from_slice(&(0x4000 | offset as u16).to_be_bytes());
        f.extend_from_slice(&(0x4000 | data.len() as u16).to_be_bytes());
        f.extend_from_slice(data);
        f
    }

    fn u32s(batch: &RecordBatch, name: &str) -> Vec<Option<u32>> {
        let a = batch
            .column_by_name(name)
            .expect("column")
            .as_any()
            .downcast_ref::<arrow_array::UInt32Array>()
            .expect("u32");
        a.iter().collect()
    }

    #[test]
    fn a_quic_client_hello_over_two_datagrams_lands_on_the_second() {
        // A ClientHello (SNI, then 1,200 bytes of padding) over three CRYPTO frames, out of
        // order, in two client Initials; the server's Initial comes between them.
        let name = b"quic.example.org";
        let mut ext = vec![0, 0];
        ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
        ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
        ext.extend_from_slice(&[0, 21]);
        ext.extend_from_slice(&1200u16.to_be_bytes());
        ext.extend_from_slice(&[0; 1200]);
        let mut hello = vec![3, 3];
        hello.extend_from_slice(&[7; 32]);
        hello.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        hello.extend_from_slice(&ext);
        let mut msg = vec![1, 0];
        msg.extend_from_slice(&(hello.len() as u16).to_be_bytes());
        msg.extend_from_slice(&hello);
        let dcid = [0x42; 8];
        let first = [
            crypto_frame(600, &msg[600..900]),
            crypto_frame(0, &msg[..600]),
        ]
        .concat();
        let d1 = quic::seal_initial(quic::VERSION_1, &dcid, 0, &first);
        let d2 = quic::seal_initial(quic::VERSION_1, &dcid, 1, &crypto_frame(900, &msg[900..]));
        let server = quic::seal_initial(quic::VERSION_1, &[0x17; 8], 0, &[1]);
        let frames = [
            udp_frame(false, &d1),
            udp_frame(true, &server),
            udp_frame(false, &d2),
        ];
        let d = decode_chunk_with("x", &chunk_of(&frames), Some(&FlowConfig::default()))
            .expect("decode");
        let sni = strings(&d.batch, col::TLS_SNI);
        assert_eq!(sni, [None, None, Some("quic.example.org".into())]);
        assert!(strings(&d.batch, col::TLS_JA3)[2].is_some());
        assert_eq!(u32s(&d.batch, col::QUIC_VERSION), [Some(1); 3]);
        assert_eq!(d.summary.quic_initials, 2);
        assert_eq!(d.summary.quic_undecryptable, 0);
        assert_eq!(d.summary.tls_snis.get("quic.example.org"), Some(&1));

        // The first datagram alone (the chunk ends): what it gave lands on it — the SNI, no JA3.
        let d = decode_chunk("x", &chunk_of(&frames[..1])).expect("decode");
        assert_eq!(
            strings(&d.batch, col::TLS_SNI),
            [Some("quic.example.org".into())]
        );
        assert_eq!(strings(&d.batch, col::TLS_JA3), [None]);

        // A damaged Initial: counted, no fields; a short-header packet: no version.
        let mut bad = d1.clone();
        bad[300] ^= 1;
        let d = decode_chunk(
            "x",
            &chunk_of(&[udp_frame(false, &bad), udp_frame(true, &[0x40; 30])]),
        )
        .expect("decode");
        assert_eq!(strings(&d.batch, col::TLS_SNI), [None, None]);
        assert_eq!(u32s(&d.batch, col::QUIC_VERSION), [Some(1), None]);
        assert_eq!(d.summary.quic_initials, 0);
        assert_eq!(d.summary.quic_undecryptable, 1);
    }

    #[test]
    fn rows_written_at_once_and_rows_kept_for_a_followed_message_keep_their_order() {
        // Whole requests of other connections (written as they come while nothing is
        // followed, kept while something is), a request followed over two segments with
        // others in between, then one given up on at a gap (its fields land on its first row,
        // before the others kept meanwhile).
        let head = b"GET /a HTTP/1.1\r\nUser-Agent: x\r\n";
        let rest = b"Host: one.example\r\n\r\n";
        let second = 1000 + (head.len() + rest.len()) as u32;
        let whole = |n: u16| {
            let req = format!("GET /{n} HTTP/1.1\r\nHost: h{n}.example\r\n\r\n");
            tcp_between(
                ([10, 0, 0, 3], 50000 + n),
                ([10, 0, 0, 2], 80),
                7,
                req.as_bytes(),
            )
        };
        let frames = [
            whole(0),
            tcp_frame(false, 1000, head),
            whole(2),
            tcp_frame(false, 1000 + head.len() as u32, rest),
            whole(4),
            tcp_frame(false, second, b"GET /b HTTP/1.1\r\nHo"),
            whole(6),
            tcp_frame(false, second + 100, b"xyz"),
            whole(8),
        ];
        for flows in [None, Some(FlowConfig::default())] {
            let d = decode_chunk_with("x", &chunk_of(&frames), flows.as_ref()).expect("decode");
            let host = |n: usize| Some(format!("h{n}.example"));
            assert_eq!(
                strings(&d.batch, col::HTTP_HOST),
                [
                    host(0),
                    None,
                    host(2),
                    Some("one.example".into()),
                    host(4),
                    None,
                    host(6),
                    None,
                    host(8)
                ]
            );
            let uri = strings(&d.batch, col::HTTP_URI);
            assert_eq!(uri[5].as_deref(), Some("/b"));
            assert_eq!(uri[1], None);
            assert_eq!(d.summary.http_hosts.len(), 6);
        }
    }

    #[test]
    fn a_dns_message_that_looks_like_a_quic_long_header_stays_dns() {
        // ID 0x8000, flags 0, 256 questions (one present): bytes 1-4 read as QUIC version 1,
        // the first byte has the long-header bit and what follows parses as an Initial.
        let mut q = vec![0x80, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x01a\x07example\x00\x00\x01\x00\x01");
        let builder = etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(40000, 53);
        let mut frame = Vec::with_capacity(builder.size(q.len()));
        builder.write(&mut frame, &q).expect("write");
        let d = decode_chunk("x", &chunk_of(&[frame])).expect("decode");
        assert_eq!(
            strings(&d.batch, col::DNS_QNAME),
            [Some("a.example".into())]
        );
        let quic = d
            .batch
            .column_by_name(col::QUIC_VERSION)
            .expect("quic_version");
        assert!(quic.is_null(0));
        assert_eq!(d.summary.quic_undecryptable, 0);
    }

    #[test]
    fn empty_chunk_gives_empty_batch_with_schema() {
        let d = decode_chunk("x", &Chunk::default()).expect("decode");
        assert_eq!(d.batch.num_rows(), 0);
        assert_eq!(d.batch.schema(), schema());
    }
}
