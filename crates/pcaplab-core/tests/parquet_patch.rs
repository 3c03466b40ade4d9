//! The patched parquet crate (`vendor/parquet/PATCHED.md`).
//!
//! 1. Its dictionary encoders of fixed-width values and of short byte strings look in a
//!    direct-mapped cache of recently interned values before hashing. A wrong key from that
//!    cache would read back as a different value, so these tests write columns of every cached
//!    type, with many more distinct values than the cache has slots (so values share slots and
//!    evict each other), runs, nulls, floats whose bits differ but compare equal (0.0 and -0.0)
//!    or compare unequal to themselves (NaN), byte strings of every length that differ in one
//!    byte anywhere, dictionaries that fall back to plain encoding in mid-chunk, and several
//!    pages and row groups, and read them back bit for bit.
//! 2. Its text and integer columns' chunk statistics, with a dictionary, are the min and max of
//!    the values added to the dictionary rather than of every row: the tests compare each row
//!    group's statistics with the min and max of its values, at every statistics level, with and
//!    without a dictionary falling back, for text and for signed and unsigned integers.
//! 3. Its ZSTD codec compresses with one zstd context per thread, not one per column chunk: the
//!    tests write the same batch at one level on a fresh thread and on threads whose context
//!    has compressed other data at other levels, and compare the files byte for byte.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BinaryArray, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, UInt16Array, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use proptest::prelude::*;

/// A linear congruential generator's states after `seed` (repeatable test data).
fn pseudo_random(seed: u32) -> impl Iterator<Item = u32> {
    std::iter::successors(Some(seed), |s| {
        Some(s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223))
    })
    .skip(1)
}

/// Dictionaries on, with at most `dictionary_limit` bytes each before falling back to plain;
/// pages, write batches and row groups far smaller than the defaults, so that a few thousand
/// rows cross many of each.
fn small_pages(dictionary_limit: usize) -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_dictionary_enabled(true)
        .set_dictionary_page_size_limit(dictionary_limit)
        .set_data_page_row_count_limit(333)
        .set_write_batch_size(97)
        .set_max_row_group_row_count(Some(1500))
}

/// Writes the four columns with dictionaries on, reads them back, and returns what was read and
/// whether every column chunk used a dictionary.
fn round_trip(batch: &RecordBatch, dictionary_limit: usize) -> (RecordBatch, bool) {
    let props = small_pages(dictionary_limit).build();
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).expect("a Parquet writer");
    writer.write(batch).expect("the batch is written");
    writer.close().expect("the file is closed");

    let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(out)).expect("a reader");
    let dictionary_used = builder.metadata().row_groups().iter().all(|rg| {
        rg.columns()
            .iter()
            .all(|c| c.encodings().any(|e| e == Encoding::RLE_DICTIONARY))
    });
    let batches: Vec<RecordBatch> = builder
        .with_batch_size(batch.num_rows().max(1))
        .build()
        .expect("a batch reader")
        .collect::<Result<_, _>>()
        .expect("the file reads back");
    let read = arrow_select::concat::concat_batches(&batch.schema(), &batches)
        .expect("the batches concatenate");
    (read, dictionary_used)
}

/// A value's bits (`None` for null), so that NaN equals NaN and 0.0 differs from -0.0.
fn bits(column: &ArrayRef) -> Vec<Option<u64>> {
    if let Some(a) = column.as_any().downcast_ref::<Int32Array>() {
        a.iter().map(|v| v.map(|v| u64::from(v as u32))).collect()
    } else if let Some(a) = column.as_any().downcast_ref::<Int64Array>() {
        a.iter().map(|v| v.map(|v| v as u64)).collect()
    } else if let Some(a) = column.as_any().downcast_ref::<Float32Array>() {
        a.iter()
            .map(|v| v.map(|v| u64::from(v.to_bits())))
            .collect()
    } else if let Some(a) = column.as_any().downcast_ref::<Float64Array>() {
        a.iter().map(|v| v.map(f64::to_bits)).collect()
    } else {
        panic!("unexpected column type {}", column.data_type())
    }
}

