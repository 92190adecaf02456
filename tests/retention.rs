//! Retention rules (`xs serve --retain`), black-box: count, size and age
//! limits held while appends go on, other topics left alone, payloads
//! collected, followers seeing what `xs remove` would show them, bad
//! specs refused, and `xs retain`. Runs on both backends (tests/on_redis.rs
//! compiles it again); two nodes sweeping one Redis at once only there.

mod common;

use std::time::{Duration, Instant};

use common::backend::ON_REDIS;
use common::cli::{addr, lines, ok, xs};
use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(20);
/// A short sweep interval, so the tests wait little.
const SWEEP: &str = "50";

/// `GET /retain`, one object per rule.
fn retain(server: &Server) -> Vec<Value> {
    let r = server.get("/retain");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type(), Some("application/x-ndjson"));
    lines(&r.text())
}

fn rule<'a>(rows: &'a [Value], pattern: &str) -> &'a Value {
    rows.iter()
        .find(|row| row["pattern"] == pattern)
        .unwrap_or_else(|| panic!("no rule for {pattern} in {rows:?}"))
}

/// The stored JSON lines of a topic filter, as `GET /` sends them.
fn raw_lines(server: &Server, topics: &str) -> Vec<String> {
    let r = server.get(&format!("/?topic={topics}"));
    assert_eq!(r.status, 200);
    r.text().lines().map(str::to_string).collect()
}

fn ids_of(frames: &[Value]) -> Vec<String> {
    frames.iter().map(|f| id(f).to_string()).collect()
}

/// Waits until the sweeper has run twice more (both nodes' view is
/// settled: anything it would remove is gone).
fn two_more_sweeps(server: &Server, pattern: &str) {
    for _ in 0..2 {
        let before = rule(&retain(server), pattern)["swept_at"].clone();
        assert!(
            wait_until(T, || rule(&retain(server), pattern)["swept_at"] != before),
            "the sweeper stopped"
        );
    }
}

#[test]
fn count_and_size_limits_hold_while_appends_continue() {
    let server = Server::start(&[
        "--ttl-sweep",
        SWEEP,
        "--retain",
        "log.*=20",
        "--retain",
        "big=2KB",
    ]);
    let untouched: Vec<Value> = (0..5)
        .map(|n| server.append(if n % 2 == 0 { "log" } else { "audit" }, b"keep me"))
        .collect();

    // Appends go on in the background; the sweeper removes while they do.
    let sock = server.sock();
    let appender = std::thread::spawn(move || {
        let mut sent = Vec::new();
        for n in 0..150 {
            let topic = if n % 2 == 0 { "log.app" } else { "log.db.slow" };
            let r = request(
                &sock,
                "POST",
                &format!("/append/{topic}"),
                &[],
                format!("line {n}").as_bytes(),
            );
            assert_eq!(r.status, 200);
            sent.push(r.json());
            let payload = format!("{n:0>200}");
            let r = request(&sock, "POST", "/append/big", &[], payload.as_bytes());
            assert_eq!(r.status, 200);
        }
        sent
    });
    let removed_while_appending = wait_until(T, || {
        let rows = retain(&server);
        rule(&rows, "log.*")["removed_total_frames"].as_u64() > Some(0)
            && rule(&rows, "big")["removed_total_frames"].as_u64() > Some(0)
    });
    let still_appending = !appender.is_finished();
    let sent = appender.join().unwrap();
    assert!(removed_while_appending, "{:?}", retain(&server));
    if !still_appending {
        eprintln!("note: the appends ended before the first removal was seen");
    }

    // Settled: exactly the newest 20 of log.*, oldest gone first.
    assert!(
        wait_until(T, || server.frames("/?topic=log.*").len() == 20),
        "log.* holds {} frames",
        server.frames("/?topic=log.*").len()
    );
    two_more_sweeps(&server, "log.*");
    let kept = server.frames("/?topic=log.*");
    assert_eq!(ids_of(&kept), ids_of(&sent[sent.len() - 20..]));

    // big: its frames and their 200-byte payloads within 2 KB, the newest
    // kept, and one more would not fit.
    let sizes: Vec<u64> = raw_lines(&server, "big")
        .iter()
        .map(|line| line.len() as u64 + 200)
        .collect();
    let held: u64 = sizes.iter().sum();
    assert!(held <= 2000, "big holds {held} bytes");
    assert!(
        held + sizes[0] > 2000,
        "removed too much: {held} bytes left"
    );
    let newest_big = server.frames("/last/big");
    assert_eq!(server.frames("/?topic=big").last(), newest_big.last());

    // What the rule reports is what is there.
    let rows = retain(&server);
    assert_eq!(rule(&rows, "log.*")["frames"], 20);
    assert_eq!(rule(&rows, "log.*")["oldest"], id(&kept[0]));
    assert_eq!(rule(&rows, "big")["bytes"], held);
    assert_eq!(rule(&rows, "big")["max_bytes"], 2000);

    // Other topics, `log` itself among them (not under `log.`), untouched.
    for frame in &untouched {
        assert_eq!(server.get(&format!("/{}", id(frame))).json(), *frame);
    }
}

