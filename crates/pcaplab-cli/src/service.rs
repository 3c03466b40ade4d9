//! What the commands share: the I/O runtime, and for the long-running ones (`watch`,
//! `serve`) logging and signals.

use std::future::Future;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use crate::LogFormat;

/// The tokio runtime for S3, DynamoDB, SQS, SNS and HTTP: two threads are plenty for I/O;
/// the packet work runs on the core's own rayon pool.
pub fn io_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the I/O runtime")
}

/// Logs on stderr: ours at info, the libraries' only when they warn (`RUST_LOG` overrides).
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("warn,pcaplab=info,pcaplab_watch=info,pcaplab_cloud=info,pcaplab_serve=info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// Completes at the first SIGTERM or SIGINT; a second one exits at once with 130. Call it
/// inside the runtime before anything else, so a signal during start-up is not fatal.
pub fn shutdown_signal(what: &'static str) -> anyhow::Result<impl Future<Output = ()> + Send> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stopping: {}", what);
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        });
    })
}
