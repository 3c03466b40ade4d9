//! pcaplab's long-running watcher: the queue → worker pattern around the shared job, for teams
//! that process captures on EC2, ECS or Kubernetes instead of Lambda (or whose captures are too
//! big for Lambda's 15 minutes).
//!
//! Two sources, one guarantee — at-least-once delivery in, exactly-once effect out (the job
//! writes versioned outputs and one conditional item per capture, so doing a capture twice
//! changes nothing):
//!
//! - **SQS** ([`Source::Sqs`]): S3 notifications (direct, SNS-wrapped or EventBridge) are
//!   long-polled from a queue. While a capture is processed its message's visibility timeout
//!   is extended; the message is deleted only once the outputs and the item are written. A
//!   message that comes back while still in hand here (its visibility lapsed between two
//!   extensions) is not processed a second time: its new receipt handle replaces the old one.
//!   A failure leaves it for redelivery and, after the queue's maxReceiveCount, its
//!   dead-letter queue. A corrupt capture is recorded as `failed` and its message deleted (no
//!   poison loop).
//! - **Poll** ([`Source::Poll`]): a prefix is listed every interval; new or changed objects (by
//!   ETag) are claimed with a lease in the DynamoDB table ([`pcaplab_cloud::table::Lease`]), so
//!   several watchers share a prefix without doing an object twice, and the claims of a crashed
//!   watcher run out and are taken over.
//!
//! On shutdown ([`run`]'s `shutdown` future) no new work is taken; work in flight has until a
//! deadline to finish, then its messages are made visible again (its leases released) for
//! another watcher.

pub mod filter;
pub mod metrics;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message as SqsMessage, MessageSystemAttributeName, QueueAttributeName};
use pcaplab_cloud::table::{Claimed, Lease, Renewal};
use pcaplab_cloud::{Aws, JobError, Location, ObjectRef, Outcome, Pipeline, error_chain};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, info_span, warn};

pub use filter::KeyFilter;
pub use metrics::Metrics;

use metrics::{Claim, Finished, Message};

/// Where the work comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// S3 notifications from an SQS queue.
    Sqs {
        queue_url: String,
        /// The visibility timeout of received messages (extended while they are processed);
        /// `None`: the queue's own.
        visibility: Option<Duration>,
        /// Long-poll wait per receive (at most 20 s).
        wait: Duration,
    },
    /// Polling `s3://bucket/prefix`, with claims in the job's DynamoDB table.
    Poll {
        bucket: String,
        prefix: String,
        interval: Duration,
        /// How long a claim lasts unless renewed; a crashed watcher's work is taken over after
        /// this.
        lease: Duration,
    },
}

#[derive(Clone, Debug)]
pub struct WatchConfig {
    pub source: Source,
    /// Captures in flight at once.
    pub concurrency: usize,
    pub filter: KeyFilter,
    /// After a shutdown request, how long work in flight may take to finish.
    pub shutdown_timeout: Duration,
    /// Serve `/healthz` and `/metrics` here.
    pub metrics_listen: Option<SocketAddr>,
    /// This watcher's name in logs and leases: unique per process.
    pub id: String,
}

/// A watcher that cannot start (exit status 2): the name of what is wrong, and why.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct WatchError {
    pub what: String,
    pub message: String,
}

impl From<JobError> for WatchError {
    fn from(e: JobError) -> Self {
        WatchError {
            what: "job".into(),
            message: e.describe(),
        }
    }
}

/// How the watcher stopped.
#[derive(Debug, Default)]
pub struct Stopped {
    /// Captures still in flight at the shutdown deadline (released for another watcher).
    pub unfinished: usize,
}

/// `host:pid:random`: unique per process, even for PID 1 in containers.
pub fn default_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "watcher".into());
    format!("{host}:{}:{:04x}", std::process::id(), fastrand::u16(..))
}

/// What every task shares.
struct Shared {
    pipeline: Arc<Pipeline>,
    metrics: Arc<Metrics>,
    filter: KeyFilter,
    /// Set at the shutdown deadline: work in flight gives up and releases what it holds.
    abandon: watch::Receiver<bool>,
}

