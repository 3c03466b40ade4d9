//! Encoders: Parquet, CSV and the AWS lab's CSV, all from the same `RecordBatch`.
//!
//! Each encoder has two halves. The *chunk* half turns one batch into bytes (or Parquet column
//! chunks) and runs on any worker thread; the *sink* half appends those pieces to the output in
//! file order. So the expensive part of every format is parallel, and only the appends are
//! sequential.

use std::io::{self, Write};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float64Type, TimestampNanosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, ArrowWriterOptions,
    compute_leaves,
};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use crate::columns::{col, schema};

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    Parquet,
    Csv,
    /// The AWS lab's `src,dst,len,proto` CSV.
    LabCsv,
    /// The flow table as Parquet.
    Flows,
    /// The flow table as CSV.
    FlowsCsv,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Parquet,
        Format::Csv,
        Format::LabCsv,
        Format::Flows,
        Format::FlowsCsv,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
            Format::LabCsv => "lab-csv",
            Format::Flows => "flows",
            Format::FlowsCsv => "flows-csv",
        }
    }

    /// File name suffix appended to the capture's full name (`x.pcap` → `x.pcap.parquet`).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
            Format::LabCsv => "lab.csv",
            Format::Flows => "flows.parquet",
            Format::FlowsCsv => "flows.csv",
        }
    }

    /// The flow table (written once per capture), as opposed to a packet table (one row per
    /// frame, written by each range of a split conversion as its own part).
    pub fn is_flows(self) -> bool {
        matches!(self, Format::Flows | Format::FlowsCsv)
    }

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// Why an encoder failed.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Io(#[from] io::Error),
}

// ---------------------------------------------------------------------------------------------
// Parquet

/// Settings every Parquet output shares: zstd, chunk statistics, dictionaries where values
/// repeat, and the capture's name in the file metadata. No page index: with chunk statistics
/// there is no column index to prune pages with, a column chunk of a row group is mostly one
/// page, and the writer holds every row group's offset index until the file is closed
/// (measured: 10 MiB of the memory an 8 M-packet flood's conversion gained over a 1 M one).
fn common_properties(capture: &str) -> parquet::file::properties::WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_offset_index_disabled(true)
        .set_created_by(format!("pcaplab {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "pcaplab.capture".to_owned(),
            capture.to_owned(),
        )]))
}

/// Rows per row group of the flow table: flows are gathered as they retire and encoded this
/// many at a time, each row group on a worker thread.
pub const FLOW_ROW_GROUP: usize = 16 * 1024;

/// A Parquet sink of the flow table ([`crate::flows::flow_schema`]): [`common_properties`],
/// with no dictionary for the columns whose values are mostly new in each flow (a dictionary
/// of unique values only costs hashing): measured, the originator's address and port are
/// smaller without one on ordinary traffic too. Frames, timestamps and offsets are delta-encoded:
/// flows are written in file order, so each is close to the one before (measured on a spoofed
/// flood's million flows: each of the six columns 1.0–2.4 MB in plain encoding with zstd,
/// 0.2–0.45 MB delta-encoded, and zstd compresses 48 MB less). Community IDs are written as
/// DELTA_LENGTH_BYTE_ARRAY, their lengths apart from their text: in plain encoding zstd spent
/// its time on the 4-byte length before each value (measured on the flood: the column 8% larger,
/// 20.9 -> 22.6 MB, the file 5%, and the conversion 4–7% less CPU). They have no statistics
/// either: the least and greatest of a row group's hashes prune nothing, and finding them
/// compared every value's text (1% of a flood's CPU).
pub fn flows_parquet_sink<W: Write + Send>(
    out: W,
    capture: &str,
) -> Result<ParquetSink<W>, EncodeError> {
    use crate::flows::col as f;
    let mut b = common_properties(capture);
    for c in [
        f::COMMUNITY_ID,
        f::FIRST_TS,
        f::LAST_TS,
        f::DURATION,
        f::FIRST_FRAME,
        f::LAST_FRAME,
        f::FIRST_OFFSET,
        f::LAST_OFFSET,
        f::SRC_IP,
        f::SRC_PORT,
    ] {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), false);
    }
    for c in [
        f::FIRST_TS,
        f::LAST_TS,
        f::FIRST_FRAME,
        f::LAST_FRAME,
        f::FIRST_OFFSET,
        f::LAST_OFFSET,
    ] {
        b = b.set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
    }
    b = b
        .set_column_encoding(
            ColumnPath::from(f::COMMUNITY_ID),
            Encoding::DELTA_LENGTH_BYTE_ARRAY,
        )
        .set_column_statistics_enabled(ColumnPath::from(f::COMMUNITY_ID), EnabledStatistics::None);
    ParquetSink::with_schema(out, crate::flows::flow_schema(), b.build())
}

