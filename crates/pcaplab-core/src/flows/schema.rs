//! The flow table's columns: its Arrow schema and the batch of a set of flows.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    Float64Builder, ListBuilder, PrimitiveBuilder, StringBuilder, TimestampNanosecondBuilder,
};
use arrow_array::types::{UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use super::{Flow, FlowConfig, IPPROTO_TCP, NO_OFFSET, outer_key};
use crate::reader::NO_TIMESTAMP;
use crate::text::AddrColumn;

/// Column names of the flow table, in schema order.
pub mod col {
    pub const CAPTURE: &str = "capture";
    pub const COMMUNITY_ID: &str = "community_id";
    pub const IP_PROTO: &str = "ip_proto";
    pub const VLAN: &str = "vlan";
    pub const INNER_VLAN: &str = "inner_vlan";
    pub const SRC_IP: &str = "src_ip";
    pub const SRC_PORT: &str = "src_port";
    pub const DST_IP: &str = "dst_ip";
    pub const DST_PORT: &str = "dst_port";
    pub const FIRST_TS: &str = "first_ts";
    pub const LAST_TS: &str = "last_ts";
    pub const DURATION: &str = "duration";
    pub const PACKETS: &str = "packets";
    pub const BYTES: &str = "bytes";
    pub const ORIG_PACKETS: &str = "orig_packets";
    pub const ORIG_BYTES: &str = "orig_bytes";
    pub const RESP_PACKETS: &str = "resp_packets";
    pub const RESP_BYTES: &str = "resp_bytes";
    pub const ORIG_PAYLOAD_BYTES: &str = "orig_payload_bytes";
    pub const RESP_PAYLOAD_BYTES: &str = "resp_payload_bytes";
    pub const ORIG_TCP_FLAGS: &str = "orig_tcp_flags";
    pub const RESP_TCP_FLAGS: &str = "resp_tcp_flags";
    pub const CONN_STATE: &str = "conn_state";
    pub const HISTORY: &str = "history";
    pub const SERVER_NAME: &str = "server_name";
    pub const SERVICE: &str = "service";
    pub const FIRST_FRAME: &str = "first_frame";
    pub const LAST_FRAME: &str = "last_frame";
    pub const FIRST_OFFSET: &str = "first_offset";
    pub const LAST_OFFSET: &str = "last_offset";
    pub const TUNNELS: &str = "tunnels";
    pub const TUNNEL_ID: &str = "tunnel_id";
    pub const TUNNEL_PARENT: &str = "tunnel_parent";
    pub const TUNNEL_TYPE: &str = "tunnel_type";
    pub const END_REASON: &str = "end_reason";
}

/// The flow table's schema (see the README for each column's meaning).
pub fn flow_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(SCHEMA.get_or_init(|| {
        let f = |name: &str, t: DataType, nullable: bool| Field::new(name, t, nullable);
        let ts = || DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
        Arc::new(Schema::new(vec![
            f(col::CAPTURE, DataType::Utf8, false),
            f(col::COMMUNITY_ID, DataType::Utf8, false),
            f(col::IP_PROTO, DataType::UInt8, false),
            f(col::VLAN, DataType::UInt16, true),
            f(col::INNER_VLAN, DataType::UInt16, true),
            f(col::SRC_IP, DataType::Utf8, false),
            f(col::SRC_PORT, DataType::UInt16, true),
            f(col::DST_IP, DataType::Utf8, false),
            f(col::DST_PORT, DataType::UInt16, true),
            f(col::FIRST_TS, ts(), true),
            f(col::LAST_TS, ts(), true),
            f(col::DURATION, DataType::Float64, true),
            f(col::PACKETS, DataType::UInt64, false),
            f(col::BYTES, DataType::UInt64, false),
            f(col::ORIG_PACKETS, DataType::UInt64, false),
            f(col::ORIG_BYTES, DataType::UInt64, false),
            f(col::RESP_PACKETS, DataType::UInt64, false),
            f(col::RESP_BYTES, DataType::UInt64, false),
            f(col::ORIG_PAYLOAD_BYTES, DataType::UInt64, false),
            f(col::RESP_PAYLOAD_BYTES, DataType::UInt64, false),
            f(col::ORIG_TCP_FLAGS, DataType::UInt16, true),
            f(col::RESP_TCP_FLAGS, DataType::UInt16, true),
            f(col::CONN_STATE, DataType::Utf8, false),
            f(col::HISTORY, DataType::Utf8, false),
            f(col::SERVER_NAME, DataType::Utf8, true),
            f(col::SERVICE, DataType::Utf8, true),
            f(col::FIRST_FRAME, DataType::UInt64, false),
            f(col::LAST_FRAME, DataType::UInt64, false),
            f(col::FIRST_OFFSET, DataType::UInt64, true),
            f(col::LAST_OFFSET, DataType::UInt64, true),
            f(
                col::TUNNELS,
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, false))),
                true,
            ),
            f(col::TUNNEL_ID, DataType::UInt32, true),
            f(col::TUNNEL_PARENT, DataType::Utf8, true),
            f(col::TUNNEL_TYPE, DataType::Utf8, true),
            f(col::END_REASON, DataType::Utf8, false),
        ]))
    }))
}