/// Resolves once `rx` holds `true` (never, if its sender is gone without sending it).
async fn raised(mut rx: watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Shared {
    /// Process one object, with its metrics and log line. `Err`: retry it later.
    async fn process(&self, object: &ObjectRef) -> Result<Outcome, JobError> {
        let _in_flight = self.metrics.start();
        let started = Instant::now();
        let url = object.location().to_string();
        let result = self.pipeline.process(object).await;
        let elapsed = started.elapsed();
        match &result {
            Ok(Outcome::Converted(r)) => {
                let s = &r.report.summary;
                let how = if r.report.damage.is_some() {
                    Finished::Damaged
                } else {
                    Finished::Processed
                };
                self.metrics.finished(how, elapsed, r.size, s.packets);
                info!(
                    object = %url,
                    outcome = how.label(),
                    packets = s.packets,
                    bytes = r.size,
                    seconds = elapsed.as_secs_f64(),
                    outputs = r.outputs.len(),
                    damage = r.report.damage.as_ref().map(|d| d.to_string()),
                    "capture converted"
                );
            }
            Ok(Outcome::Recorded(e)) => {
                self.metrics.finished(Finished::Failed, elapsed, 0, 0);
                warn!(object = %url, outcome = "failed", reason = %e.describe(), "capture recorded as failed; not retried");
            }
            Ok(Outcome::Superseded) => {
                self.metrics.finished(Finished::Superseded, elapsed, 0, 0);
                info!(object = %url, outcome = "superseded", "the table holds a newer version's result");
            }
            Err(e) => {
                self.metrics.finished(Finished::Error, elapsed, 0, 0);
                warn!(object = %url, outcome = "error", retryable = e.retryable(), error = %e.describe(), "capture failed; it will be retried");
            }
        }
        result
    }

    fn takes(&self, object: &ObjectRef) -> bool {
        if self.filter.matches(&object.key) {
            return true;
        }
        self.metrics.skipped();
        // Debug: outputs written into the watched bucket are notified too, every one of them.
        tracing::debug!(object = %object.location(), "skipped: the key filter does not take it");
        false
    }
}

/// Run the watcher until `shutdown` resolves, then drain.
pub async fn run(
    pipeline: Arc<Pipeline>,
    aws: Arc<Aws>,
    config: WatchConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Stopped, WatchError> {
    let metrics = Arc::new(Metrics::default());
    pipeline.job().check().await?;

    let server = match config.metrics_listen {
        None => None,
        Some(addr) => {
            // Bound before any work, so a busy port fails the start.
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| WatchError {
                    what: format!("--metrics-listen {addr}"),
                    message: e.to_string(),
                })?;
            let local = listener.local_addr().unwrap_or(addr);
            info!(address = %local, "serving /healthz and /metrics");
            let m = Arc::clone(&metrics);
            Some(tokio::spawn(async move {
                if let Err(e) = metrics::serve(listener, m).await {
                    error!(error = %e, "the metrics server stopped");
                }
            }))
        }
    };

    let (stop_tx, stop) = watch::channel(false);
    let (abandon_tx, abandon) = watch::channel(false);
    let watcher = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let shared = Arc::new(Shared {
        pipeline,
        metrics: Arc::clone(&metrics),
        filter: config.filter.clone(),
        abandon,
    });
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));

    let unfinished = match &config.source {
        Source::Sqs {
            queue_url,
            visibility,
            wait,
        } => {
            let client = aws_sdk_sqs::Client::new(aws.sdk());
            let visibility = queue_check(&client, queue_url, *visibility).await?;
            info!(id = %config.id, queue = %queue_url, visibility_s = visibility.as_secs_f64(), concurrency = config.concurrency, "watching the queue");
            let queue = Queue {
                client,
                url: queue_url.clone(),
                visibility,
                wait: (*wait).min(Duration::from_secs(20)),
                in_hand: Mutex::default(),
            };
            let tasks = queue.run(&shared, &permits, stop).await;
            drain(tasks, config.shutdown_timeout, &abandon_tx, &metrics).await
        }
        Source::Poll {
            bucket,
            prefix,
            interval,
            lease,
        } => {
            let table = shared
                .pipeline
                .job()
                .options()
                .table
                .clone()
                .ok_or_else(|| WatchError {
                    what: format!("--poll s3://{bucket}/{prefix}"),
                    message: "polling needs a DynamoDB table (--dynamodb-table): watchers claim objects there".into(),
                })?;
            let poller = Poller {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                interval: *interval,
                lease: Lease {
                    table,
                    owner: config.id.clone(),
                    duration: *lease,
                },
                dynamodb: pcaplab_cloud::table::client(aws.dynamodb()),
            };
            info!(id = %config.id, source = %format!("s3://{bucket}/{prefix}"), interval_s = interval.as_secs_f64(), lease_s = lease.as_secs_f64(), concurrency = config.concurrency, "polling");
            let tasks = poller.run(&shared, &permits, stop).await?;
            drain(tasks, config.shutdown_timeout, &abandon_tx, &metrics).await
        }
    };
    watcher.abort();
    if let Some(s) = server {
        s.abort();
    }
    Ok(Stopped { unfinished })
}