#[test]
fn age_limit_removes_frames_once_they_are_older() {
    let server = Server::start(&["--ttl-sweep", SWEEP, "--retain", "tmp.*=1s"]);
    let old: Vec<Value> = (0..3).map(|_| server.append("tmp.x", b"old")).collect();
    let other = server.append("tmpx", b"not under tmp.");
    let appended = id_ms(id(&old[2]));
    assert!(
        wait_until(T, || server.frames("/?topic=tmp.*").is_empty()),
        "tmp.* frames never went"
    );
    assert!(
        now_ms() >= appended + 1000,
        "removed before they were a second old"
    );
    // A new frame stays until it is a second old.
    let fresh = server.append("tmp.y", b"new");
    two_more_sweeps(&server, "tmp.*");
    if now_ms() < id_ms(id(&fresh)) + 1000 {
        assert_eq!(server.frames("/?topic=tmp.*"), std::slice::from_ref(&fresh));
    }
    assert_eq!(server.get(&format!("/{}", id(&other))).json(), other);
    let rows = retain(&server);
    assert_eq!(rule(&rows, "tmp.*")["max_age_ms"], 1000);
    assert!(rule(&rows, "tmp.*")["removed_total_frames"].as_u64() >= Some(3));
}

#[test]
fn removed_frames_payloads_are_collected() {
    let server = Server::start(&["--ttl-sweep", SWEEP, "--retain", "doc=1"]);
    let first = server.append("doc", b"first version of the document");
    let hash = first["hash"].as_str().unwrap().to_string();
    let second = server.append("doc", b"second version of the document");
    assert!(wait_until(T, || server.frames("/?topic=doc") == [second.clone()]));
    if ON_REDIS {
        // On Redis an unreferenced payload lives on for a grace period
        // (an append of the same bytes may take it back), then expires.
        let url = server
            .args()
            .iter()
            .find(|a| a.starts_with("redis://"))
            .unwrap()
            .clone();
        let address = xs::store::RedisAddress::parse(&url).unwrap();
        let client = ::redis::Client::open(address.url.as_str()).unwrap();
        let mut con = client.get_connection().unwrap();
        let key = format!("{}cas:{hash}", address.key_prefix());
        let pttl: i64 = ::redis::cmd("PTTL").arg(&key).query(&mut con).unwrap();
        assert!(pttl > 0, "the payload does not expire: PTTL {pttl}");
    } else {
        assert!(
            wait_until(T, || server.get(&format!("/cas/{hash}")).status == 404),
            "the removed frame's payload is still there"
        );
    }
    let kept = second["hash"].as_str().unwrap();
    assert_eq!(
        server.get(&format!("/cas/{kept}")).body,
        b"second version of the document"
    );
}

#[test]
fn followers_see_retention_as_they_see_xs_remove() {
    let server = Server::start(&["--ttl-sweep", SWEEP, "--retain", "job.*=2"]);
    let mut live = server.follow("/?follow&new&topic=job.*,note");
    let jobs: Vec<Value> = (0..5)
        .map(|n| server.append("job.run", format!("{n}").as_bytes()))
        .collect();
    // A live follower got each frame as it was appended.
    for job in &jobs {
        assert_eq!(live.next_frame(T), *job);
    }
    assert!(wait_until(T, || server.frames("/?topic=job.*").len() == 2));
    let note = server.append("note", b"removed by hand");
    // Live followers read the store when the head moves, so a frame
    // removed before a follower's turn is not delivered: wait for it first.
    assert_eq!(live.next_frame(T), note);
    let r = server.delete(&format!("/{}", id(&note)));
    assert_eq!(r.status, 204, "{}", r.text());
    // A follower starting now replays only what is left, the same for a
    // frame the sweeper removed as for one `xs remove` removed; then it
    // gets new frames live.
    let mut replay = server.follow("/?follow&topic=job.*,note");
    assert_eq!(replay.next_frame(T), jobs[3]);
    assert_eq!(replay.next_frame(T), jobs[4]);
    assert_eq!(replay.next_topic(T), "xs.threshold");
    let next = server.append("job.run", b"5");
    assert_eq!(replay.next_frame(T), next);
    assert_eq!(live.next_frame(T), next);
}

