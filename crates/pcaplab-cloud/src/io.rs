//! Bridges between the core's blocking `Read` / `Write` and object_store's async streams.
//!
//! The core frames and writes on plain threads; object_store speaks async. A download is a
//! task pushing the object's byte chunks into a small bounded channel that a blocking
//! [`StreamReader`] drains; an upload is a task feeding object_store's [`BufWriter`]
//! (multipart above its capacity) from a bounded channel that a blocking [`UploadWriter`]
//! fills. The channels are the only buffers, so memory per object stays a few MiB whatever its
//! size, and a slow side slows the other down instead of piling up bytes.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Chunks in flight between a download task and its reader.
const DOWNLOAD_CHUNKS: usize = 8;
/// Bytes the writer collects before handing them to the upload task.
const UPLOAD_CHUNK: usize = 1 << 20;
/// Chunks in flight between a writer and its upload task.
const UPLOAD_CHUNKS: usize = 4;
/// Multipart part size on S3 (its minimum is 5 MiB; 10,000 parts of 8 MiB allow 78 GiB
/// outputs).
pub const PART_SIZE: usize = 8 << 20;
/// Part size on a local file system, which has no minimum: each part is a buffer held in
/// memory, so small parts keep a local conversion's memory small.
pub const LOCAL_PART_SIZE: usize = 1 << 20;
/// Parts uploaded at once per output.
const PART_CONCURRENCY: usize = 2;

/// A blocking reader over an object's byte stream.
///
/// A transport failure (the connection dropped mid-object, say) reaches the core as an I/O
/// error, which it reports as damage at that offset; [`StreamReader::transport_failed`] lets
/// the caller tell such faults — worth a retry — from a damaged capture.
pub struct StreamReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    failed: Arc<AtomicBool>,
    progress: Option<Arc<AtomicU64>>,
}

impl StreamReader {
    /// Start pulling `stream` on `runtime`; dropping the reader stops the download.
    pub fn spawn(
        runtime: &Handle,
        mut stream: BoxStream<'static, object_store::Result<Bytes>>,
        progress: Option<Arc<AtomicU64>>,
    ) -> (Self, Arc<AtomicBool>) {
        let (tx, rx) = mpsc::channel(DOWNLOAD_CHUNKS);
        let failed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&failed);
        runtime.spawn(async move {
            while let Some(item) = stream.next().await {
                let item = item.map_err(|e| {
                    flag.store(true, Ordering::Relaxed);
                    io::Error::other(e)
                });
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        let reader = StreamReader {
            rx,
            current: Bytes::new(),
            failed: Arc::clone(&failed),
            progress,
        };
        (reader, failed)
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(e),
                None if self.failed.load(Ordering::Relaxed) => {
                    return Err(io::Error::other("download stopped"));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        if let Some(p) = &self.progress {
            p.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// How an upload ends.
enum Ending {
    Commit,
    Abort,
}

/// The blocking write side of an upload (handed to the core as an output).
pub struct UploadWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
    url: Arc<str>,
}

/// The control side of an upload, kept by the job: nothing is visible under the final name
/// until [`Upload::commit`] completes; [`Upload::abort`] (or dropping it) discards the parts.
pub struct Upload {
    end: oneshot::Sender<Ending>,
    task: JoinHandle<object_store::Result<()>>,
    url: Arc<str>,
}

/// Start an upload of `path` in `store` in parts of `part_size` bytes; `url` names it in
/// errors.
pub fn upload(
    runtime: &Handle,
    store: Arc<dyn ObjectStore>,
    path: Path,
    url: String,
    part_size: usize,
) -> (Upload, UploadWriter) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(UPLOAD_CHUNKS);
    let (end_tx, end_rx) = oneshot::channel();
    let task = runtime.spawn(async move {
        let mut writer =
            BufWriter::with_capacity(store, path, part_size).with_max_concurrency(PART_CONCURRENCY);
        let mut failure = None;
        while let Some(bytes) = rx.recv().await {
            if let Err(e) = writer.put(bytes).await {
                failure = Some(e);
                break;
            }
        }
        // Closing our end makes a writer still sending fail at once.
        drop(rx);
        let ending = end_rx.await.unwrap_or(Ending::Abort);
        match (failure, ending) {
            (None, Ending::Commit) => {
                use tokio::io::AsyncWriteExt;
                writer
                    .shutdown()
                    .await
                    .map_err(|e| object_store::Error::Generic {
                        store: "upload",
                        source: Box::new(e),
                    })
            }
            (failure, _) => {
                let aborted = writer.abort().await;
                match failure {
                    Some(e) => Err(e),
                    None => aborted,
                }
            }
        }
    });
    let url: Arc<str> = Arc::from(url);
    let control = Upload {
        end: end_tx,
        task,
        url: Arc::clone(&url),
    };
    let writer = UploadWriter {
        tx,
        buf: Vec::with_capacity(UPLOAD_CHUNK),
        url,
    };
    (control, writer)
}

impl UploadWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let bytes = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(UPLOAD_CHUNK),
        ));
        self.tx.blocking_send(bytes).map_err(|_| {
            io::Error::other(format!("upload to {} stopped (see its error)", self.url))
        })
    }
}

