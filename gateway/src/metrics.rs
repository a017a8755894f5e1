//! The Prometheus recorder. It is process-global (the `metrics` facade has
//! one recorder), so it is installed once and every node in the process
//! (tests start several) renders from the same handle.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then ours just
            // renders nothing, which is not worth stopping for.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