#[test]
fn bad_specs_stop_serve_with_a_line_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let dir = dir.to_str().unwrap();
    for (spec, why) in [
        ("log.*=7x", "unknown rule '7x'"),
        ("log.*", "expected <pattern>=<rule>[,<rule>]"),
        ("log.*=0", "must be at least 1"),
        ("log.*=1d,2d", "two age rules"),
        ("9log=1d", "Topic must start with"),
        ("log.*=", "an empty rule"),
    ] {
        let out = xs(&["serve", dir, "--retain", "ok=1d", "--retain", spec]);
        assert_eq!(out.status.code(), Some(2), "{spec}");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let first = stderr.lines().next().unwrap_or("");
        assert!(
            first.starts_with(&format!("error: invalid --retain '{spec}': "))
                && first.contains(why),
            "{spec}: {stderr}"
        );
    }
    let out = xs(&["serve", dir, "--retain", "a=1d", "--ttl-sweep", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--retain needs sweeping"));
}

#[test]
fn xs_retain_shows_rules_and_what_each_pattern_holds() {
    let server = Server::start(&[
        "--ttl-sweep",
        SWEEP,
        "--retain",
        "log.*=3,1MiB",
        "--retain",
        "metrics=7d",
    ]);
    for n in 0..5 {
        server.append("log.app", format!("{n}").as_bytes());
    }
    assert!(wait_until(T, || server.frames("/?topic=log.*").len() == 3));
    two_more_sweeps(&server, "log.*");
    let out = xs(&["retain", &addr(&server)]);
    let rows = lines(&ok(&out));
    assert_eq!(rows.len(), 2);
    let log = rule(&rows, "log.*");
    assert_eq!(log["rules"], "3,1MiB");
    assert_eq!(log["max_frames"], 3);
    assert_eq!(log["max_bytes"], 1 << 20);
    assert_eq!(log["max_age_ms"], Value::Null);
    assert_eq!(log["frames"], 3);
    let held: u64 = raw_lines(&server, "log.*")
        .iter()
        .map(|l| l.len() as u64 + 1)
        .sum();
    assert_eq!(log["bytes"], held, "frames' JSON plus 1-byte payloads");
    let oldest = &server.frames("/?topic=log.*")[0];
    assert_eq!(log["oldest"], id(oldest));
    assert!(log["oldest_age_ms"].as_u64().is_some());
    assert_eq!(log["removed_total_frames"], 2);
    assert!(log["swept_at"].as_str().is_some());
    let metrics = rule(&rows, "metrics");
    assert_eq!(metrics["max_age_ms"], 7 * 86_400_000u64);
    assert_eq!(metrics["frames"], 0);
    assert_eq!(metrics["oldest"], Value::Null);

    // No rules: nothing to show.
    let bare = Server::start(&[]);
    assert_eq!(ok(&xs(&["retain", &addr(&bare)])), "");
}

/// Two nodes on one Redis, both with the rule, sweeping at once: the
/// pattern ends at its limit, not below it.
#[test]
fn two_nodes_sweeping_one_redis_remove_each_frame_once() {
    if !ON_REDIS {
        eprintln!("Redis only: two nodes on one namespace");
        return;
    }
    let a = Server::start(&["--ttl-sweep", "20", "--retain", "q.*=10"]);
    let url = a
        .args()
        .iter()
        .find(|arg| arg.starts_with("redis://"))
        .unwrap()
        .clone();
    let b = Server::start_local(&["--ttl-sweep", "20", "--retain", "q.*=10", "--backend", &url]);
    let started = Instant::now();
    let mut sent = Vec::new();
    // Rounds of appends, each left to settle: every settling is a chance
    // for the two sweepers to race over the same oldest frames.
    for round in 0..4 {
        for n in 0..30 {
            let node = if n % 2 == 0 { &a } else { &b };
            sent.push(node.append("q.x", format!("{round}.{n}").as_bytes()));
        }
        assert!(wait_until(T, || a.frames("/?topic=q.*").len() <= 10));
        two_more_sweeps(&a, "q.*");
        two_more_sweeps(&b, "q.*");
        assert_eq!(
            ids_of(&a.frames("/?topic=q.*")),
            ids_of(&sent[sent.len() - 10..]),
            "round {round}, after {:?}: a frame went twice over",
            started.elapsed()
        );
    }
    let removed = |s: &Server| {
        rule(&retain(s), "q.*")["removed_total_frames"]
            .as_u64()
            .unwrap()
    };
    assert!(removed(&a) + removed(&b) >= 110);
    assert_eq!(rule(&retain(&b), "q.*")["frames"], 10);
}

/// Removals elsewhere (a `last:1` topic pruned on every append) do not
/// hold a rule back: they are counted per pattern, so the sweeper's totals
/// for `log.*` stay valid and its removals go ahead.
#[test]
fn removals_under_other_topics_do_not_stall_a_rule() {
    let server = Server::start(&["--ttl-sweep", SWEEP, "--retain", "log.*=100"]);
    let sent: Vec<Value> = (0..300)
        .map(|n| server.append("log.x", format!("{n}").as_bytes()))
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pruning: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            let sock = server.sock();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = request(&sock, "POST", "/append/tick?ttl=last:1", &[], b"t");
                    assert_eq!(r.status, 200);
                }
            })
        })
        .collect();
    let held = wait_until(T, || server.frames("/?topic=log.*").len() == 100);
    let kept = server.frames("/?topic=log.*");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for thread in pruning {
        thread.join().unwrap();
    }
    assert!(held, "log.* holds {} frames", kept.len());
    assert_eq!(ids_of(&kept), ids_of(&sent[200..]));
}