/// Let work in flight finish until `timeout`, then make it give up what it holds.
async fn drain<T: 'static>(
    mut tasks: JoinSet<T>,
    timeout: Duration,
    abandon: &watch::Sender<bool>,
    metrics: &Metrics,
) -> usize {
    metrics.drain();
    if !tasks.is_empty() {
        info!(
            in_flight = tasks.len(),
            timeout_s = timeout.as_secs_f64(),
            "shutting down: finishing the captures in flight"
        );
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = tasks.join_next() => match next {
                None => {
                    info!("shut down: nothing left in flight");
                    return 0;
                }
                Some(Err(e)) if e.is_panic() => error!(error = %e, "a task panicked"),
                Some(_) => {}
            },
            () = &mut deadline => break,
        }
    }
    let left = tasks.len();
    warn!(
        unfinished = left,
        "the shutdown deadline passed: releasing unfinished work for another watcher"
    );
    let _ = abandon.send(true);
    let released = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if released.is_err() {
        tasks.abort_all();
    }
    left
}

/// Check the queue before any work; the visibility timeout to use.
async fn queue_check(
    client: &aws_sdk_sqs::Client,
    url: &str,
    visibility: Option<Duration>,
) -> Result<Duration, WatchError> {
    let attrs = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(|e| WatchError {
            what: format!("SQS queue {url}"),
            message: error_chain(&e),
        })?;
    let attrs = attrs.attributes.unwrap_or_default();
    if !attrs.contains_key(&QueueAttributeName::RedrivePolicy) {
        warn!(queue = %url, "the queue has no redrive policy: a message that keeps failing is redelivered forever; give it a dead-letter queue and a maxReceiveCount");
    }
    let queue_default = attrs
        .get(&QueueAttributeName::VisibilityTimeout)
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    Ok(visibility
        .or(queue_default)
        .unwrap_or(Duration::from_secs(30))
        .max(Duration::from_secs(1)))
}

struct Queue {
    client: aws_sdk_sqs::Client,
    url: String,
    visibility: Duration,
    wait: Duration,
    /// The messages in hand, by message id, each with its latest receipt handle.
    in_hand: Mutex<HashMap<String, Arc<Latest>>>,
}

/// The receipt handle of a message's latest receive.
///
/// A message whose visibility lapses while it is processed (the watcher starved of CPU, paused,
/// or cut off from SQS for longer than the timeout less a third) is delivered again — often to
/// this very watcher, whose long poll is waiting for work. It is the same message (same id),
/// with a new receipt handle: it must not start a second conversion of the same capture, and
/// from then on only the new handle counts (a delete with an older one succeeds, but
/// SQS may keep the message).
struct Latest(Mutex<String>);

impl Latest {
    fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, receipt: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = receipt.to_owned();
    }
}

/// A message's place in [`Queue::in_hand`], given up when dropped (however its task ends).
struct Holding {
    queue: Arc<Queue>,
    id: String,
    latest: Arc<Latest>,
}