/// The rows of `flows` as a batch of [`flow_schema`].
pub fn flows_batch<'a>(
    capture: &str,
    cfg: &FlowConfig,
    flows: impl ExactSizeIterator<Item = &'a Flow>,
) -> Result<RecordBatch, ArrowError> {
    let n = flows.len();
    let mut community_id = StringBuilder::with_capacity(n, n * 30);
    let mut ip_proto = PrimitiveBuilder::<UInt8Type>::with_capacity(n);
    let mut vlan = PrimitiveBuilder::<UInt16Type>::with_capacity(n);
    let mut inner_vlan = PrimitiveBuilder::<UInt16Type>::with_capacity(n);
    let mut src_ip = AddrColumn::with_capacity(n, n * 15);
    let mut src_port = PrimitiveBuilder::<UInt16Type>::with_capacity(n);
    let mut dst_ip = AddrColumn::with_capacity(n, n * 15);
    let mut dst_port = PrimitiveBuilder::<UInt16Type>::with_capacity(n);
    let mut first_ts = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut last_ts = TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut duration = Float64Builder::with_capacity(n);
    let mut u64s: Vec<PrimitiveBuilder<UInt64Type>> =
        (0..8).map(|_| PrimitiveBuilder::with_capacity(n)).collect();
    let mut orig_flags = PrimitiveBuilder::<UInt16Type>::with_capacity(n);
    let mut resp_flags = PrimitiveBuilder::<UInt16Type>::with_capacity(n);
    let mut conn_state = StringBuilder::with_capacity(n, n * 3);
    let mut history = StringBuilder::with_capacity(n, n * 6);
    let mut server_name = StringBuilder::new();
    let mut service = StringBuilder::new();
    let mut service_text = String::new();
    let mut first_frame = PrimitiveBuilder::<UInt64Type>::with_capacity(n);
    let mut last_frame = PrimitiveBuilder::<UInt64Type>::with_capacity(n);
    let mut first_offset = PrimitiveBuilder::<UInt64Type>::with_capacity(n);
    let mut last_offset = PrimitiveBuilder::<UInt64Type>::with_capacity(n);
    let mut tunnels = ListBuilder::new(StringBuilder::new())
        .with_field(Arc::new(Field::new_list_field(DataType::Utf8, false)));
    let mut tunnel_id = PrimitiveBuilder::<UInt32Type>::new();
    let mut tunnel_parent = StringBuilder::new();
    let mut tunnel_type = StringBuilder::new();
    let mut end_reason = StringBuilder::with_capacity(n, n * 4);
    let mut id = String::with_capacity(30);
    for fl in flows {
        let (o, r) = (fl.originator(), fl.responder());
        fl.key.community_id_into(cfg.community_id_seed, &mut id);
        community_id.append_value(&id);
        ip_proto.append_value(fl.key.proto);
        vlan.append_option(fl.key.vlan());
        inner_vlan.append_option(fl.key.inner_vlan());
        src_ip.addr(&o.addr);
        src_port.append_option(o.port);
        dst_ip.addr(&r.addr);
        dst_port.append_option(r.port);
        let known = |t: i64| Some(t).filter(|t| *t != NO_TIMESTAMP);
        first_ts.append_option(known(fl.seg.first_ts));
        last_ts.append_option(known(fl.seg.last_ts));
        duration.append_option(
            known(fl.seg.first_ts)
                .zip(known(fl.seg.last_ts))
                .map(|(a, b)| (i128::from(b) - i128::from(a)) as f64 / 1e9),
        );
        let (os, rs) = (fl.orig(), fl.resp());
        for (b, v) in u64s.iter_mut().zip([
            fl.packets(),
            fl.bytes(),
            os.packets,
            os.bytes,
            rs.packets,
            rs.bytes,
            os.payload_bytes,
            rs.payload_bytes,
        ]) {
            b.append_value(v);
        }
        let tcp = fl.key.proto == IPPROTO_TCP;
        orig_flags.append_option(tcp.then_some(fl.orig_tcp_flags()));
        resp_flags.append_option(tcp.then_some(fl.resp_tcp_flags()));
        conn_state.append_value(fl.conn_state());
        history.append_value(fl.history().as_str());
        server_name.append_option(fl.seg.server_name.as_deref());
        if fl.seg.services.is_empty() {
            service.append_null();
        } else {
            service_text.clear();
            let _ = write!(service_text, "{}", fl.seg.services);
            service.append_value(&service_text);
        }
        first_frame.append_value(fl.seg.first_frame);
        last_frame.append_value(fl.seg.last_frame);
        let known = |o: u64| Some(o).filter(|o| *o != NO_OFFSET);
        first_offset.append_option(known(fl.seg.first_offset));
        last_offset.append_option(known(fl.seg.last_offset));
        match fl.seg.envelope.as_deref() {
            Some(env) => {
                for e in env.layers() {
                    tunnels.values().append_value(e.name());
                }
                tunnels.append(true);
                tunnel_id.append_option(env.tunnel_id);
                tunnel_parent.append_option(
                    env.parent().map(|(o, within)| {
                        outer_key(o, within).0.community_id(cfg.community_id_seed)
                    }),
                );
            }
            None => {
                tunnels.append_null();
                tunnel_id.append_null();
                tunnel_parent.append_null();
            }
        }
        tunnel_type.append_option(Some(fl.seg.carries.name()).filter(|n| !n.is_empty()));
        end_reason.append_value(fl.end.as_str());
    }
    let capture: ArrayRef = Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
        capture, n,
    )));
    let mut columns: Vec<ArrayRef> = vec![
        capture,
        Arc::new(community_id.finish()),
        Arc::new(ip_proto.finish()),
        Arc::new(vlan.finish()),
        Arc::new(inner_vlan.finish()),
        Arc::new(src_ip.finish()?),
        Arc::new(src_port.finish()),
        Arc::new(dst_ip.finish()?),
        Arc::new(dst_port.finish()),
        Arc::new(first_ts.finish()),
        Arc::new(last_ts.finish()),
        Arc::new(duration.finish()),
    ];
    columns.extend(u64s.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.extend([
        Arc::new(orig_flags.finish()) as ArrayRef,
        Arc::new(resp_flags.finish()),
        Arc::new(conn_state.finish()),
        Arc::new(history.finish()),
        Arc::new(server_name.finish()),
        Arc::new(service.finish()),
        Arc::new(first_frame.finish()),
        Arc::new(last_frame.finish()),
        Arc::new(first_offset.finish()),
        Arc::new(last_offset.finish()),
        Arc::new(tunnels.finish()),
        Arc::new(tunnel_id.finish()),
        Arc::new(tunnel_parent.finish()),
        Arc::new(tunnel_type.finish()),
        Arc::new(end_reason.finish()),
    ]);
    RecordBatch::try_new(flow_schema(), columns)
}