fn batch(values: &[Option<u32>], pool: &[u64]) -> RecordBatch {
    let pick = |v: &Option<u32>| v.map(|i| pool[i as usize % pool.len()]);
    // Every seventh pool value stands for a float that is special to compare (±0.0, ±NaN, ∞),
    // the others for their bits as a float.
    let specials = [0.0f64, -0.0, f64::NAN, -f64::NAN, f64::INFINITY];
    let special = |b: u64| {
        b.is_multiple_of(7)
            .then(|| specials[(b / 7) as usize % specials.len()])
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("i32", DataType::Int32, true),
        Field::new("i64", DataType::Int64, true),
        Field::new("f32", DataType::Float32, true),
        Field::new("f64", DataType::Float64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            values
                .iter()
                .map(|v| pick(v).map(|b| b as i32))
                .collect::<Int32Array>(),
        ),
        Arc::new(
            values
                .iter()
                .map(|v| pick(v).map(|b| b as i64))
                .collect::<Int64Array>(),
        ),
        Arc::new(
            values
                .iter()
                .map(|v| pick(v).map(|b| special(b).map_or(f32::from_bits(b as u32), |s| s as f32)))
                .collect::<Float32Array>(),
        ),
        Arc::new(
            values
                .iter()
                .map(|v| pick(v).map(|b| special(b).unwrap_or(f64::from_bits(b.rotate_left(17)))))
                .collect::<Float64Array>(),
        ),
    ];
    RecordBatch::try_new(schema, columns).expect("a batch")
}

fn assert_same(values: &[Option<u32>], pool: &[u64], dictionary_limit: usize) -> bool {
    let written = batch(values, pool);
    let (read, dictionary_used) = round_trip(&written, dictionary_limit);
    assert_eq!(read.num_rows(), written.num_rows());
    for (i, field) in written.schema().fields().iter().enumerate() {
        assert_eq!(
            bits(read.column(i)),
            bits(written.column(i)),
            "column {} read back different values",
            field.name()
        );
    }
    dictionary_used
}

/// 2,000 distinct values over 256 slots, with runs and nulls, in a dictionary that never falls
/// back: every chunk is dictionary-encoded, so the cache is what gave every key.
#[test]
fn colliding_values_read_back() {
    let pool: Vec<u64> = (0..2000u64)
        .map(|i| i.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (i << 3))
        .collect();
    let mut values = Vec::new();
    for (row, state) in (0..20_000u32).zip(pseudo_random(0x1234_5678)) {
        values.push(match row % 50 {
            0..=4 => None,
            5..=14 => Some(7), // a run of one value
            _ => Some(state >> 8),
        });
    }
    assert!(
        assert_same(&values, &pool, 1 << 20),
        "every column chunk should be dictionary-encoded"
    );
}

/// A tiny dictionary limit: each chunk's dictionary falls back to plain in mid-chunk.
#[test]
fn values_read_back_after_the_dictionary_falls_back() {
    let pool: Vec<u64> = (0..5000u64).map(|i| i * 0x9E37_79B9 + 1).collect();
    let values: Vec<Option<u32>> = (0..10_000u32)
        .map(|i| Some(i.wrapping_mul(2_654_435_761)))
        .collect();
    assert_same(&values, &pool, 256);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn any_values_read_back(
        values in proptest::collection::vec(proptest::option::weighted(0.9, 0u32..3000), 0..4000),
        pool in proptest::collection::vec(any::<u64>(), 1..600),
        small_dictionary in any::<bool>(),
    ) {
        assert_same(&values, &pool, if small_dictionary { 512 } else { 1 << 20 });
    }
}