/// Parquet writer settings of the packet table: [`common_properties`], and delta encoding for
/// the three monotone columns (frame numbers, timestamps, record offsets), which then cost
/// almost nothing — a dictionary of their unique values would only cost hashing.
pub fn parquet_properties(capture: &str) -> WriterProperties {
    let mut b = common_properties(capture);
    for c in [col::FRAME_NUMBER, col::TS, col::RECORD_OFFSET] {
        let path = ColumnPath::from(c);
        b = b
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
    }
    for (c, limit) in DICTIONARY_LIMITS {
        b = b.set_column_dictionary_page_size_limit(ColumnPath::from(c), limit);
    }
    b.build()
}

/// Addresses and ports repeat on ordinary traffic, where their dictionaries stay small (a few
/// thousand values in a row group's part); from a spoofed flood or a scan nearly every value is
/// new, and a dictionary of them costs hashing and memory and saves no bytes. Past these sizes a
/// column chunk goes on in plain encoding (parquet's default limit: 1 MiB, which a part of
/// 64 Ki rows never reaches).
const DICTIONARY_LIMITS: [(&str, usize); 4] = [
    (col::SRC_IP, 256 << 10),
    (col::DST_IP, 256 << 10),
    (col::SRC_PORT, 64 << 10),
    (col::DST_PORT, 64 << 10),
];

/// Encodes one batch into a row group's column chunks; shareable across worker threads.
pub type ParquetEncoder = Arc<ArrowRowGroupWriterFactory>;

/// Writes Parquet row groups, in order, to `W`.
pub struct ParquetSink<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    encoder: ParquetEncoder,
}

impl<W: Write + Send> ParquetSink<W> {
    /// The packet table's sink.
    pub fn new(out: W, capture: &str) -> Result<Self, EncodeError> {
        Self::with_schema(out, schema(), parquet_properties(capture))
    }

    pub(crate) fn with_schema(
        out: W,
        schema: arrow_schema::SchemaRef,
        props: WriterProperties,
    ) -> Result<Self, EncodeError> {
        let options = ArrowWriterOptions::new().with_properties(props);
        let (mut writer, factory) =
            ArrowWriter::try_new_with_options(out, schema, options)?.into_serialized_writer()?;
        // Until the footer is written the writer holds every row group's metadata: kept as
        // the footer will hold it, a flood's flow table of a row group every 16 Ki flows holds
        // 24 KiB less per row group (vendor/parquet/PATCHED.md, the seventh change).
        writer.keep_row_groups_serialized()?;
        Ok(ParquetSink {
            writer,
            encoder: Arc::new(factory),
        })
    }

    pub fn encoder(&self) -> ParquetEncoder {
        Arc::clone(&self.encoder)
    }

    /// Append one encoded row group.
    pub fn append(&mut self, chunks: Vec<ArrowColumnChunk>) -> Result<(), EncodeError> {
        let mut rg = self.writer.next_row_group()?;
        for c in chunks {
            c.append_to_row_group(&mut rg)?;
        }
        rg.close()?;
        Ok(())
    }

    /// Write the footer and hand back the output.
    pub fn finish(self) -> Result<W, EncodeError> {
        Ok(self.writer.into_inner()?)
    }
}

