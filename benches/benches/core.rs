//! Criterion benchmarks of the core, in bytes of capture per second.
//!
//! Input: `$PCAPLAB_BENCH_INPUT`, else the corpus' pcap-parser__wireshark_samples-test.pcapng
//! (`$PCAPLAB_CORPUS`), else the project's own captures/lab-web.pcap — read into memory once,
//! so that storage is not measured.

use std::io::{Cursor, Write};
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pcaplab_core::convert::{DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_FRAMES};
use pcaplab_core::reader::Chunk;
use pcaplab_core::{CaptureReader, Engine, Outputs, decode_chunk};

fn input() -> (String, Vec<u8>) {
    let candidates = [
        std::env::var_os("PCAPLAB_BENCH_INPUT").map(PathBuf::from),
        std::env::var_os("PCAPLAB_CORPUS")
            .map(|d| PathBuf::from(d).join("pcap-parser__wireshark_samples-test.pcapng")),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../captures/lab-web.pcap")),
    ];
    for p in candidates.into_iter().flatten() {
        if let Ok(bytes) = std::fs::read(&p) {
            return (p.display().to_string(), bytes);
        }
    }
    panic!("no benchmark input found: set PCAPLAB_BENCH_INPUT or PCAPLAB_CORPUS");
}

/// A writer that only counts, so that the benchmark measures encoding, not storage.
struct Discard(u64);

impl Write for Discard {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Frame `bytes` into chunks of the engine's default size; sum `f` over them.
fn for_each_chunk(bytes: &[u8], mut f: impl FnMut(&Chunk) -> usize) -> usize {
    let mut r = CaptureReader::new(Box::new(Cursor::new(bytes.to_vec()))).expect("open");
    let mut total = 0;
    loop {
        let mut chunk = Chunk::default();
        let more = r
            .fill(&mut chunk, DEFAULT_CHUNK_FRAMES, DEFAULT_CHUNK_BYTES)
            .expect("read");
        total += f(&chunk);
        if !more {
            return total;
        }
    }
}

fn benches(c: &mut Criterion) {
    let (name, bytes) = input();
    eprintln!("benchmark input: {name} ({} bytes)", bytes.len());
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.sample_size(20);

    g.bench_function("frame", |b| {
        b.iter(|| for_each_chunk(&bytes, |c| c.frames.len()))
    });

    g.bench_function("frame+dissect+columns (1 thread)", |b| {
        b.iter(|| {
            for_each_chunk(&bytes, |c| {
                decode_chunk("bench", c).expect("decode").batch.num_rows()
            })
        })
    });

    for jobs in [1, 2] {
        let engine = Engine::builder().jobs(jobs).build().expect("engine");
        for (label, parquet, csv) in [("parquet", true, false), ("csv", false, true)] {
            g.bench_function(format!("convert {label} ({jobs} jobs)"), |b| {
                b.iter(|| {
                    let mut outputs = Outputs::default();
                    if parquet {
                        outputs.parquet = Some(Box::new(Discard(0)));
                    }
                    if csv {
                        outputs.csv = Some(Box::new(Discard(0)));
                    }
                    engine
                        .convert("bench", Box::new(Cursor::new(bytes.clone())), outputs)
                        .expect("convert")
                        .summary
                        .packets
                })
            });
        }
    }
    g.finish();
}

criterion_group!(core, benches);
criterion_main!(core);