/// Writes `values` as a binary column with dictionaries on (falling back to plain past
/// `dictionary_limit` bytes), reads it back, asserts the values are the same, and returns
/// whether every column chunk used a dictionary.
fn assert_bytes_read_back(values: &[Option<Vec<u8>>], dictionary_limit: usize) -> bool {
    let column: ArrayRef = Arc::new(values.iter().map(Option::as_deref).collect::<BinaryArray>());
    let schema = Arc::new(Schema::new(vec![Field::new("b", DataType::Binary, true)]));
    let written = RecordBatch::try_new(schema, vec![column]).expect("a batch");
    let (read, dictionary_used) = round_trip(&written, dictionary_limit);
    let read = read
        .column(0)
        .as_any()
        .downcast_ref::<BinaryArray>()
        .expect("a binary column")
        .iter()
        .map(|v| v.map(<[u8]>::to_vec))
        .collect::<Vec<_>>();
    assert_eq!(read, values, "the byte strings read back different");
    dictionary_used
}

/// Byte strings of every length up to 40 (the cache takes up to 32 bytes), each of one length
/// differing from the others in one byte, anywhere: about 860 distinct values over 256 slots,
/// with runs and nulls, in dictionaries that hold (so the cache gave every key) and that fall
/// back.
#[test]
fn byte_strings_differing_in_one_byte_read_back() {
    let mut pool = Vec::new();
    for len in 0..=40 {
        let base = vec![b'a'; len];
        pool.push(base.clone());
        for at in 0..len {
            let mut v = base.clone();
            v[at] = b'c';
            pool.push(v);
        }
    }
    let mut values = Vec::new();
    for (row, state) in (0..20_000u32).zip(pseudo_random(0x0bad_cafe)) {
        values.push(match row % 40 {
            0..=2 => None,
            3..=9 => Some(pool[row as usize / 40 % pool.len()].clone()), // a run
            _ => Some(pool[(state >> 8) as usize % pool.len()].clone()),
        });
    }
    assert!(
        assert_bytes_read_back(&values, 1 << 20),
        "every column chunk should be dictionary-encoded"
    );
    assert_bytes_read_back(&values, 300);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn any_byte_strings_read_back(
        values in proptest::collection::vec(
            proptest::option::weighted(0.9, proptest::collection::vec(0u8..4, 0..36)),
            0..3000,
        ),
        small_dictionary in any::<bool>(),
    ) {
        assert_bytes_read_back(&values, if small_dictionary { 512 } else { 1 << 20 });
    }
}

/// A row group's rows and its chunk statistics' (min, max), if it has them.
type GroupStatistics = (usize, Option<(Vec<u8>, Vec<u8>)>);

/// Writes `column` alone, in batches of 500 rows, and returns per row group the rows it holds
/// and its chunk statistics (min, max, as Parquet stores them: little-endian for integers).
fn chunk_statistics(
    column: &ArrayRef,
    level: EnabledStatistics,
    dictionary_limit: usize,
) -> Vec<GroupStatistics> {
    let field = Field::new("c", column.data_type().clone(), true);
    let schema = Arc::new(Schema::new(vec![field]));
    let batch = RecordBatch::try_new(schema.clone(), vec![column.clone()]).expect("a batch");
    let props = small_pages(dictionary_limit)
        .set_statistics_enabled(level)
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).expect("a writer");
    // In several batches, as pcaplab writes a row group.
    let mut at = 0;
    while at < batch.num_rows() {
        let len = (batch.num_rows() - at).min(500);
        writer
            .write(&batch.slice(at, len))
            .expect("a batch is written");
        at += len;
    }
    writer.close().expect("the file is closed");
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(out)).expect("a reader");
    reader
        .metadata()
        .row_groups()
        .iter()
        .map(|rg| {
            let c = rg.column(0);
            let minmax = c
                .statistics()
                .and_then(|s| Some((s.min_bytes_opt()?.to_vec(), s.max_bytes_opt()?.to_vec())));
            (rg.num_rows() as usize, minmax)
        })
        .collect()
}

