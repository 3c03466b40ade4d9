//! `pcaplab watch`: flags to a [`pcaplab_watch::WatchConfig`], logging, signals.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pcaplab_cloud::{Aws, Job, JobOptions, Location, Pipeline};
use pcaplab_watch::{KeyFilter, Source, WatchConfig};

use crate::WatchArgs;

/// SQS's limits for a message's visibility timeout and a receive's wait.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
const MAX_RECEIVE_WAIT: Duration = Duration::from_secs(20);

fn source(args: &WatchArgs) -> anyhow::Result<Source> {
    if let Some(v) = args.visibility_timeout
        && !(Duration::from_secs(1)..=MAX_VISIBILITY).contains(&v)
    {
        anyhow::bail!(
            "--visibility-timeout {}: SQS takes 1s to 12h",
            humantime::format_duration(v)
        );
    }
    if args.receive_wait > MAX_RECEIVE_WAIT {
        anyhow::bail!(
            "--receive-wait {}: SQS waits at most 20s",
            humantime::format_duration(args.receive_wait)
        );
    }
    if args.lease < Duration::from_secs(3) {
        anyhow::bail!(
            "--lease {}: at least 3s (a claim is renewed every third of it)",
            humantime::format_duration(args.lease)
        );
    }
    if args.interval < Duration::from_millis(100) {
        anyhow::bail!(
            "--interval {}: at least 100ms",
            humantime::format_duration(args.interval)
        );
    }
    if let Some(url) = &args.sqs_queue_url {
        return Ok(Source::Sqs {
            queue_url: url.clone(),
            visibility: args.visibility_timeout,
            wait: args.receive_wait,
        });
    }
    let poll = args.poll.as_deref().unwrap_or_default();
    match Location::parse(poll)? {
        Location::S3 { bucket, key } if key.is_empty() || key.ends_with('/') => Ok(Source::Poll {
            bucket,
            prefix: key,
            interval: args.interval,
            lease: args.lease,
        }),
        Location::S3 { bucket, key } => anyhow::bail!(
            "--poll {poll}: a prefix ends with '/' (did you mean s3://{bucket}/{key}/ ?)"
        ),
        Location::Local(_) => anyhow::bail!("--poll {poll}: must be s3://BUCKET/PREFIX/"),
    }
}

pub fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    crate::service::init_logging(args.log_format);
    let source = source(&args)?;
    let outputs = crate::outputs(&args.format);
    let out = args.out.as_deref().map(Location::parse).transpose()?;
    let engine = Arc::new(args.engine.build()?);
    let config = WatchConfig {
        source,
        concurrency: args.concurrency.get(),
        filter: KeyFilter::new(args.prefixes.clone(), args.suffixes.clone()),
        shutdown_timeout: args.shutdown_timeout,
        metrics_listen: args.metrics_listen,
        id: args.id.clone().unwrap_or_else(pcaplab_watch::default_id),
    };
    let runtime = crate::service::io_runtime()?;
    let result = runtime.block_on(async {
        // Handlers first: a signal during start-up must not kill the process half-way. After
        // a second signal, what was in flight comes back to the queue (or its lease runs out)
        // and is done by the next watcher.
        let shutdown = crate::service::shutdown_signal("no new work")?;
        let aws = Arc::new(Aws::load().await);
        let job = Job::new(
            engine,
            Some(Arc::clone(&aws)),
            JobOptions {
                outputs,
                out,
                table: args.dynamodb_table.clone(),
                ..JobOptions::default()
            },
        )
        .map_err(|e| anyhow::anyhow!(e.describe()))?;
        let pipeline = Pipeline::new(job, Some(&aws), args.sns_topic_arn.clone())
            .map_err(|e| anyhow::anyhow!(e.describe()))?;
        let stopped = pcaplab_watch::run(Arc::new(pipeline), aws, config, shutdown).await?;
        if stopped.unfinished > 0 {
            tracing::warn!(
                unfinished = stopped.unfinished,
                "stopped with captures unfinished; they were handed back"
            );
        }
        Ok(ExitCode::SUCCESS)
    });
    // A conversion abandoned at the deadline may still be unwinding on a blocking thread: its
    // uploads were aborted, so there is nothing to wait for.
    runtime.shutdown_timeout(Duration::from_secs(2));
    result
}
