//! Materialized views through the real server: the fold is right, it is
//! saved at `view.<name>`, a restart resumes without refolding, a watch
//! sees each saved change, a new create refolds, `term` stops it.

mod common;

use std::time::{Duration, Instant};

use common::{Server, Stream};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn create(server: &Server, name: &str, script: &str) -> Value {
    server.append(&format!("xs.view.{name}.create"), script.as_bytes())
}

/// Polls `view.<name>` until `done` holds for its value.
fn wait_state(server: &Server, name: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = server.get(&format!("/kv/view.{name}"));
        if r.status == 200 {
            let value = r.json();
            if done(&value) {
                return value;
            }
        }
        assert!(
            Instant::now() < deadline,
            "view.{name} never got there: {}",
            r.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Appends `n` frames of `topic` fast: one bulk import of fresh ids.
fn fill(server: &Server, topic: &str, n: usize) {
    // Ids made here must sort after the store's last one (Redis refuses
    // an import below it): one made in the same millisecond as a frame
    // just appended may not, one made in a later millisecond does.
    std::thread::sleep(Duration::from_millis(2));
    let mut body = String::new();
    for _ in 0..n {
        let id = scru128::new();
        body.push_str(&format!(
            "{{\"topic\":\"{topic}\",\"id\":\"{id}\",\"hash\":null,\"meta\":null,\"ttl\":\"forever\"}}\n"
        ));
    }
    let r = common::request(
        &server.sock(),
        "POST",
        "/import",
        &[("Content-Type", "application/x-ndjson")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

const COUNTER: &str = r#"{initial: 0, topics: ["ev"], run: {|frame, state| $state + 1}}"#;

#[test]
fn a_view_folds_ten_thousand_frames_and_saves_its_state() {
    let server = Server::start(&[]);
    fill(&server, "ev", 10_000);
    fill(&server, "noise", 100);
    let view = create(&server, "count", COUNTER);
    let saved = wait_state(&server, "count", |v| v["state"] == json!(10_000));
    let last_id = saved["last_id"].as_str().expect("last_id");
    let last_ev = server.frames("/last/ev")[0]["id"].clone();
    assert_eq!(
        json!(last_id),
        last_ev,
        "the state is current to its last_id"
    );
    let active = server.frames("/last/xs.view.count.active");
    assert_eq!(active[0]["meta"]["view_id"], view["id"]);
    // Clients cannot write a view's key.
    let r = common::request(&server.sock(), "PUT", "/kv/view.count", &[], b"1");
    assert_eq!(r.status, 409);
    // xs ps lists it.
    let ps = server.get("/ps").text();
    assert!(
        ps.contains(r#""name":"count","kind":"view","state":"running""#),
        "{ps}"
    );
}

#[test]
fn a_restart_resumes_after_last_id_without_refolding() {
    let mut server = Server::start(&[]);
    // History first (imported frames are history, never news to a live
    // reader), then the view, which folds it from the start.
    server.append("mark", b"");
    fill(&server, "ev", 200);
    // The fold leaves a frame each time it meets `mark`: a refold after
    // the restart would leave a second one.
    create(
        &server,
        "marks",
        r#"{initial: 0, topics: ["ev", "mark"], run: {|frame, state|
            if $frame.topic == "mark" { .append fold.saw-mark }
            $state + 1
        }}"#,
    );
    wait_state(&server, "marks", |v| v["state"] == json!(201));
    server.stop();
    server.restart();
    server.append("ev", b"");
    wait_state(&server, "marks", |v| v["state"] == json!(202));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        server.frames("/?topic=fold.saw-mark").len(),
        1,
        "the view refolded after the restart"
    );
}

#[test]
fn a_watch_sees_each_saved_change() {
    let server = Server::start(&[]);
    create(&server, "live", COUNTER);
    wait_state_or_absent(&server);
    let mut watch = Stream::open(&server.sock(), "/kv/view.live?follow", &[]);
    for _ in 0..3 {
        server.append("ev", b"");
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut counts = Vec::new();
    let deadline = Instant::now() + WAIT;
    while counts.last() != Some(&3) && Instant::now() < deadline {
        if let common::Next::Line(line) = watch.next_line(Duration::from_secs(5)) {
            let entry: Value = serde_json::from_str(&line).expect("json line");
            assert_eq!(entry["key"], "view.live");
            if let Some(count) = entry["value"]["state"].as_i64() {
                counts.push(count);
            }
        }
    }
    assert_eq!(counts.last(), Some(&3), "{counts:?}");
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
}

/// The key is absent until the first frame is folded.
fn wait_state_or_absent(server: &Server) {
    let deadline = Instant::now() + WAIT;
    while server.frames("/?topic=xs.view.live.active").is_empty() {
        assert!(Instant::now() < deadline, "the view never became active");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_new_create_refolds_and_term_stops() {
    let server = Server::start(&[]);
    fill(&server, "ev", 50);
    create(&server, "v", COUNTER);
    wait_state(&server, "v", |v| v["state"] == json!(50));
    create(
        &server,
        "v",
        r#"{initial: 0, topics: ["ev"], run: {|frame, state| $state + 10}}"#,
    );
    wait_state(&server, "v", |v| v["state"] == json!(500));
    let replaced = server.frames("/?topic=xs.view.v.replaced");
    assert_eq!(replaced.len(), 1);
    server.append("xs.view.v.term", b"");
    let deadline = Instant::now() + WAIT;
    while server.frames("/?topic=xs.view.v.fin.term").is_empty() {
        assert!(Instant::now() < deadline, "no fin.term");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.append("ev", b"");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        server.get("/kv/view.v").json()["state"],
        json!(500),
        "a terminated view folds no more"
    );
}