/// Each row group's min and max are `expected` of its rows (their non-null values' min and
/// max), whatever the statistics level and whether its dictionary holds or falls back to plain.
fn assert_statistics(column: &ArrayRef, expected: impl Fn(Range<usize>) -> Option<MinMax>) {
    for level in [EnabledStatistics::Chunk, EnabledStatistics::Page] {
        for dictionary_limit in [1 << 20, 300] {
            let groups = chunk_statistics(column, level, dictionary_limit);
            let mut at = 0;
            for (rows, minmax) in groups {
                assert_eq!(
                    minmax,
                    expected(at..at + rows),
                    "rows {at}..{} at {level:?}, dictionary limit {dictionary_limit}",
                    at + rows
                );
                at += rows;
            }
            assert_eq!(at, column.len());
        }
    }
    let groups = chunk_statistics(column, EnabledStatistics::None, 1 << 20);
    assert!(groups.iter().all(|(_, minmax)| minmax.is_none()));
}

/// A min and a max, as bytes.
type MinMax = (Vec<u8>, Vec<u8>);

/// The min and max of the non-null `values`, as bytes.
fn min_max<'a, T: Ord + Copy + 'a, B: AsRef<[u8]>>(
    values: impl Iterator<Item = &'a Option<T>> + Clone,
    bytes: impl Fn(T) -> B,
) -> Option<MinMax> {
    let values = values.flatten().copied();
    let (min, max) = values.clone().min().zip(values.max())?;
    Some((bytes(min).as_ref().to_vec(), bytes(max).as_ref().to_vec()))
}

fn assert_text_statistics(texts: &[Option<String>]) {
    let column: ArrayRef = Arc::new(texts.iter().cloned().collect::<StringArray>());
    let texts: Vec<Option<&str>> = texts.iter().map(Option::as_deref).collect();
    assert_statistics(&column, |rows| min_max(texts[rows].iter(), str::as_bytes));
}

/// Integer columns as Parquet stores them (INT32, INT64; and UInt16 and UInt32 as INT32
/// compared unsigned, where values past `i32::MAX` are the largest): each row group's min and
/// max.
fn assert_integer_statistics(values: &[Option<u32>]) {
    let as_i32: Vec<Option<i32>> = values.iter().map(|v| v.map(|v| v as i32)).collect();
    let column: ArrayRef = Arc::new(as_i32.iter().copied().collect::<Int32Array>());
    assert_statistics(&column, |r| min_max(as_i32[r].iter(), i32::to_le_bytes));

    let as_u32: Vec<Option<u32>> = values.to_vec();
    let column: ArrayRef = Arc::new(as_u32.iter().copied().collect::<UInt32Array>());
    assert_statistics(&column, |r| min_max(as_u32[r].iter(), u32::to_le_bytes));

    let as_u16: Vec<Option<u16>> = values.iter().map(|v| v.map(|v| v as u16)).collect();
    let column: ArrayRef = Arc::new(as_u16.iter().copied().collect::<UInt16Array>());
    assert_statistics(&column, |r| {
        min_max(as_u16[r].iter(), |v| i32::from(v).to_le_bytes())
    });

    let as_i64: Vec<Option<i64>> = values
        .iter()
        .map(|v| v.map(|v| i64::from(v as i32).wrapping_mul(0x1_0000_0001)))
        .collect();
    let column: ArrayRef = Arc::new(as_i64.iter().copied().collect::<Int64Array>());
    assert_statistics(&column, |r| min_max(as_i64[r].iter(), i64::to_le_bytes));
}

/// Integers as pcaplab's columns hold them: runs, a few hundred distinct values, nulls, all-null
/// stretches, and a new minimum and maximum (signed and unsigned) late in a row group.
#[test]
fn integer_statistics_are_the_values_min_and_max() {
    let mut values = Vec::new();
    for (row, state) in (0..5000u32).zip(pseudo_random(0x0dd_ba11)) {
        values.push(match row % 1200 {
            0..=40 => None,
            1100 => Some(0),
            1101 => Some(u32::MAX),
            1102 => Some(1 << 31),
            _ if row % 7 == 0 => None,
            _ if row % 5 == 0 => Some(443),
            _ => Some(1000 + (state >> 8) % 700),
        });
    }
    assert_integer_statistics(&values);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn any_integer_statistics(
        values in proptest::collection::vec(proptest::option::weighted(0.85, any::<u32>()), 0..2500),
    ) {
        assert_integer_statistics(&values);
    }
}

