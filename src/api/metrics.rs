//! `GET /metrics`: JSON or Prometheus text, by the request's `Accept`.
//!
//! How it works. cross.stream 0.14+ answers JSON (`store` counters and a
//! `keyspaces` list); Prometheus scrapers ask for `text/plain` or
//! OpenMetrics. So the `Accept` header decides: the named type with the
//! highest `q` among JSON, `text/plain` and `application/openmetrics-text`
//! wins (ties: the first listed); wildcards and no header mean JSON.
//!
//! The JSON has cross.stream's shape, filled with what we measure: our
//! append, scan, removal and payload-GC counters under `store`. Its
//! `keyspaces` list carries fjall's cache and filter counters in
//! cross.stream; fjall exposes those only with its `metrics` feature,
//! which xs does not build, so each keyspace reports zero counters and
//! null rates (and on Redis the list is empty). Everything the Prometheus
//! text has is under an extra `xs` key.

use std::fmt::Write;

use serde_json::{json, Map, Value};
use tiny_http::Request;

use super::respond::Reply;
use crate::processor::ps::ProcessTable;
use crate::store::Metrics;
use crate::store::Store;

/// The Prometheus text format's content type.
const PROMETHEUS_TYPE: &str = "text/plain; version=0.0.4";

/// cross.stream's keyspaces, as its `/metrics` names them.
const KEYSPACES: [&str; 3] = ["stream", "idx_topic", "idx_expiry"];

pub fn metrics(store: &Store, processes: &ProcessTable, request: &Request) -> Reply {
    let accept = request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Accept"))
        .map(|h| h.value.as_str())
        .collect::<Vec<_>>()
        .join(",");
    if wants_prometheus(&accept) {
        Reply::with_type(200, PROMETHEUS_TYPE, prometheus(store, processes))
    } else {
        Reply::json(json_document(store, processes).to_string())
    }
}

/// Whether an `Accept` value prefers the Prometheus text over JSON.
fn wants_prometheus(accept: &str) -> bool {
    let mut best: Option<(f32, bool)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let prometheus = match media.as_str() {
            "text/plain" | "application/openmetrics-text" => true,
            "application/json" => false,
            _ => continue,
        };
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
            best = Some((q, prometheus));
        }
    }
    best.is_some_and(|(_, prometheus)| prometheus)
}

/// cross.stream's document plus ours under `xs`.
fn json_document(store: &Store, processes: &ProcessTable) -> Value {
    let m = store.metrics();
    let keyspaces: Vec<Value> = if store.redis().is_some() {
        Vec::new()
    } else {
        KEYSPACES
            .iter()
            .map(|name| unmeasured_keyspace(name))
            .collect()
    };
    json!({
        "store": {
            "appends": Metrics::get(&m.frames_appended),
            "frames_scanned": Metrics::get(&m.frames_scanned),
            "stream_reads": Metrics::get(&m.stream_reads),
            "removed_frames": Metrics::get(&m.removed_frames),
            "remove_commits": Metrics::get(&m.remove_commits),
            "gc_drains": Metrics::get(&m.gc_drains),
            "gc_nanos": Metrics::get(&m.gc_nanos),
        },
        "keyspaces": keyspaces,
        "xs": ours(store, processes),
    })
}

/// A keyspace entry with cross.stream's fields, none of them measured.
fn unmeasured_keyspace(name: &str) -> Value {
    json!({
        "keyspace": name,
        "rates": {
            "block_cache_hit": null,
            "data_block_cache_hit": null,
            "index_block_cache_hit": null,
            "filter_block_cache_hit": null,
            "table_file_cache_hit": null,
            "filter_efficiency": null,
        },
        "filter_queries": 0,
        "io_skipped_by_filter": 0,
        "block_loads": 0,
        "block_load_io": 0,
        "data_block_io": 0,
        "index_block_io": 0,
        "filter_block_io": 0,
    })
}

/// The Prometheus text's figures, named as there without `xs_`.
fn ours(store: &Store, processes: &ProcessTable) -> Value {
    let m = store.metrics();
    let by_state: Map<String, Value> = processes
        .count_by_state()
        .into_iter()
        .map(|(state, count)| (state.to_string(), json!(count)))
        .collect();
    let (buckets, sum) = m.sync_histogram();
    let buckets: Vec<Value> = buckets
        .into_iter()
        .map(|(le, count)| json!({"le": le, "count": count}))
        .collect();
    json!({
        "frames_appended_total": Metrics::get(&m.frames_appended),
        "payload_bytes_appended_total": Metrics::get(&m.payload_bytes_appended),
        "appends_total": {
            "ok": Metrics::get(&m.appends_ok),
            "failed": Metrics::get(&m.appends_failed),
        },
        "followers": Metrics::get(&m.followers),
        "store_bytes": store.disk_usage(),
        "processors": by_state,
        "sync_seconds": {
            "count": Metrics::get(&m.syncs),
            "sum": sum,
            "buckets": buckets,
        },
    })
}

fn prometheus(store: &Store, processes: &ProcessTable) -> String {
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

#[cfg(test)]
mod tests {
    use super::wants_prometheus;

    #[test]
    fn accept_picks_the_format() {
        // What Prometheus 2.x and 3.x send.
        assert!(wants_prometheus(
            "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        ));
        assert!(wants_prometheus("text/plain"));
        assert!(wants_prometheus("Text/Plain; charset=utf-8"));
        assert!(!wants_prometheus(""));
        assert!(!wants_prometheus("*/*"));
        assert!(!wants_prometheus("application/json"));
        assert!(!wants_prometheus("text/*"));
        assert!(!wants_prometheus("application/json, text/plain"));
        assert!(wants_prometheus("application/json;q=0.5, text/plain"));
        assert!(!wants_prometheus("text/plain;q=0"));
    }
}