impl Holding {
    fn receipt(&self) -> String {
        self.latest.get()
    }

    /// Give the message up if `receipt` is still its latest; `false`: it was received again
    /// meanwhile (`receipt` is stale), and is kept.
    fn give_up_if_latest(&self, receipt: &str) -> bool {
        // Under the lock `Queue::hold` takes to record a new receive.
        let mut in_hand = self.queue.lock_in_hand();
        if self.latest.get() != receipt {
            return false;
        }
        Self::remove(&mut in_hand, &self.id, &self.latest);
        true
    }

    /// Remove `id`'s entry if it is still this holding's (not a later receive's, after the
    /// message was given up).
    fn remove(in_hand: &mut HashMap<String, Arc<Latest>>, id: &str, latest: &Arc<Latest>) {
        if in_hand.get(id).is_some_and(|l| Arc::ptr_eq(l, latest)) {
            in_hand.remove(id);
        }
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        Self::remove(&mut self.queue.lock_in_hand(), &self.id, &self.latest);
    }
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

/// Exponential backoff after failures to read the source: 1 s doubling to 30 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(5)).min(Duration::from_secs(30))
}

impl Queue {
    fn lock_in_hand(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Latest>>> {
        self.in_hand.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a received message in hand. `None`: it is in hand already (its visibility lapsed
    /// and it came back): the new receipt handle replaces the old one, and the task that has
    /// it carries on with it.
    fn hold(self: &Arc<Self>, id: &str, receipt: &str) -> Option<Holding> {
        let mut in_hand = self.lock_in_hand();
        if let Some(latest) = in_hand.get(id) {
            latest.set(receipt);
            return None;
        }
        let latest = Arc::new(Latest(Mutex::new(receipt.to_owned())));
        in_hand.insert(id.to_owned(), Arc::clone(&latest));
        Some(Holding {
            queue: Arc::clone(self),
            id: id.to_owned(),
            latest,
        })
    }

    async fn run(
        self,
        shared: &Arc<Shared>,
        permits: &Arc<Semaphore>,
        stop: watch::Receiver<bool>,
    ) -> JoinSet<()> {
        let queue = Arc::new(self);
        let mut tasks = JoinSet::new();
        let mut failures = 0u32;
        loop {
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done
                    && e.is_panic()
                {
                    error!(error = %e, "a message task panicked");
                }
            }
            // Capacity first: receive only as many messages as can start now.
            let first = tokio::select! {
                p = Arc::clone(permits).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                () = raised(stop.clone()) => break,
            };
            let mut held = vec![first];
            while held.len() < 10 {
                match Arc::clone(permits).try_acquire_owned() {
                    Ok(p) => held.push(p),
                    Err(_) => break,
                }
            }
            let receive = queue
                .client
                .receive_message()
                .queue_url(&queue.url)
                .max_number_of_messages(held.len() as i32)
                .wait_time_seconds(secs(queue.wait))
                .visibility_timeout(secs(queue.visibility))
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send();
            let received = tokio::select! {
                r = receive => r,
                () = raised(stop.clone()) => break,
            };
            let messages = match received {
                Ok(out) => {
                    failures = 0;
                    shared.metrics.source_ok();
                    out.messages.unwrap_or_default()
                }
                Err(e) => {
                    let message = error_chain(&e);
                    shared.metrics.source_error(message.clone());
                    let pause = backoff(failures);
                    failures = failures.saturating_add(1);
                    warn!(queue = %queue.url, error = %message, retry_in_s = pause.as_secs(), "cannot receive from the queue");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => continue,
                        () = raised(stop.clone()) => break,
                    }
                }
            };
            for m in messages {
                let Some(receipt) = m.receipt_handle.as_deref() else {
                    warn!(
                        id = m.message_id.as_deref().unwrap_or_default(),
                        "a message without a receipt handle; ignored"
                    );
                    continue;
                };
                // SQS gives every message an id; without one, this receive is its own.
                let id = m.message_id.as_deref().unwrap_or(receipt);
                let Some(holding) = queue.hold(id, receipt) else {
                    shared.metrics.redelivered_in_flight();
                    let _span = message_span(&m).entered();
                    warn!(
                        visibility_s = queue.visibility.as_secs_f64(),
                        "the message came back while its capture is still in flight here (its visibility lapsed between two extensions): not processed twice; its new receipt handle is used from now on (a longer --visibility-timeout avoids this)"
                    );
                    continue;
                };
                let Some(permit) = held.pop() else {
                    // More than asked for: cannot happen with SQS; let it come back.
                    break;
                };
                let shared = Arc::clone(shared);
                tasks.spawn(async move { Queue::handle(&shared, m, holding, permit).await });
            }
        }
        tasks
    }

    async fn handle(
        shared: &Shared,
        m: SqsMessage,
        holding: Holding,
        _permit: OwnedSemaphorePermit,
    ) {
        let queue = &*holding.queue;
        async {
            let objects = match pcaplab_cloud::notification::message(m.body().unwrap_or("")) {
                Ok(objects) => objects,
                Err(e) => {
                    shared.metrics.message(Message::Left);
                    error!(error = %e, "unusable message: left for redelivery and, after the queue's maxReceiveCount, its dead-letter queue");
                    return;
                }
            };
            // The work ends with the message deleted, with the latest receipt handle (once more
            // if it came back meanwhile); its visibility is extended until then, as the SDK's
            // retries of a failing delete can outlast a short visibility timeout.
            let work = async {
                let mut ok = true;
                for object in objects.iter().filter(|o| shared.takes(o)) {
                    ok &= shared.process(object).await.is_ok();
                }
                if !ok {
                    return Handled::Left;
                }
                loop {
                    let receipt = holding.receipt();
                    if let Err(e) = queue.client.delete_message().queue_url(&queue.url).receipt_handle(&receipt).send().await {
                        return Handled::NotDeleted(error_chain(&e));
                    }
                    if holding.give_up_if_latest(&receipt) {
                        return Handled::Deleted;
                    }
                }
            };
            let heartbeat = async {
                let period = (queue.visibility / 3).max(Duration::from_millis(200));
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                // After a stall, one extension (not one per missed tick).
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut extended = Instant::now();
                loop {
                    tick.tick().await;
                    let since = extended.elapsed();
                    // An extension still unanswered after a whole timeout is too late anyway:
                    // give up on it and send the next one.
                    let sent = tokio::time::timeout(
                        queue.visibility,
                        queue.set_visibility(&holding.receipt(), queue.visibility),
                    )
                    .await
                    .unwrap_or_else(|_| Err("no answer within the visibility timeout".into()));
                    match sent {
                        Ok(()) => {
                            extended = Instant::now();
                            if since > queue.visibility {
                                warn!(since_s = since.as_secs_f64(), visibility_s = queue.visibility.as_secs_f64(), "the message's visibility was extended late; it may have been delivered again meanwhile");
                            }
                        }
                        Err(e) => warn!(error = %e, "cannot extend the message's visibility; another watcher may receive it"),
                    }
                }
            };
            let handled = tokio::select! {
                handled = work => handled,
                () = heartbeat => Handled::Left,
                () = raised(shared.abandon.clone()) => {
                    match queue.set_visibility(&holding.receipt(), Duration::ZERO).await {
                        Ok(()) => info!("unfinished at the shutdown deadline: the message is visible again"),
                        Err(e) => warn!(error = %e, "unfinished at the shutdown deadline; the message comes back after its visibility timeout"),
                    }
                    shared.metrics.message(Message::Released);
                    return;
                }
            };
            match handled {
                Handled::Deleted => shared.metrics.message(Message::Deleted),
                Handled::Left => {
                    shared.metrics.message(Message::Left);
                    warn!("left on the queue for a retry (after the queue's maxReceiveCount: its dead-letter queue)");
                }
                Handled::NotDeleted(error) => {
                    shared.metrics.message(Message::Left);
                    warn!(error = %error, "done, but the message cannot be deleted: it will be redelivered (and done again, to the same effect)");
                }
            }
        }
        .instrument(message_span(&m))
        .await;
    }

    async fn set_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), String> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(secs(timeout))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| error_chain(&e))
    }
}