/// Addresses as pcaplab writes them: runs, repeats across batches and pages, nulls, a few
/// all-null stretches, and a new minimum and maximum late in a row group.
#[test]
fn text_statistics_are_the_values_min_and_max() {
    let mut texts = Vec::new();
    for (row, state) in (0..5000u32).zip(pseudo_random(0x9e37_79b9)) {
        texts.push(match row % 1200 {
            0..=40 => None,
            1100 => Some("0.0.0.0".to_owned()),
            1101 => Some("255.255.255.255".to_owned()),
            _ if row % 7 == 0 => None,
            _ => Some(format!(
                "10.{}.{}.{}",
                (state >> 24) % 4,
                (state >> 16) % 50,
                row % 3
            )),
        });
    }
    assert_text_statistics(&texts);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn any_text_statistics(
        texts in proptest::collection::vec(
            proptest::option::weighted(0.85, "[a-c]{0,3}|[\\x00-\\u{ff}]{0,12}"),
            0..2500,
        ),
    ) {
        assert_text_statistics(&texts);
    }
}

/// A text column that compresses differently at different zstd levels, and an integer one.
fn compressible_batch(seed: u32, rows: usize) -> RecordBatch {
    let words = ["syn", "ack", "fin", "rst", "psh", "urg", "ece", "cwr"];
    let states: Vec<u32> = pseudo_random(seed).take(rows).collect();
    let text: StringArray = states
        .iter()
        .map(|s| Some(format!("{}-{}", words[(s >> 29) as usize], (s >> 12) % 300)))
        .collect();
    let numbers: UInt32Array = states.iter().map(|s| Some(s % 5000)).collect();
    RecordBatch::try_from_iter([
        ("text", Arc::new(text) as ArrayRef),
        ("number", Arc::new(numbers) as ArrayRef),
    ])
    .expect("a batch")
}

/// `batch` written with zstd at `level` (no dictionaries, so the pages hold the values), after
/// checking that it reads back.
fn zstd_file(batch: &RecordBatch, level: i32) -> Vec<u8> {
    let props = small_pages(0)
        .set_dictionary_enabled(false)
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(level).expect("a level"),
        ))
        .build();
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).expect("a Parquet writer");
    writer.write(batch).expect("the batch is written");
    writer.close().expect("the file is closed");
    let read: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(out.clone()))
        .expect("a reader")
        .build()
        .expect("a reader")
        .collect::<Result<_, _>>()
        .expect("the file reads back");
    let read = arrow_select::concat::concat_batches(&batch.schema(), &read).expect("one batch");
    assert_eq!(&read, batch, "zstd level {level}: values read back");
    out
}

#[test]
fn zstd_files_do_not_depend_on_what_the_thread_compressed_before() {
    let batch = compressible_batch(7, 6000);
    let on_a_new_thread = |level: i32| {
        let batch = batch.clone();
        std::thread::spawn(move || zstd_file(&batch, level))
            .join()
            .expect("the writing thread")
    };
    let fresh: Vec<(i32, Vec<u8>)> = [1, 3, 19]
        .into_iter()
        .map(|level| (level, on_a_new_thread(level)))
        .collect();
    assert_ne!(fresh[0].1, fresh[2].1, "the level is applied");
    let other = compressible_batch(99, 9000);
    let reused = std::thread::spawn(move || {
        let mut files = Vec::new();
        for level in [19, 1, 3, 1, 19, 3] {
            zstd_file(&other, 22 - level);
            files.push((level, zstd_file(&batch, level)));
        }
        files
    })
    .join()
    .expect("the writing thread");
    for (level, file) in reused {
        let expected = &fresh.iter().find(|(l, _)| *l == level).expect("a level").1;
        assert!(
            &file == expected,
            "level {level} after other compressions: the bytes a new thread writes"
        );
    }
}