impl Write for UploadWriter {
    /// Takes at most what fills the current chunk, so that every chunk in flight is at most
    /// [`UPLOAD_CHUNK`] bytes however large the caller's writes are (a row group's column
    /// chunks are written whole).
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(UPLOAD_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= UPLOAD_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    /// Hands buffered bytes to the upload task (the core flushes once, at the end).
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl Upload {
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Complete the upload: the object appears under its name, whole. Call it after the
    /// writer was flushed and dropped.
    pub async fn commit(self) -> Result<(), object_store::Error> {
        self.finish(Ending::Commit).await
    }

    /// Discard what was uploaded.
    pub async fn abort(self) -> Result<(), object_store::Error> {
        self.finish(Ending::Abort).await
    }

    async fn finish(self, ending: Ending) -> Result<(), object_store::Error> {
        let _ = self.end.send(ending);
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(object_store::Error::Generic {
                store: "upload",
                source: Box::new(e),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_runtime as runtime;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    /// Write `len` bytes of a pattern through an upload, then commit or abort it.
    fn write(store: &Arc<InMemory>, rt: &tokio::runtime::Runtime, len: usize, commit: bool) {
        let dyn_store: Arc<dyn ObjectStore> = Arc::clone(store) as Arc<dyn ObjectStore>;
        let (control, mut writer) = upload(
            rt.handle(),
            dyn_store,
            Path::from("out/x.bin"),
            "mem://out/x.bin".into(),
            PART_SIZE,
        );
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(100_003) {
            writer.write_all(piece).expect("write");
        }
        writer.flush().expect("flush");
        drop(writer);
        let r = if commit {
            rt.block_on(control.commit())
        } else {
            rt.block_on(control.abort())
        };
        r.expect("finish");
    }

    #[test]
    fn committed_uploads_appear_whole_aborted_ones_not_at_all() {
        let rt = runtime();
        let store = Arc::new(InMemory::new());
        // Above the part size: a multipart upload of several parts.
        let len = PART_SIZE * 2 + 12_345;
        write(&store, &rt, len, false);
        let missing = rt.block_on(store.head(&Path::from("out/x.bin")));
        assert!(matches!(missing, Err(object_store::Error::NotFound { .. })));
        write(&store, &rt, len, true);
        let got = rt
            .block_on(async { store.get(&Path::from("out/x.bin")).await?.bytes().await })
            .expect("get");
        assert_eq!(got.len(), len);
        assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        // A small output is one plain put.
        write(&store, &rt, 10, true);
        let head = rt
            .block_on(store.head(&Path::from("out/x.bin")))
            .expect("head");
        assert_eq!(head.size, 10);
    }

    #[test]
    fn large_writes_travel_in_bounded_chunks() {
        let (tx, mut rx) = mpsc::channel::<Bytes>(64);
        let mut writer = UploadWriter {
            tx,
            buf: Vec::new(),
            url: Arc::from("mem://z"),
        };
        let data: Vec<u8> = (0..5 * UPLOAD_CHUNK + 77)
            .map(|i| (i % 253) as u8)
            .collect();
        writer.write_all(&data[..10]).expect("write");
        writer.write_all(&data[10..]).expect("write");
        writer.flush().expect("flush");
        drop(writer);
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        while let Ok(chunk) = rx.try_recv() {
            sizes.push(chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, data);
        assert_eq!(
            sizes,
            [
                UPLOAD_CHUNK,
                UPLOAD_CHUNK,
                UPLOAD_CHUNK,
                UPLOAD_CHUNK,
                UPLOAD_CHUNK,
                77
            ]
        );
    }

    #[test]
    fn a_dropped_upload_is_aborted() {
        let rt = runtime();
        let store = Arc::new(InMemory::new());
        let dyn_store: Arc<dyn ObjectStore> = Arc::clone(&store) as Arc<dyn ObjectStore>;
        let (control, mut writer) = upload(
            rt.handle(),
            dyn_store,
            Path::from("y"),
            "mem://y".into(),
            PART_SIZE,
        );
        writer.write_all(&[1; 4096]).expect("write");
        writer.flush().expect("flush");
        drop(writer);
        drop(control);
        // Let the task run to its end.
        rt.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(100)).await });
        assert!(rt.block_on(store.head(&Path::from("y"))).is_err());
    }

    #[test]
    fn the_stream_reader_returns_the_object_and_counts_it() {
        let rt = runtime();
        let store = InMemory::new();
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 7) as u8).collect();
        let path = Path::from("in/cap");
        rt.block_on(store.put(&path, body.clone().into()))
            .expect("put");
        let stream = rt.block_on(store.get(&path)).expect("get").into_stream();
        let progress = Arc::new(AtomicU64::new(0));
        let (mut reader, failed) =
            StreamReader::spawn(rt.handle(), stream, Some(Arc::clone(&progress)));
        let mut got = Vec::new();
        reader.read_to_end(&mut got).expect("read");
        assert_eq!(got, body);
        assert_eq!(progress.load(Ordering::Relaxed), body.len() as u64);
        assert!(!failed.load(Ordering::Relaxed));
    }

    #[test]
    fn a_failed_stream_is_a_transport_error() {
        let rt = runtime();
        let items: Vec<object_store::Result<Bytes>> = vec![
            Ok(Bytes::from_static(b"abc")),
            Err(object_store::Error::Generic {
                store: "test",
                source: "connection reset".into(),
            }),
        ];
        let stream = futures_util::stream::iter(items).boxed();
        let (mut reader, failed) = StreamReader::spawn(rt.handle(), stream, None);
        let mut got = Vec::new();
        let e = reader.read_to_end(&mut got).expect_err("must fail");
        assert!(e.to_string().contains("connection reset"), "{e}");
        assert_eq!(got, b"abc");
        assert!(failed.load(Ordering::Relaxed));
    }
}
