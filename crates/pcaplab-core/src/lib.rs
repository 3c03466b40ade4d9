//! pcaplab-core: packet captures in, Arrow columns out.
//!
//! Bytes come in through any [`std::io::Read`] (the core never opens a file or a socket);
//! [`reader`] frames them (pcap, pcapng, snoop; plain, gzip or zstd), [`dissect`] decodes each
//! frame, [`columns`] builds Arrow record batches, and [`encode`] writes Parquet, CSV and the
//! AWS lab's CSV from those batches. [`convert::Engine`] runs that pipeline in parallel with
//! bounded memory, keeping file order.

pub mod app;
pub mod columns;
pub mod convert;
pub mod dissect;
pub mod encode;
pub mod extract;
pub mod flows;
#[doc(hidden)]
pub mod fuzzing;
pub mod item;
pub mod reader;
pub mod row_groups;
mod spare;
pub mod split;
pub mod split_run;
pub mod summary;
mod text;

pub use columns::{Rows, decode_chunk, decode_chunk_as, decode_chunk_with, schema};
pub use convert::{
    BuildError, ConvertError, Engine, EngineBuilder, Opened, Outputs, OutputsError, Report,
};
pub use dissect::frag::{FragConfig, FragStats};
pub use encode::Format;
pub use flows::{FlowConfig, FlowStats, flow_schema};
pub use item::{AttrValue, Item, ItemSource, Outcome as ItemOutcome, summary_item};
pub use reader::{
    CaptureFormat, CaptureReader, Compression, ReadError, RecordSpan, decompressed, probe, sniff,
};
pub use summary::{Counts, Summary, Traffic, human_bytes};
