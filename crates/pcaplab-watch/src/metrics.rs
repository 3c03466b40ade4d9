//! What the watcher has done, for Prometheus (`/metrics`, text exposition format 0.0.4) and
//! for a load balancer or orchestrator (`/healthz`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;

/// How a capture's processing ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    /// Converted; outputs and item written.
    Processed,
    /// Converted up to its damage; outputs and item (status `damaged`) written.
    Damaged,
    /// The capture's own fault, recorded as `failed` in the table; not retried.
    Failed,
    /// The table holds a newer version's result; nothing done.
    Superseded,
    /// Anything else: left for a retry.
    Error,
}

impl Finished {
    const ALL: [Finished; 5] = [
        Finished::Processed,
        Finished::Damaged,
        Finished::Failed,
        Finished::Superseded,
        Finished::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Finished::Processed => "processed",
            Finished::Damaged => "damaged",
            Finished::Failed => "failed",
            Finished::Superseded => "superseded",
            Finished::Error => "error",
        }
    }
}

/// What became of a queue message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// Done: deleted from the queue.
    Deleted,
    /// Failed (or unusable): left for redelivery and, eventually, the dead-letter queue.
    Left,
    /// Not finished at shutdown: made visible again at once for another watcher.
    Released,
}

/// What a claim attempt on a polled object found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Claimed: this watcher processes it.
    Taken,
    /// The table already holds the result for this version.
    Done,
    /// Another watcher holds a live lease on it.
    Held,
    /// This watcher's lease ran out while it was still working (another may take over).
    Lost,
}

/// Upper bounds of the seconds-per-capture histogram.
const BUCKETS: [f64; 13] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
];

/// Consecutive failures to receive or list before `/healthz` reports the watcher unhealthy.
const UNHEALTHY_AFTER: u64 = 3;

#[derive(Default)]
pub struct Metrics {
    finished: [AtomicU64; 5],
    skipped: AtomicU64,
    bytes: AtomicU64,
    packets: AtomicU64,
    in_flight: AtomicI64,
    seconds_buckets: [AtomicU64; BUCKETS.len()],
    seconds_count: AtomicU64,
    seconds_sum_us: AtomicU64,
    messages: [AtomicU64; 3],
    redelivered_in_flight: AtomicU64,
    claims: [AtomicU64; 4],
    source_errors: AtomicU64,
    consecutive_source_errors: AtomicU64,
    last_source_error: Mutex<Option<String>>,
    draining: AtomicBool,
}

