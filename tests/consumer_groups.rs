//! Consumer groups through the real binary: `GET /consume/<group>`,
//! `POST /ack|nack/<group>`, `GET /groups`, and `xs consume|ack|nack|groups`.
//! Run on both backends (tests/on_redis.rs compiles this file again), and
//! with two nodes sharing one group on Redis.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::backend::ON_REDIS;
use common::cli::{addr, ok, xs, xs_stdin, Follower};
use common::redis::RedisServer;
use common::waits;
use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(10);

fn consume(server: &Server, group: &str, query: &str) -> Stream {
    let stream = server.follow(&format!("/consume/{group}?{query}"));
    assert_eq!(stream.status, 200, "consume {group}?{query}");
    stream
}

fn ack(server: &Server, group: &str, ids: &[&str]) -> Value {
    let r = server.post(&format!("/ack/{group}"), ids.join("\n").as_bytes());
    assert_eq!(r.status, 200, "ack: {}", r.text());
    r.json()
}

fn nack(server: &Server, group: &str, ids: &[&str]) -> Value {
    let r = server.post(&format!("/nack/{group}"), ids.join(",").as_bytes());
    assert_eq!(r.status, 200, "nack: {}", r.text());
    r.json()
}

fn group(server: &Server, name: &str) -> Value {
    let r = server.get("/groups");
    assert_eq!(r.status, 200);
    r.json()
        .as_array()
        .expect("an array")
        .iter()
        .find(|g| g["group"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no group {name} in {}", r.text()))
}

/// The next delivery, if one comes within `wait`.
fn try_next(stream: &mut Stream, wait: Duration) -> Option<Value> {
    match stream.next_line(wait) {
        Next::Line(line) => Some(serde_json::from_str(&line).expect("a JSON line")),
        Next::Timeout => None,
        other => panic!("consumer stream ended: {other:?}"),
    }
}

fn append_jobs(server: &Server, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| id(&server.append("job", format!("job {i}").as_bytes())).to_string())
        .collect()
}

#[test]
fn three_consumers_one_killed_mid_job_every_frame_done_once_acked() {
    let server = Server::start(&[]);
    let jobs = append_jobs(&server, 30);
    let query = "topics=job&start=first&ack-wait=3s&max-inflight=3";
    let mut workers = [
        consume(&server, "workers", query),
        consume(&server, "workers", query),
    ];
    let mut doomed = consume(&server, "workers", query);

    // The third consumer takes its first frames, then dies mid-job.
    let mut lost = Vec::new();
    lost.push(try_next(&mut doomed, T).expect("the third consumer gets a frame"));
    while let Some(frame) = try_next(&mut doomed, Duration::from_millis(300)) {
        lost.push(frame);
    }
    drop(doomed);

    // The other two work through everything, acking each frame.
    let mut acked: BTreeSet<String> = BTreeSet::new();
    let mut held: BTreeMap<String, usize> = BTreeMap::new();
    let mut redelivered = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.len() < jobs.len() {
        assert!(
            Instant::now() < deadline,
            "acked only {} of {}",
            acked.len(),
            jobs.len()
        );
        for (n, worker) in workers.iter_mut().enumerate() {
            let Some(frame) = try_next(worker, Duration::from_millis(50)) else {
                continue;
            };
            let frame_id = id(&frame).to_string();
            assert!(
                !acked.contains(&frame_id),
                "acked frame {frame_id} came back"
            );
            if let Some(other) = held.insert(frame_id.clone(), n) {
                panic!("{frame_id} is pending at worker {other} and was given to {n}");
            }
            if frame["deliveries"].as_u64() != Some(1) {
                redelivered.insert(frame_id.clone(), frame["deliveries"].clone());
            }
            let answer = ack(&server, "workers", &[&frame_id]);
            assert_eq!(answer["acked"][0], frame_id.as_str());
            held.remove(&frame_id);
            acked.insert(frame_id);
        }
    }
    assert_eq!(acked, jobs.iter().cloned().collect::<BTreeSet<_>>());
    // What the dead consumer held came again, counted.
    for frame in &lost {
        assert_eq!(redelivered.get(id(frame)), Some(&Value::from(2)), "{frame}");
    }
    // And nothing more: every frame is acked.
    for worker in workers.iter_mut() {
        assert!(try_next(worker, Duration::from_millis(300)).is_none());
    }
    let state = group(&server, "workers");
    assert_eq!(state["pending"], 0);
    assert_eq!(state["position"], jobs.last().unwrap().as_str());
    // An ack of a frame already acked says so.
    let again = ack(&server, "workers", &[&jobs[0]]);
    assert_eq!(again["acked"], Value::Array(vec![]));
    assert_eq!(again["unknown"][0], jobs[0].as_str());
}

#[test]
fn pending_frames_and_acks_survive_a_restart() {
    let mut server = Server::start(&[]);
    let jobs = append_jobs(&server, 4);
    let mut stream = consume(
        &server,
        "g",
        "topics=job&start=first&max-inflight=2&ack-wait=1s",
    );
    let first = try_next(&mut stream, T).expect("a frame");
    let second = try_next(&mut stream, T).expect("a second frame");
    assert_eq!([id(&first), id(&second)], [&jobs[0], &jobs[1]]);
    ack(&server, "g", &[&jobs[0]]);
    // The ack made room for one more.
    assert_eq!(
        id(&try_next(&mut stream, T).expect("a third frame")),
        jobs[2]
    );
    drop(stream);
    // Killed: no chance to write anything more.
    server.kill();
    server.restart();
    let state = group(&server, "g");
    assert_eq!(state["position"], jobs[2].as_str());
    assert_eq!(state["pending"], 2);
    assert_eq!(state["frames"][0]["id"], jobs[1].as_str());
    assert_eq!(state["frames"][1]["id"], jobs[2].as_str());

    // What was not acked comes again; what was never does.
    let mut stream = consume(&server, "g", "topics=job&max-inflight=5");
    let mut got = Vec::new();
    for _ in 0..3 {
        let frame = try_next(&mut stream, T).expect("a frame after the restart");
        got.push((
            id(&frame).to_string(),
            frame["deliveries"].as_u64().unwrap(),
        ));
    }
    got.sort();
    assert_eq!(
        got,
        [
            (jobs[1].clone(), 2),
            (jobs[2].clone(), 2),
            (jobs[3].clone(), 1)
        ]
    );
    assert!(try_next(&mut stream, Duration::from_millis(300)).is_none());
}

#[test]
fn a_frame_delivered_too_often_goes_to_the_dead_letter_topic() {
    let server = Server::start(&[]);
    let job = server.append("job", b"poison");
    let job_id = id(&job).to_string();
    let mut stream = consume(&server, "q", "topics=job&start=first&max-deliver=2");
    for n in 1..=2 {
        let frame = try_next(&mut stream, T).expect("a delivery");
        assert_eq!(id(&frame), job_id);
        assert_eq!(frame["deliveries"], n);
        assert_eq!(nack(&server, "q", &[&job_id])["nacked"][0], job_id.as_str());
    }
    // The third would be one too many: dead-lettered, acked, not delivered.
    assert!(try_next(&mut stream, Duration::from_millis(500)).is_none());
    let dead = server.get("/last/q.dead");
    assert_eq!(dead.status, 200);
    let dead = dead.json();
    assert_eq!(dead["meta"]["id"], job_id.as_str());
    assert_eq!(dead["meta"]["topic"], "job");
    assert_eq!(dead["meta"]["deliveries"], 2);
    assert!(dead["meta"]["reason"]
        .as_str()
        .unwrap()
        .contains("max-deliver 2"));
    assert_eq!(dead["hash"], job["hash"], "the payload goes with it");
    assert_eq!(group(&server, "q")["pending"], 0);
}

#[test]
fn max_inflight_bounds_the_frames_pending_at_a_consumer() {
    let server = Server::start(&[]);
    let jobs = append_jobs(&server, 5);
    let mut stream = consume(&server, "m", "topics=job&start=first&max-inflight=2");
    let a = try_next(&mut stream, T).expect("one");
    let b = try_next(&mut stream, T).expect("two");
    assert!(
        try_next(&mut stream, Duration::from_millis(500)).is_none(),
        "a third while two pending"
    );
    ack(&server, "m", &[id(&a)]);
    let c = try_next(&mut stream, T).expect("room for one more");
    assert!(
        try_next(&mut stream, Duration::from_millis(500)).is_none(),
        "only one more"
    );
    assert_eq!([id(&a), id(&b), id(&c)], [&jobs[0], &jobs[1], &jobs[2]]);
    // Another consumer of the group gets what this one has no room for.
    let mut other = consume(&server, "m", "topics=job");
    assert_eq!(id(&try_next(&mut other, T).expect("the fourth")), jobs[3]);
}

#[test]
fn groups_start_where_told_and_keep_their_topics() {
    let server = Server::start(&[]);
    let old = append_jobs(&server, 2);
    // `new` (the default): only frames appended from now on.
    let mut fresh = consume(&server, "late", "topics=job");
    server.append("other", b"not ours");
    let new = id(&server.append("job", b"new")).to_string();
    assert_eq!(id(&try_next(&mut fresh, T).expect("the new frame")), new);
    // After an id.
    let mut after = consume(&server, "after", &format!("topics=job&start={}", old[0]));
    assert_eq!(id(&try_next(&mut after, T).expect("after the id")), old[1]);
    // A group keeps the topics it was made with.
    let r = server.get("/consume/late?topics=other");
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("consumes topics 'job'"), "{}", r.text());
    // Bad input is a 400 with a reason.
    for (path, says) in [
        ("/consume/late", "topics is required"),
        ("/consume/1bad?topics=job", "invalid group name"),
        ("/consume/late?topics=job&ack-wait=soon", "invalid duration"),
        ("/consume/late?topics=job&max-inflight=0", "max-inflight"),
        ("/consume/late?topics=job&start=yesterday", "invalid start"),
    ] {
        let r = server.get(path);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(r.text().contains(says), "{path}: {}", r.text());
    }
    let r = server.post("/ack/late", b"not-an-id");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = server.post("/ack/late", b"");
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn the_cli_consumes_acks_nacks_and_lists_groups() {
    let server = Server::start(&[]);
    let store = addr(&server);
    let jobs = append_jobs(&server, 2);
    let consumer = Follower::spawn(&[
        "consume",
        &store,
        "cli",
        "-T",
        "job",
        "--start",
        "first",
        "--max-inflight",
        "1",
        "--name",
        "w1",
        "--ack-wait",
        "30s",
    ]);
    let first = consumer.frame();
    assert_eq!(id(&first), jobs[0]);
    assert_eq!(first["deliveries"], 1);

    let listed = ok(&xs(&["groups", &store]));
    let line: Value = serde_json::from_str(listed.trim()).expect("one JSON line");
    assert_eq!(line["group"], "cli");
    assert_eq!(line["topics"], "job");
    assert_eq!(line["start"], "first");
    assert_eq!(line["position"], jobs[0].as_str());
    assert_eq!(line["pending"], 1);
    assert_eq!(line["consumers"][0]["name"], "w1");
    assert_eq!(line["consumers"][0]["pending"], 1);
    assert_eq!(line["consumers"][0]["live"], true);
    assert_eq!(line["frames"][0]["id"], jobs[0].as_str());
    assert_eq!(line["frames"][0]["consumer"], "w1");
    assert_eq!(line["frames"][0]["deliveries"], 1);

    // A nack hands it out again; an ack (ids on stdin) lets the next come.
    let nacked = ok(&xs(&["nack", &store, "cli", &jobs[0]]));
    assert!(
        nacked.contains(&format!("\"nacked\":[\"{}\"]", jobs[0])),
        "{nacked}"
    );
    let again = consumer.frame();
    assert_eq!(
        (id(&again), again["deliveries"].as_u64()),
        (jobs[0].as_str(), Some(2))
    );
    let acked = ok(&xs_stdin(
        &["ack", &store, "cli"],
        format!("{}\n", jobs[0]).as_bytes(),
    ));
    assert!(
        acked.contains(&format!("\"acked\":[\"{}\"]", jobs[0])),
        "{acked}"
    );
    assert_eq!(id(&consumer.frame()), jobs[1]);

    // The group's state is not in the k/v store's listing.
    assert_eq!(ok(&xs(&["kv", "ls", &store])), "");

    // Usage errors say what is missing.
    let out = xs(&["consume", &store, "cli"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing -T"));
    let out = xs(&["ack", &store, "cli", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn deleting_a_group_ends_its_consumers_and_forgets_its_state() {
    let mut server = Server::start(&[]);
    let store = addr(&server);
    let jobs = append_jobs(&server, 3);
    let query = "topics=job&start=first&max-inflight=2&ack-wait=30s";
    let mut doomed = consume(&server, "doomed", query);
    let mut kept = consume(&server, "kept", query);
    for stream in [&mut doomed, &mut kept] {
        let got: Vec<String> = (0..2)
            .map(|_| id(&try_next(stream, T).expect("a frame")).to_string())
            .collect();
        assert_eq!(got, jobs[..2]);
    }

    let r = server.delete("/groups/doomed");
    assert_eq!(r.status, 204, "{}", r.text());
    // Its consumer's stream ends; the other group's goes on.
    doomed.expect_closed(T);
    ack(&server, "kept", &[&jobs[0]]);
    assert_eq!(id(&try_next(&mut kept, T).expect("a frame")), jobs[2]);
    let names: Vec<Value> = server.get("/groups").json().as_array().unwrap().to_vec();
    assert_eq!(names.len(), 1, "{names:?}");
    assert_eq!(names[0]["group"], "kept");
    // Gone: nothing pending to ack, a second delete finds nothing.
    let answer = ack(&server, "doomed", &[&jobs[1]]);
    assert_eq!(answer["acked"].as_array().unwrap().len(), 0, "{answer}");
    let r = server.delete("/groups/doomed");
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("no consumer group doomed"),
        "{}",
        r.text()
    );
    assert_eq!(server.delete("/groups/9bad").status, 400);

    // The name is free: a new group under it starts afresh, with new
    // topics, and nothing of the old one comes back after a restart.
    let other = server.append("other", b"x");
    let mut fresh = consume(&server, "doomed", "topics=other&start=first");
    let frame = try_next(&mut fresh, T).expect("a frame");
    assert_eq!(
        (id(&frame), frame["deliveries"].as_u64()),
        (id(&other), Some(1))
    );
    drop(fresh);
    server.restart();
    let state = group(&server, "doomed");
    assert_eq!(state["topics"], "other");
    assert_eq!(state["position"], id(&other));
    assert_eq!(state["pending"], 1, "{state}");
    assert_eq!(state["frames"][0]["id"], id(&other));

    // The CLI: --delete, and exit 1 with the reason when there is none.
    ok(&xs(&["groups", &store, "--delete", "doomed"]));
    let out = xs(&["groups", &store, "--delete", "doomed"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no consumer group doomed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = ok(&xs(&["groups", &store]));
    assert!(!listed.contains("\"doomed\""), "{listed}");
}

/// Two nodes on one Redis, a consumer on each: no frame is handed to both.
#[test]
fn two_nodes_share_a_group_without_doubling_work() {
    if ON_REDIS {
        return; // This test runs its own Redis, once.
    }
    let redis = RedisServer::start(&[]);
    let url = redis.url("groups");
    let node = || {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("node");
        Server::start_in(tmp, dir, &["--backend", &url])
    };
    let (a, b) = (node(), node());
    let jobs = append_jobs(&a, 40);
    let query = "topics=job&start=first&max-inflight=4";
    let mut consumers = [consume(&a, "shared", query), consume(&b, "shared", query)];
    let nodes = [&a, &b];
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < jobs.len() {
        assert!(
            Instant::now() < deadline,
            "saw {} of {}",
            seen.len(),
            jobs.len()
        );
        for (n, consumer) in consumers.iter_mut().enumerate() {
            if let Some(frame) = try_next(consumer, Duration::from_millis(50)) {
                let frame_id = id(&frame).to_string();
                if let Some(first) = seen.insert(frame_id.clone(), n) {
                    panic!("{frame_id} handed to node {first} and node {n}");
                }
                ack(nodes[n], "shared", &[&frame_id]);
            }
        }
    }
    assert!(
        seen.values().any(|n| *n == 0) && seen.values().any(|n| *n == 1),
        "both nodes worked"
    );
    assert_eq!(group(&b, "shared")["pending"], 0);
    // Deleted on one node, the group is gone on both: each node's
    // consumer stream ends.
    assert_eq!(a.delete("/groups/shared").status, 204);
    for consumer in &mut consumers {
        consumer.expect_closed(T);
    }
    assert_eq!(b.get("/groups").json(), serde_json::json!([]));
}

// ---------------------------------------------------------------------------
// Actors as group members

const MEMBER: &str = r#"{
  group: "crew"
  topics: "job"
  start: "first"
  max_deliver: 2
  run: {|frame, state = 0|
    let body = .cas $frame.hash
    if $body == "fail" { error make {msg: "cannot do this one"} }
    {out: {done: $body}, next: ($state + 1)}
  }
}"#;

fn done(frames: &[Value]) -> Vec<String> {
    let mut done: Vec<String> = waits::of(frames, "worker.out")
        .iter()
        .map(|f| f["meta"]["done"].as_str().unwrap_or("?").to_string())
        .collect();
    done.sort();
    done
}

#[test]
fn an_actor_in_a_group_acks_what_it_handled_and_nacks_what_failed() {
    let server = Server::start(&[]);
    for body in ["one", "fail", "two"] {
        server.append("job", body.as_bytes());
    }
    server.append("xs.actor.worker.create", MEMBER.as_bytes());
    let active = waits::wait_topic(&server, "xs.actor.worker.active");
    assert_eq!(active["meta"]["group"], "crew");
    // The failing frame was nacked twice, then dead-lettered; the actor
    // went on with the others.
    let dead = waits::wait_topic(&server, "crew.dead");
    assert_eq!(dead["meta"]["deliveries"], 2);
    waits::wait_count(&server, "worker.out", 2);
    assert!(wait_until(T, || group(&server, "crew")["pending"] == 0));
    server.append("job", b"three");
    waits::wait_count(&server, "worker.out", 3);
    let frames = waits::all(&server);
    assert_eq!(done(&frames), ["one", "three", "two"]);
    assert!(waits::of(&frames, "xs.actor.worker.fin.error").is_empty());
    // Its state went on across the failures.
    let outs = waits::of(&frames, "worker.out");
    assert!(
        outs.iter().all(|f| f["meta"]["actor_id"].is_string()),
        "tagged"
    );
    // Its group deleted under it, the actor ends with the reason, and
    // does not make the group again.
    assert_eq!(server.delete("/groups/crew").status, 204);
    let fin = waits::wait_topic(&server, "xs.actor.worker.fin.error");
    assert_eq!(fin["meta"]["error"], "no consumer group crew");
    assert_eq!(server.get("/groups").json(), serde_json::json!([]));
}

/// The same actor on two nodes of one Redis: each is a member, and every
/// job is done once.
#[test]
fn an_actor_on_two_redis_nodes_shares_the_work() {
    if ON_REDIS {
        return; // This test runs its own Redis, once.
    }
    let redis = RedisServer::start(&[]);
    let url = redis.url("actors");
    let node = || {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("node");
        Server::start_in(tmp, dir, &["--backend", &url])
    };
    let (a, b) = (node(), node());
    a.append("xs.actor.worker.create", MEMBER.as_bytes());
    // Both nodes run a member.
    waits::wait_count(&a, "xs.actor.worker.active", 2);
    let jobs: Vec<String> = (0..20).map(|n| format!("job{n:02}")).collect();
    for (n, job) in jobs.iter().enumerate() {
        [&a, &b][n % 2].append("job", job.as_bytes());
    }
    waits::wait_count(&b, "worker.out", jobs.len());
    assert!(wait_until(T, || group(&a, "crew")["pending"] == 0));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(done(&waits::all(&b)), jobs, "every job done exactly once");
}

/// `xs consume --ack-stdin`: a worker writes back the ids it finished.
#[test]
fn the_cli_consumer_acks_ids_written_to_its_stdin() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let server = Server::start(&[]);
    let store = addr(&server);
    let jobs = append_jobs(&server, 3);
    let mut child = Command::new(XS)
        .args(["consume", &store, "co", "-T", "job", "--start", "first"])
        .args(["--max-inflight", "1", "--ack-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn xs consume");
    let mut to_consumer = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    for job in &jobs {
        let line = rx.recv_timeout(T).expect("a frame");
        let frame: Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(id(&frame), job);
        assert_eq!(frame["deliveries"], 1);
        writeln!(to_consumer, "{job}").expect("write the id back");
    }
    assert!(wait_until(T, || group(&server, "co")["pending"] == 0));
    let _ = child.kill();
    let _ = child.wait();
}

/// `.ack` and `.nack` from a script.
#[test]
fn scripts_ack_and_nack_with_builtins() {
    let server = Server::start(&[]);
    let jobs = append_jobs(&server, 2);
    let mut stream = consume(&server, "s", "topics=job&start=first");
    for job in &jobs {
        assert_eq!(id(&try_next(&mut stream, T).expect("a frame")), job);
    }
    let eval = |script: String| {
        let r = server.post("/eval", script.as_bytes());
        assert_eq!(r.status, 200, "{script}: {}", r.text());
        serde_json::from_str::<Value>(r.text().trim())
            .unwrap_or_else(|e| panic!("{script}: not JSON ({e}): {}", r.text()))
    };
    let nacked = eval(format!(".nack s {}", jobs[0]));
    assert_eq!(nacked["nacked"][0], jobs[0].as_str(), "{nacked}");
    let again = try_next(&mut stream, T).expect("the nacked frame again");
    assert_eq!(
        (id(&again), again["deliveries"].as_u64()),
        (jobs[0].as_str(), Some(2))
    );
    let acked = eval(format!(".ack s {} {}", jobs[0], jobs[1]));
    assert_eq!(acked["acked"].as_array().map(Vec::len), Some(2), "{acked}");
    assert_eq!(group(&server, "s")["pending"], 0);
}
