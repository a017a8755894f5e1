//! Prometheus metrics for both binaries. The recorder is process-global
//! (the `metrics` facade has one), so it is installed once and everything
//! in the process (tests start several nodes) renders from one handle.
//!
//! Naming follows Prometheus: a `chat_` prefix, units in names
//! (`_seconds`, `_bytes`), `_total` on counters, and label values from small
//! fixed sets, never a user or chat id. Process metrics (`process_*`: RSS,
//! CPU seconds, open fds) come from the `metrics-process` collector at each
//! scrape.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

/// Latency buckets (seconds): sub-millisecond fan-out to multi-second
/// outages.
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

#[derive(Clone)]
pub struct Telemetry {
    handle: PrometheusHandle,
    process: std::sync::Arc<metrics_process::Collector>,
}

impl Telemetry {
    /// The process's telemetry, installed on first use.
    pub fn get() -> Telemetry {
        TELEMETRY
            .get_or_init(|| {
                let recorder = PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                    .and_then(|b| {
                        b.set_buckets_for_metric(Matcher::Full("chat_worker_batch_size".into()), BATCH_BUCKETS)
                    })
                    .unwrap_or_else(|_| PrometheusBuilder::new())
                    .build_recorder();
                let handle = recorder.handle();
                // Fails only if another recorder is installed; then ours just
                // renders nothing, which is not worth stopping for.
                let _ = metrics::set_global_recorder(recorder);
                let process = metrics_process::Collector::default();
                process.describe();
                Telemetry { handle, process: std::sync::Arc::new(process) }
            })
            .clone()
    }

    /// The Prometheus text exposition, process metrics refreshed.
    pub fn render(&self) -> String {
        self.process.collect();
        self.handle.render()
    }
}
