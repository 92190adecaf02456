//! `GET /metrics`: Prometheus text format.

use std::fmt::Write;

use tiny_http::Request;

use super::respond::Reply;
use crate::processor::ps::ProcessTable;
use crate::store::metrics::Metrics;
use crate::store::Store;

pub fn metrics(store: &Store, processes: &ProcessTable, request: Request) {
    Reply::with_type(200, "text/plain; version=0.0.4", render(store, processes)).send(request)
}

fn render(store: &Store, processes: &ProcessTable) -> String {
    let m = store.metrics();
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, kind: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    counter(
        "xs_frames_appended_total",
        "Frames appended since the server started.",
        "counter",
        Metrics::get(&m.frames_appended),
    );
    counter(
        "xs_payload_bytes_appended_total",
        "Payload bytes stored since the server started.",
        "counter",
        Metrics::get(&m.payload_bytes_appended),
    );
    counter(
        "xs_followers",
        "Follow streams open now.",
        "gauge",
        Metrics::get(&m.followers),
    );
    counter(
        "xs_store_bytes",
        "Bytes the store's folder holds (index and payloads).",
        "gauge",
        store.disk_usage(),
    );
    let _ = writeln!(
        out,
        "# HELP xs_appends_total Appends by outcome.\n# TYPE xs_appends_total counter\n\
         xs_appends_total{{outcome=\"ok\"}} {}\nxs_appends_total{{outcome=\"failed\"}} {}",
        Metrics::get(&m.appends_ok),
        Metrics::get(&m.appends_failed)
    );
    let _ = writeln!(
        out,
        "# HELP xs_processors Actors, services, actions and views by state.\n# TYPE xs_processors gauge"
    );
    for (state, count) in processes.count_by_state() {
        let _ = writeln!(out, "xs_processors{{state=\"{state}\"}} {count}");
    }
    let (buckets, sum) = m.sync_histogram();
    let _ = writeln!(
        out,
        "# HELP xs_sync_seconds Journal syncs and how long they took.\n# TYPE xs_sync_seconds histogram"
    );
    for (bound, count) in buckets {
        let _ = writeln!(out, "xs_sync_seconds_bucket{{le=\"{bound}\"}} {count}");
    }
    let syncs = Metrics::get(&m.syncs);
    let _ = writeln!(
        out,
        "xs_sync_seconds_bucket{{le=\"+Inf\"}} {syncs}\nxs_sync_seconds_sum {sum}\nxs_sync_seconds_count {syncs}"
    );
    out
}