/// Encode a batch as one row group (runs on a worker thread).
pub fn encode_parquet(
    encoder: &ParquetEncoder,
    batch: &RecordBatch,
) -> Result<Vec<ArrowColumnChunk>, EncodeError> {
    let mut writers = encoder.create_column_writers(0)?;
    write_batch(&mut writers, batch)?;
    close_writers(writers)
}

/// Append a batch's rows to a row group's column writers (from
/// [`ArrowRowGroupWriterFactory::create_column_writers`]); a row group may take any number.
pub fn write_batch(
    writers: &mut [ArrowColumnWriter],
    batch: &RecordBatch,
) -> Result<(), EncodeError> {
    let schema = batch.schema();
    let fields = schema.fields().iter().map(|f| f.as_ref());
    write_columns(writers.iter_mut(), fields.zip(batch.columns()))
}

/// Write `columns` (each with its field), leaf column by leaf column, to `writers` in order.
pub(crate) fn write_columns<'w, 'c>(
    writers: impl IntoIterator<Item = &'w mut ArrowColumnWriter>,
    columns: impl IntoIterator<Item = (&'c arrow_schema::Field, &'c ArrayRef)>,
) -> Result<(), EncodeError> {
    let mut next = writers.into_iter();
    for (field, array) in columns {
        for leaf in compute_leaves(field, array)? {
            match next.next() {
                Some(w) => w.write(&leaf)?,
                None => {
                    return Err(parquet::errors::ParquetError::General(
                        "more leaf columns than column writers".into(),
                    )
                    .into());
                }
            }
        }
    }
    Ok(())
}

/// Finish a row group's column writers: its column chunks, for [`ParquetSink::append`].
pub fn close_writers(
    writers: Vec<ArrowColumnWriter>,
) -> Result<Vec<ArrowColumnChunk>, EncodeError> {
    Ok(writers
        .into_iter()
        .map(|w| w.close())
        .collect::<Result<_, _>>()?)
}

// ---------------------------------------------------------------------------------------------
// CSV

/// The CSV header line for the packet schema.
pub fn csv_header() -> Vec<u8> {
    csv_header_of(&schema())
}

/// The CSV header line for any of our schemas.
pub fn csv_header_of(s: &arrow_schema::Schema) -> Vec<u8> {
    let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
    let mut h = names.join(",").into_bytes();
    h.push(b'\n');
    h
}

