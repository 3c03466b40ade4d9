//! The patched parquet crate (`vendor/parquet/PATCHED.md`): its dictionary encoder of fixed-width
//! values looks in a direct-mapped cache of recently interned values before hashing. A wrong key
//! from that cache would read back as a different value, so these tests write columns of every
//! cached type, with many more distinct values than the cache has slots (so values share slots
//! and evict each other), runs, nulls, floats whose bits differ but compare equal (0.0 and -0.0)
//! or compare unequal to themselves (NaN), dictionaries that fall back to plain encoding in
//! mid-chunk, and several pages and row groups, and read them back bit for bit.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Encoding;
use parquet::file::properties::WriterProperties;
use proptest::prelude::*;

/// Writes the four columns with dictionaries on, reads them back, and returns what was read and
/// whether every column chunk used a dictionary.
fn round_trip(batch: &RecordBatch, dictionary_limit: usize) -> (RecordBatch, bool) {
    let props = WriterProperties::builder()
        .set_dictionary_enabled(true)
        .set_dictionary_page_size_limit(dictionary_limit)
        .set_data_page_row_count_limit(333)
        .set_write_batch_size(97)
        .set_max_row_group_row_count(Some(1500))
        .build();
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
    let specials = [0.0f64, -0.0, f64::NAN, -f64::NAN, f64::INFINITY];
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
                .map(|v| {
                    let b = pick(v)?;
                    Some(match b % 7 {
                        0 => specials[(b / 7) as usize % specials.len()] as f32,
                        _ => f32::from_bits(b as u32),
                    })
                })
                .collect::<Float32Array>(),
        ),
        Arc::new(
            values
                .iter()
                .map(|v| {
                    let b = pick(v)?;
                    Some(match b % 7 {
                        0 => specials[(b / 7) as usize % specials.len()],
                        _ => f64::from_bits(b.rotate_left(17)),
                    })
                })
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
    let mut state = 0x1234_5678u32;
    for row in 0..20_000u32 {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
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