/// How the handling of a message ended.
enum Handled {
    /// Done and deleted.
    Deleted,
    /// Not done (a failure, or visibility that could not be kept): left for a retry.
    Left,
    /// Done, but the delete failed: it will be redelivered and done again.
    NotDeleted(String),
}

/// The span of a message's log lines: its id and receive count.
fn message_span(m: &SqsMessage) -> tracing::Span {
    let receives = m
        .attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .map(String::as_str)
        .unwrap_or_default();
    info_span!("message", id = m.message_id.as_deref().unwrap_or_default(), receives = %receives)
}

/// Why a listing failed (without the URL, which the caller names).
fn listing_error(e: &JobError) -> String {
    match e {
        JobError::Fetch { source, .. } => {
            format!(
                "cannot list the prefix: {}",
                pcaplab_cloud::job::store_message(source)
            )
        }
        other => other.describe(),
    }
}

struct Poller {
    bucket: String,
    prefix: String,
    interval: Duration,
    lease: Lease,
    dynamodb: aws_sdk_dynamodb::Client,
}

/// A polled object's task ends with its key, its ETag, and whether that version is done.
type PollDone = (String, String, bool);

impl Poller {
    async fn run(
        self,
        shared: &Arc<Shared>,
        permits: &Arc<Semaphore>,
        stop: watch::Receiver<bool>,
    ) -> Result<JoinSet<PollDone>, WatchError> {
        let poller = Arc::new(self);
        let url = format!("s3://{}/{}", poller.bucket, poller.prefix);
        let mut tasks: JoinSet<PollDone> = JoinSet::new();
        // What this watcher knows is done (key → ETag), and what it is doing.
        let mut done: HashMap<String, String> = HashMap::new();
        let mut doing: HashSet<String> = HashSet::new();
        let mut failures = 0u32;
        let mut first = true;
        'rounds: loop {
            let listed = tokio::select! {
                l = shared.pipeline.job().list(&poller.bucket, &poller.prefix) => l,
                () = raised(stop.clone()) => break,
            };
            let mut pause = poller.interval;
            match listed {
                Err(e) if first => {
                    return Err(WatchError {
                        what: format!("--poll {url}"),
                        message: listing_error(&e),
                    });
                }
                Err(e) => {
                    shared.metrics.source_error(listing_error(&e));
                    pause = pause.max(backoff(failures));
                    failures = failures.saturating_add(1);
                    warn!(source = %url, error = %listing_error(&e), "cannot list the prefix");
                }
                Ok(objects) => {
                    failures = 0;
                    shared.metrics.source_ok();
                    let present: HashSet<String> = objects
                        .iter()
                        .filter_map(|o| match &o.location {
                            Location::S3 { key, .. } => Some(key.clone()),
                            Location::Local(_) => None,
                        })
                        .collect();
                    done.retain(|k, _| present.contains(k));
                    for o in objects {
                        while let Some(finished) = tasks.try_join_next() {
                            if let Ok((key, etag, is_done)) = finished {
                                doing.remove(&key);
                                if is_done {
                                    done.insert(key, etag);
                                }
                            }
                        }
                        let (Location::S3 { bucket, key }, Some(etag)) = (o.location, o.etag)
                        else {
                            continue;
                        };
                        let object = ObjectRef {
                            bucket,
                            key,
                            undecoded: false,
                        };
                        if !shared.filter.matches(&object.key)
                            || done.get(&object.key) == Some(&etag)
                            || doing.contains(&object.key)
                        {
                            continue;
                        }
                        let permit = tokio::select! {
                            p = Arc::clone(permits).acquire_owned() => match p {
                                Ok(p) => p,
                                Err(_) => break 'rounds,
                            },
                            () = raised(stop.clone()) => break 'rounds,
                        };
                        let s3_id = object.location().s3_id();
                        match poller.lease.claim(&poller.dynamodb, &s3_id, &etag).await {
                            Ok(Claimed::Taken) => {
                                shared.metrics.claim(Claim::Taken);
                                doing.insert(object.key.clone());
                                let (poller, shared) = (Arc::clone(&poller), Arc::clone(shared));
                                tasks.spawn(async move {
                                    poller.handle(&shared, object, etag, permit).await
                                });
                            }
                            Ok(Claimed::Done) => {
                                shared.metrics.claim(Claim::Done);
                                done.insert(object.key, etag);
                            }
                            Ok(Claimed::Held { owner }) => {
                                shared.metrics.claim(Claim::Held);
                                tracing::debug!(object = %object.location(), %owner, "claimed by another watcher");
                            }
                            Err(e) => {
                                warn!(object = %object.location(), error = %e, "cannot claim; trying again next round");
                            }
                        }
                    }
                }
            }
            first = false;
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = raised(stop.clone()) => break,
            }
        }
        Ok(tasks)
    }

    async fn handle(
        &self,
        shared: &Shared,
        object: ObjectRef,
        etag: String,
        _permit: OwnedSemaphorePermit,
    ) -> PollDone {
        let s3_id = object.location().s3_id();
        let renew = async {
            let period = (self.lease.duration / 3).max(Duration::from_millis(200));
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                tick.tick().await;
                match self.lease.renew(&self.dynamodb, &s3_id, &etag).await {
                    Ok(Renewal::Renewed) => {}
                    // The item was written (by this work, which is announcing or cleaning up):
                    // let it finish rather than report the lease lost.
                    Ok(Renewal::Recorded) => return std::future::pending().await,
                    Ok(Renewal::Lost) => return,
                    Err(e) => {
                        warn!(object = %object.location(), error = %e, "cannot renew the lease")
                    }
                }
            }
        };
        let finished = tokio::select! {
            r = shared.process(&object) => match r {
                // The item was written, which ended the lease.
                Ok(Outcome::Converted(_) | Outcome::Recorded(_)) => return (object.key, etag, true),
                Ok(Outcome::Superseded) => true,
                Err(_) => false,
            },
            () = renew => {
                shared.metrics.claim(Claim::Lost);
                warn!(object = %object.location(), "the lease ran out while processing; stopped, another watcher takes over");
                return (object.key, etag, false);
            }
            () = raised(shared.abandon.clone()) => false,
        };
        if let Err(e) = self.lease.release(&self.dynamodb, &s3_id).await {
            warn!(object = %object.location(), error = %e, "cannot release the lease; it runs out by itself");
        }
        (object.key, etag, finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> Arc<Queue> {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .build();
        Arc::new(Queue {
            client: aws_sdk_sqs::Client::from_conf(config),
            url: "http://127.0.0.1:1/123456789012/q".into(),
            visibility: Duration::from_secs(2),
            wait: Duration::from_secs(1),
            in_hand: Mutex::default(),
        })
    }

    #[test]
    fn a_message_back_while_in_hand_is_not_taken_twice() {
        let q = queue();
        let first = q.hold("m1", "r1").expect("a new message");
        let other = q.hold("m2", "x1").expect("another message");
        // Its visibility lapsed and it came back: the same task carries on, with the new handle.
        assert!(q.hold("m1", "r2").is_none());
        assert_eq!(first.receipt(), "r2");
        assert_eq!(other.receipt(), "x1");
        // A delete with the stale handle does not end it; one with the latest does.
        assert!(!first.give_up_if_latest("r1"));
        assert!(q.hold("m1", "r3").is_none());
        assert!(!first.give_up_if_latest("r2"));
        assert!(first.give_up_if_latest("r3"));
        // Given up: received again (its delete did not take), it is work again — and dropping
        // the old holding leaves the new one in place.
        let again = q
            .hold("m1", "r4")
            .expect("taken again after it was given up");
        drop(first);
        assert!(q.hold("m1", "r5").is_none());
        assert_eq!(again.receipt(), "r5");
        drop(again);
        drop(other);
        assert!(q.lock_in_hand().is_empty());
        assert!(q.hold("m1", "r6").is_some());
    }
}