/// One column, downcast once per batch.
enum CsvColumn<'a> {
    Str(&'a arrow_array::StringArray),
    U8(&'a arrow_array::PrimitiveArray<UInt8Type>),
    U16(&'a arrow_array::PrimitiveArray<UInt16Type>),
    U32(&'a arrow_array::PrimitiveArray<UInt32Type>),
    U64(&'a arrow_array::PrimitiveArray<UInt64Type>),
    Ts(&'a arrow_array::PrimitiveArray<TimestampNanosecondType>),
    Bool(&'a arrow_array::BooleanArray),
    F64(&'a arrow_array::PrimitiveArray<Float64Type>),
    /// The list array (for nulls and offsets) and its flattened values.
    ListU16(&'a arrow_array::ListArray, &'a [u16]),
    ListStr(&'a arrow_array::ListArray, &'a arrow_array::StringArray),
}

impl<'a> CsvColumn<'a> {
    fn of(a: &'a ArrayRef) -> io::Result<Self> {
        Ok(match a.data_type() {
            DataType::Utf8 => CsvColumn::Str(a.as_string::<i32>()),
            DataType::UInt8 => CsvColumn::U8(a.as_primitive()),
            DataType::UInt16 => CsvColumn::U16(a.as_primitive()),
            DataType::UInt32 => CsvColumn::U32(a.as_primitive()),
            DataType::UInt64 => CsvColumn::U64(a.as_primitive()),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => CsvColumn::Ts(a.as_primitive()),
            DataType::Boolean => CsvColumn::Bool(a.as_boolean()),
            DataType::Float64 => CsvColumn::F64(a.as_primitive()),
            DataType::List(f) if f.data_type() == &DataType::UInt16 => {
                let list = a.as_list::<i32>();
                let values = list.values().as_primitive::<UInt16Type>().values();
                CsvColumn::ListU16(list, values)
            }
            DataType::List(f) if f.data_type() == &DataType::Utf8 => {
                let list = a.as_list::<i32>();
                CsvColumn::ListStr(list, list.values().as_string::<i32>())
            }
            other => {
                return Err(io::Error::other(format!(
                    "CSV encoder has no format for {other}"
                )));
            }
        })
    }

    fn is_null(&self, i: usize) -> bool {
        match self {
            CsvColumn::Str(a) => a.is_null(i),
            CsvColumn::U8(a) => a.is_null(i),
            CsvColumn::U16(a) => a.is_null(i),
            CsvColumn::U32(a) => a.is_null(i),
            CsvColumn::U64(a) => a.is_null(i),
            CsvColumn::Ts(a) => a.is_null(i),
            CsvColumn::Bool(a) => a.is_null(i),
            CsvColumn::F64(a) => a.is_null(i),
            CsvColumn::ListU16(a, _) => a.is_null(i),
            CsvColumn::ListStr(a, _) => a.is_null(i),
        }
    }

    fn write(&self, i: usize, out: &mut Vec<u8>, int: &mut itoa::Buffer) {
        match self {
            CsvColumn::Str(a) => write_csv_str(a.value(i), out),
            CsvColumn::U8(a) => out.extend_from_slice(int.format(a.value(i)).as_bytes()),
            CsvColumn::U16(a) => out.extend_from_slice(int.format(a.value(i)).as_bytes()),
            CsvColumn::U32(a) => out.extend_from_slice(int.format(a.value(i)).as_bytes()),
            CsvColumn::U64(a) => out.extend_from_slice(int.format(a.value(i)).as_bytes()),
            CsvColumn::Ts(a) => write_rfc3339_ns(a.value(i), out),
            CsvColumn::Bool(a) => {
                out.extend_from_slice(if a.value(i) { b"true" } else { b"false" })
            }
            CsvColumn::F64(a) => {
                use std::io::Write as _;
                let _ = write!(out, "{}", a.value(i));
            }
            CsvColumn::ListStr(list, values) => {
                // Joined by ';' into one field, quoted as a whole when it needs to be.
                let offsets = list.value_offsets();
                let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
                let mut field = String::new();
                for k in from..to {
                    if k > from {
                        field.push(';');
                    }
                    field.push_str(values.value(k));
                }
                write_csv_str(&field, out);
            }
            CsvColumn::ListU16(list, values) => {
                // Several values in one field, joined by ';' so the field needs no quoting.
                // Read through the offsets: `ListArray::value` would build an array per row.
                let offsets = list.value_offsets();
                let (from, to) = (offsets[i] as usize, offsets[i + 1] as usize);
                for (k, v) in values[from..to].iter().enumerate() {
                    if k > 0 {
                        out.push(b';');
                    }
                    out.extend_from_slice(int.format(*v).as_bytes());
                }
            }
        }
    }
}

/// RFC 4180: quote a field only if it holds a delimiter, a quote or a line break.
fn write_csv_str(s: &str, out: &mut Vec<u8>) {
    if s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.push(b'"');
        for b in s.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// [`write_rfc3339_ns`] as a `String` (for reports, items and messages, not the hot path).
pub fn rfc3339_ns(ts_ns: i64) -> String {
    let mut v = Vec::with_capacity(32);
    write_rfc3339_ns(ts_ns, &mut v);
    // Only ASCII digits and separators are written.
    String::from_utf8_lossy(&v).into_owned()
}

/// `2024-01-31T23:59:59.123456789Z` — RFC 3339, UTC, always nine fractional digits.
pub fn write_rfc3339_ns(ts_ns: i64, out: &mut Vec<u8>) {
    /// Append `v` as exactly `width` decimal digits.
    fn digits(out: &mut Vec<u8>, mut v: u64, width: usize) {
        let mut buf = [b'0'; 20];
        for k in (0..width).rev() {
            buf[k] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend_from_slice(&buf[..width]);
    }
    let secs = ts_ns.div_euclid(1_000_000_000);
    let nanos = ts_ns.rem_euclid(1_000_000_000) as u64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u64;
    if (0..=9999).contains(&y) {
        digits(out, y as u64, 4);
    } else {
        // Outside RFC 3339's four-digit years: ISO 8601's expanded form.
        out.extend_from_slice(format!("{y:+}").as_bytes());
    }
    out.push(b'-');
    digits(out, u64::from(m), 2);
    out.push(b'-');
    digits(out, u64::from(d), 2);
    out.push(b'T');
    digits(out, sod / 3600, 2);
    out.push(b':');
    digits(out, sod / 60 % 60, 2);
    out.push(b':');
    digits(out, sod % 60, 2);
    out.push(b'.');
    digits(out, nanos, 9);
    out.push(b'Z');
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Encode a batch as CSV rows (no header; runs on a worker thread).
pub fn encode_csv(batch: &RecordBatch) -> io::Result<Vec<u8>> {
    let cols = batch
        .columns()
        .iter()
        .map(CsvColumn::of)
        .collect::<io::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(batch.num_rows() * 160);
    let mut int = itoa::Buffer::new();
    for i in 0..batch.num_rows() {
        for (j, c) in cols.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            if !c.is_null(i) {
                c.write(i, &mut out, &mut int);
            }
        }
        out.push(b'\n');
    }
    Ok(out)
}

/// The AWS lab's CSV header.
pub const LAB_CSV_HEADER: &[u8] = b"src,dst,len,proto\n";

/// The lab's rows: per packet an `ip` row (IPv4 source, destination, total length) when it has
/// IPv4, then an `ether` row (source MAC, destination MAC, -1) when it has Ethernet.
pub fn encode_lab_csv(batch: &RecordBatch) -> io::Result<Vec<u8>> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| io::Error::other(format!("batch has no column {name}")))
    };
    let ip_version = column(col::IP_VERSION)?.as_primitive::<UInt8Type>();
    let src_ip = column(col::SRC_IP)?.as_string::<i32>();
    let dst_ip = column(col::DST_IP)?.as_string::<i32>();
    let ip_len = column(col::IP_LEN)?.as_primitive::<UInt32Type>();
    let src_mac = column(col::SRC_MAC)?.as_string::<i32>();
    let dst_mac = column(col::DST_MAC)?.as_string::<i32>();
    let mut out = Vec::with_capacity(batch.num_rows() * 80);
    let mut int = itoa::Buffer::new();
    for i in 0..batch.num_rows() {
        if ip_version.is_valid(i) && ip_version.value(i) == 4 {
            out.extend_from_slice(src_ip.value(i).as_bytes());
            out.push(b',');
            out.extend_from_slice(dst_ip.value(i).as_bytes());
            out.push(b',');
            out.extend_from_slice(int.format(ip_len.value(i)).as_bytes());
            out.extend_from_slice(b",ip\n");
        }
        if src_mac.is_valid(i) && dst_mac.is_valid(i) {
            out.extend_from_slice(src_mac.value(i).as_bytes());
            out.push(b',');
            out.extend_from_slice(dst_mac.value(i).as_bytes());
            out.extend_from_slice(b",-1,ether\n");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc(ts: i64) -> String {
        rfc3339_ns(ts)
    }

    /// A sink keeps each closed row group's metadata encoded (the vendored parquet's seventh
    /// change); its files are the files parquet writes from the row groups' metadata, byte for
    /// byte: without row groups, with each row group's ordinal, and past 32,767 row groups (the
    /// most an ordinal counts) without any.
    #[test]
    fn row_groups_kept_encoded_make_the_same_file() {
        use arrow_array::{StringArray, UInt64Array};
        use parquet::file::reader::{FileReader, SerializedFileReader};

        let schema = Arc::new(arrow_schema::Schema::new(vec![
            arrow_schema::Field::new("n", DataType::UInt64, true),
            arrow_schema::Field::new("s", DataType::Utf8, true),
        ]));
        // Uncompressed: the larger case writes 32,768 row groups.
        let props = common_properties("test")
            .set_compression(Compression::UNCOMPRESSED)
            .build();
        for groups in [0, 3, 32_768] {
            let mut sink =
                ParquetSink::with_schema(Vec::new(), schema.clone(), props.clone()).expect("sink");
            let options = ArrowWriterOptions::new().with_properties(props.clone());
            let (mut plain, _) =
                ArrowWriter::try_new_with_options(Vec::new(), schema.clone(), options)
                    .and_then(ArrowWriter::into_serialized_writer)
                    .expect("writer");
            for g in 0..groups {
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(UInt64Array::from(vec![Some(g), None])),
                        Arc::new(StringArray::from(vec![Some(format!("group {g}")), None])),
                    ],
                )
                .expect("batch");
                sink.append(encode_parquet(&sink.encoder(), &batch).expect("encode"))
                    .expect("append");
                let mut rg = plain.next_row_group().expect("row group");
                for c in encode_parquet(&sink.encoder(), &batch).expect("encode") {
                    c.append_to_row_group(&mut rg).expect("append");
                }
                rg.close().expect("close");
            }
            let kept = sink.finish().expect("footer");
            let plain = plain.into_inner().expect("footer");
            assert!(kept == plain, "{groups} row groups: the files differ");
            let read = SerializedFileReader::new(bytes::Bytes::from(kept)).expect("read back");
            assert_eq!(read.metadata().num_row_groups() as u64, groups);
            assert_eq!(
                read.metadata().file_metadata().num_rows() as u64,
                2 * groups
            );
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(rfc(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc(1_630_165_473_690_298_000),
            "2021-08-28T15:44:33.690298000Z"
        );
        assert_eq!(
            rfc(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(rfc(-1), "1969-12-31T23:59:59.999999999Z");
        // Beyond 2106 (32-bit seconds overflow).
        assert_eq!(
            rfc(4_354_732_800 * 1_000_000_000),
            "2107-12-31T00:00:00.000000000Z"
        );
        // Extremes do not panic.
        let _ = rfc(i64::MIN);
        let _ = rfc(i64::MAX);
    }

    #[test]
    fn csv_quoting() {
        let mut v = Vec::new();
        write_csv_str("a,b\"c", &mut v);
        assert_eq!(v, b"\"a,b\"\"c\"");
        v.clear();
        write_csv_str("plain", &mut v);
        assert_eq!(v, b"plain");
    }

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.name()), Some(f));
        }
        assert_eq!(Format::parse("xml"), None);
    }

    /// The workspace patches zstd (vendor/zstd) so that a bulk decompressor creates its
    /// context when it is first used: it must still decompress, with or without a dictionary,
    /// and keep working once its context exists.
    #[test]
    fn the_patched_zstd_decompresses_with_a_context_made_on_first_use() {
        let data = b"pcaplab writes parquet ".repeat(500);
        let packed = zstd::bulk::Compressor::new(1)
            .and_then(|mut c| c.compress(&data))
            .expect("compress");
        let mut d = zstd::bulk::Decompressor::new().expect("decompressor");
        for _ in 0..2 {
            assert_eq!(d.decompress(&packed, data.len()).expect("decompress"), data);
        }
        assert!(
            d.decompress(&packed, data.len() - 1).is_err(),
            "too small a buffer"
        );
        assert_eq!(
            d.decompress(&packed, data.len()).expect("after an error"),
            data
        );

        let dict = b"parquet pcaplab writes".repeat(4);
        let packed = zstd::bulk::Compressor::with_dictionary(1, &dict)
            .and_then(|mut c| c.compress(&data))
            .expect("compress with a dictionary");
        let mut d = zstd::bulk::Decompressor::with_dictionary(&dict).expect("dictionary");
        assert_eq!(d.decompress(&packed, data.len()).expect("decompress"), data);
        let mut without = zstd::bulk::Decompressor::new().expect("decompressor");
        assert!(
            without.decompress(&packed, data.len()).is_err(),
            "a frame that needs the dictionary"
        );
    }
}