/// Decrements the in-flight gauge when dropped (whatever way the work ends).
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    pub fn finished(&self, how: Finished, elapsed: Duration, bytes: u64, packets: u64) {
        let i = Finished::ALL.iter().position(|f| *f == how).unwrap_or(0);
        self.finished[i].fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.packets.fetch_add(packets, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.seconds_buckets) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.seconds_count.fetch_add(1, Ordering::Relaxed);
        self.seconds_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn message(&self, what: Message) {
        let i = match what {
            Message::Deleted => 0,
            Message::Left => 1,
            Message::Released => 2,
        };
        self.messages[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A message received again while its capture was still in flight here (its visibility
    /// lapsed): not processed twice.
    pub fn redelivered_in_flight(&self) {
        self.redelivered_in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn claim(&self, what: Claim) {
        let i = match what {
            Claim::Taken => 0,
            Claim::Done => 1,
            Claim::Held => 2,
            Claim::Lost => 3,
        };
        self.claims[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A receive or a listing worked.
    pub fn source_ok(&self) {
        self.consecutive_source_errors.store(0, Ordering::Relaxed);
    }

    /// A receive or a listing failed.
    pub fn source_error(&self, message: String) {
        self.source_errors.fetch_add(1, Ordering::Relaxed);
        self.consecutive_source_errors
            .fetch_add(1, Ordering::Relaxed);
        *self
            .last_source_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(message);
    }

    /// Shutting down: no new work is taken.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// `/healthz`: 200 while the watcher takes work; 503 while it drains, or after repeated
    /// failures to receive or list (with the last error).
    pub fn health(&self) -> (StatusCode, String) {
        if self.draining.load(Ordering::Relaxed) {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "draining: shutting down\n".into(),
            );
        }
        let failures = self.consecutive_source_errors.load(Ordering::Relaxed);
        if failures >= UNHEALTHY_AFTER {
            let last = self
                .last_source_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_default();
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "unhealthy: {failures} consecutive failures to read the source; last: {last}\n"
                ),
            );
        }
        (StatusCode::OK, "ok\n".into())
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        family(
            &mut out,
            "pcaplab_watch_captures_total",
            "counter",
            "Captures finished, by outcome (processed, damaged, failed: recorded and not retried, superseded, error: left for a retry).",
        );
        for (how, n) in Finished::ALL.iter().zip(&self.finished) {
            let _ = writeln!(
                out,
                "pcaplab_watch_captures_total{{outcome=\"{}\"}} {}",
                how.label(),
                get(n)
            );
        }
        let simple: [(&str, &str, &str, u64); 5] = [
            (
                "pcaplab_watch_skipped_total",
                "counter",
                "Notified keys (SQS mode) that the key filter does not take.",
                get(&self.skipped),
            ),
            (
                "pcaplab_watch_input_bytes_total",
                "counter",
                "Capture bytes read by finished captures.",
                get(&self.bytes),
            ),
            (
                "pcaplab_watch_packets_total",
                "counter",
                "Packets converted by finished captures.",
                get(&self.packets),
            ),
            (
                "pcaplab_watch_redelivered_in_flight_total",
                "counter",
                "Queue messages received again while their capture was still in flight here (the visibility timeout lapsed between two extensions); not processed twice. A sign that --visibility-timeout is too short for the watcher's load.",
                get(&self.redelivered_in_flight),
            ),
            (
                "pcaplab_watch_source_errors_total",
                "counter",
                "Failed receives (SQS) or listings (poll).",
                get(&self.source_errors),
            ),
        ];
        for (name, kind, help, v) in simple {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {v}");
        }
        family(
            &mut out,
            "pcaplab_watch_in_flight",
            "gauge",
            "Captures being processed now.",
        );
        let _ = writeln!(out, "pcaplab_watch_in_flight {}", self.in_flight());
        family(
            &mut out,
            "pcaplab_watch_messages_total",
            "counter",
            "Queue messages, by what became of them.",
        );
        for (label, n) in ["deleted", "left", "released"].iter().zip(&self.messages) {
            let _ = writeln!(
                out,
                "pcaplab_watch_messages_total{{result=\"{label}\"}} {}",
                get(n)
            );
        }
        family(
            &mut out,
            "pcaplab_watch_claims_total",
            "counter",
            "Claims on polled objects, by result.",
        );
        for (label, n) in ["taken", "done", "held", "lost"].iter().zip(&self.claims) {
            let _ = writeln!(
                out,
                "pcaplab_watch_claims_total{{result=\"{label}\"}} {}",
                get(n)
            );
        }
        family(
            &mut out,
            "pcaplab_watch_capture_seconds",
            "histogram",
            "Time to process one capture.",
        );
        for (bound, n) in BUCKETS.iter().zip(&self.seconds_buckets) {
            let _ = writeln!(
                out,
                "pcaplab_watch_capture_seconds_bucket{{le=\"{bound}\"}} {}",
                get(n)
            );
        }
        let count = get(&self.seconds_count);
        let _ = writeln!(
            out,
            "pcaplab_watch_capture_seconds_bucket{{le=\"+Inf\"}} {count}\npcaplab_watch_capture_seconds_sum {}\npcaplab_watch_capture_seconds_count {count}",
            get(&self.seconds_sum_us) as f64 / 1e6
        );
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Serve `/healthz` and `/metrics` on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let health = Arc::clone(&metrics);
    let app = Router::new()
        .route("/healthz", get(move || async move { health.health() }))
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }),
        );
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_counts_what_happened() {
        let m = Metrics::default();
        {
            let _a = m.start();
            let _b = m.start();
            assert_eq!(m.in_flight(), 2);
        }
        assert_eq!(m.in_flight(), 0);
        m.finished(Finished::Processed, Duration::from_millis(300), 1000, 10);
        m.finished(Finished::Failed, Duration::from_secs(7), 20, 0);
        m.message(Message::Deleted);
        m.redelivered_in_flight();
        m.claim(Claim::Held);
        let text = m.render();
        for line in [
            "pcaplab_watch_captures_total{outcome=\"processed\"} 1",
            "pcaplab_watch_captures_total{outcome=\"failed\"} 1",
            "pcaplab_watch_captures_total{outcome=\"error\"} 0",
            "pcaplab_watch_input_bytes_total 1020",
            "pcaplab_watch_packets_total 10",
            "pcaplab_watch_in_flight 0",
            "pcaplab_watch_messages_total{result=\"deleted\"} 1",
            "pcaplab_watch_redelivered_in_flight_total 1",
            "pcaplab_watch_claims_total{result=\"held\"} 1",
            "pcaplab_watch_capture_seconds_bucket{le=\"0.25\"} 0",
            "pcaplab_watch_capture_seconds_bucket{le=\"0.5\"} 1",
            "pcaplab_watch_capture_seconds_bucket{le=\"10\"} 2",
            "pcaplab_watch_capture_seconds_bucket{le=\"+Inf\"} 2",
            "pcaplab_watch_capture_seconds_sum 7.3",
            "pcaplab_watch_capture_seconds_count 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        // Every sample belongs to a declared family.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap_or_default();
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(text.contains(&format!("# TYPE {family} ")), "{l}");
        }
    }

    #[test]
    fn health_follows_the_source_and_shutdown() {
        let m = Metrics::default();
        assert_eq!(m.health().0, StatusCode::OK);
        for i in 0..UNHEALTHY_AFTER {
            m.source_error(format!("queue gone {i}"));
        }
        let (code, text) = m.health();
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(text.contains("queue gone 2"), "{text}");
        m.source_ok();
        assert_eq!(m.health().0, StatusCode::OK);
        m.drain();
        assert!(m.health().1.starts_with("draining"));
    }
}
