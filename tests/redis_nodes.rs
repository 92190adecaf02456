//! Several `xs serve` nodes on one Redis, and Redis failing under them.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(5);

fn node(url: &str) -> Server {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("node");
    Server::start_in(tmp, dir, &["--backend", url])
}

fn ids(frames: &[Value]) -> Vec<String> {
    frames.iter().map(|f| id(f).to_string()).collect()
}

#[test]
fn two_nodes_share_one_stream() {
    let redis = RedisServer::start(&[]);
    let url = redis.url("shared");
    let a = node(&url);
    let b = node(&url);
    let mut on_b = b.follow("/?follow&new");
    let mut on_a = a.follow("/?follow&new&topic=chat");

    let sent = a.append("chat", b"hello from a");
    let seen = on_b.next_frame(T);
    assert_eq!(seen, sent, "b's follower sees a's append");
    let reply = b.append("chat", b"hello from b");
    assert_eq!(on_a.next_frame(T), sent);
    assert_eq!(on_a.next_frame(T), reply, "and the other way round");
    assert_eq!(on_b.next_frame(T), reply);
    assert!(id(&reply) > id(&sent));

    // An ephemeral frame reaches the other node's followers, payload too.
    let flash = a.append_q("flash", "ttl=ephemeral", b"gone soon");
    assert_eq!(on_b.next_frame(T), flash);
    let hash = flash["hash"].as_str().unwrap();
    assert_eq!(b.get(&format!("/cas/{hash}")).body, b"gone soon");

    // Both nodes read the same history, payloads included.
    let history = a.frames("/");
    assert_eq!(history, b.frames("/"));
    assert_eq!(
        history.iter().map(topic).collect::<Vec<_>>(),
        ["xs.start", "xs.start", "chat", "chat"]
    );
    let hash = sent["hash"].as_str().unwrap();
    assert_eq!(b.get(&format!("/cas/{hash}")).body, b"hello from a");
    assert_eq!(b.get(&format!("/{}", id(&sent))).json(), sent);

    // k/v set on one node is read and watched on the other.
    let mut watch = b.follow("/kv/greeting?follow");
    let before = watch.next_frame(T);
    let r = request(&a.sock(), "PUT", "/kv/greeting", &[], br#"{"text":"hi"}"#);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(b.get("/kv/greeting").json(), json!({"text": "hi"}));
    let change = watch.next_frame(T);
    assert_ne!(change, before);
    assert!(change.to_string().contains(r#"{"text":"hi"}"#), "{change}");
}

#[test]
fn ids_increase_across_nodes_under_concurrent_appends() {
    let redis = RedisServer::start(&[]);
    let url = redis.url("race");
    let nodes = [node(&url), node(&url)];
    let mut follower = nodes[1].follow("/?follow&new&topic=race");
    std::thread::scope(|scope| {
        for (n, server) in nodes.iter().enumerate() {
            for t in 0..3 {
                scope.spawn(move || {
                    for i in 0..30 {
                        server.append("race", format!("{n}-{t}-{i}").as_bytes());
                    }
                });
            }
        }
    });
    let history = nodes[0].frames("/?topic=race");
    assert_eq!(history.len(), 180);
    let mut sorted = ids(&history);
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        ids(&history),
        sorted,
        "stream order is id order, no repeats"
    );
    let live: Vec<Value> = (0..180).map(|_| follower.next_frame(T)).collect();
    assert_eq!(
        live, history,
        "a follower sees the same frames in the same order"
    );
}

#[test]
fn imports_must_be_above_the_last_id() {
    let redis = RedisServer::start(&[]);
    let server = node(&redis.url("imports"));
    let start = server.frames("/").remove(0);
    let old = scru128::Scru128Id::try_from_fields(now_ms() - 3_600_000, 1, 2, 3)
        .unwrap()
        .to_string();
    let r = server.post(
        "/import",
        json!({"topic": "imp", "id": old}).to_string().as_bytes(),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.text().contains("above the stream's last id"),
        "{}",
        r.text()
    );

    let ahead = scru128::Scru128Id::try_from_fields(now_ms() + 60_000, 1, 2, 3)
        .unwrap()
        .to_string();
    let frame =
        json!({"topic": "imp", "id": ahead, "hash": null, "meta": {"k": 1}, "ttl": "forever"});
    let r = server.post("/import", frame.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), frame);
    // The same frame again changes nothing.
    let r = server.post("/import", frame.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.frames("/"), [start, frame.clone()]);
    // New appends go above the imported id.
    let next = server.append("after", b"");
    assert!(id(&next) > id(&frame));
}

#[test]
fn redis_down_fails_appends_fast_and_followers_resume() {
    let mut redis = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let server = node(&redis.url("outage"));
    let mut follower = server.follow("/?follow&new&topic=load");
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let refused = Arc::new(Mutex::new(Vec::<(u16, String, Duration)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        for client in 0..4 {
            let (acked, refused, stop, server) = (&acked, &refused, &stop, &server);
            scope.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let r = server.post("/append/load", format!("{client}-{i}").as_bytes());
                    if r.status == 200 {
                        acked.lock().unwrap().push(id(&r.json()).to_string());
                    } else {
                        refused
                            .lock()
                            .unwrap()
                            .push((r.status, r.text(), started.elapsed()));
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    i += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        redis.kill();
        std::thread::sleep(Duration::from_millis(500));
        redis.restart();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
    });

    let refused = refused.lock().unwrap().clone();
    assert!(
        !refused.is_empty(),
        "appends were refused while Redis was down"
    );
    for (status, text, took) in &refused {
        assert_eq!(*status, 503, "{text}");
        assert!(text.contains("redis at 127.0.0.1:"), "{text}");
        assert!(*took < Duration::from_secs(3), "refused after {took:?}");
    }
    // Every acknowledged frame survived the crash (appendfsync always).
    let history = server.frames("/?topic=load");
    let stored = ids(&history);
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 10, "appends went through before and after");
    for id in &acked {
        assert!(stored.contains(id), "acknowledged {id} is missing");
    }
    // The follower resumed: it saw the whole history, once, in order.
    let live: Vec<Value> = (0..history.len()).map(|_| follower.next_frame(T)).collect();
    assert_eq!(ids(&live), stored);
    follower.expect_silence(Duration::from_millis(100));
}

#[test]
fn serve_refuses_an_unreachable_redis_and_bad_addresses() {
    let port = common::backend::free_port();
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(XS)
        .arg("serve")
        .arg(tmp.path().join("s"))
        .args(["--backend", &format!("redis://127.0.0.1:{port}/0?ns=x")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unreachable"), "{stderr}");

    for (args, expect) in [
        (vec!["--backend", "http://h:1"], "expected redis://"),
        (vec!["--backend", "redis://h:1?ns=a{b"], "namespace"),
        (
            vec!["--backend", "redis://h:1", "--fsync", "never"],
            "--fsync applies to the local backend",
        ),
        (vec!["--redis-replicas", "1"], "needs --backend"),
    ] {
        let out = std::process::Command::new(XS)
            .arg("serve")
            .arg(tmp.path().join("s"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
    }
}

/// Whether the node's process table lists `name` (it runs there).
fn runs_here(server: &Server, name: &str) -> bool {
    let r = server.get("/ps");
    assert_eq!(r.status, 200, "{}", r.text());
    r.frames()
        .iter()
        .any(|row| row["name"] == name && row["state"] != "stopped")
}

fn count(server: &Server, topic: &str) -> usize {
    server.frames(&format!("/?topic={topic}")).len()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_actor_runs_on_one_node_and_moves_when_its_node_dies() {
    let redis = RedisServer::start(&[]);
    let url = redis.url("actors");
    let mut nodes = vec![node(&url), node(&url)];
    let script = r#"{run: {|frame, state = null|
        if $frame.topic == "ping" { {out: {seen: $frame.id}, next: $state} } else { {next: $state} }
    }}"#;
    nodes[0].append("xs.actor.pong.create", script.as_bytes());
    wait_until("the actor to start", T, || {
        count(&nodes[1], "xs.actor.pong.active") == 1
    });

    // Pings through either node are answered once each, by one node.
    for i in 0..10 {
        nodes[i % 2].append("ping", b"");
    }
    wait_until("10 answers", T, || count(&nodes[0], "pong.out") >= 10);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&nodes[0], "pong.out"), 10, "every ping answered once");
    assert_eq!(count(&nodes[0], "xs.actor.pong.active"), 1, "started once");
    let owners: Vec<usize> = (0..2).filter(|n| runs_here(&nodes[*n], "pong")).collect();
    assert_eq!(owners.len(), 1, "runs on exactly one node: {owners:?}");

    // The owner dies; the other node takes the actor over within the
    // lease time and answers what comes next, once.
    let owner = owners[0];
    nodes[owner].kill();
    let survivor = nodes.remove(1 - owner);
    let killed_at = Instant::now();
    wait_until("the take-over", Duration::from_secs(15), || {
        runs_here(&survivor, "pong")
    });
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(10), "took over after {took:?}");
    // Its `active` frame says it now reads everything appended after it.
    wait_until("the new owner's active frame", T, || {
        count(&survivor, "xs.actor.pong.active") == 2
    });
    for _ in 0..5 {
        survivor.append("ping", b"");
    }
    wait_until("15 answers", T, || count(&survivor, "pong.out") >= 15);
    std::thread::sleep(Duration::from_millis(500));
    let outs = survivor.frames("/?topic=pong.out");
    let pings = survivor.frames("/?topic=ping");
    let mut seen: Vec<&str> = outs
        .iter()
        .map(|f| f["meta"]["seen"].as_str().unwrap())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), outs.len(), "no ping answered twice");
    assert_eq!(pings.len(), 15);
}

#[test]
fn a_service_stops_where_it_ran_and_terms_reach_every_node() {
    let redis = RedisServer::start(&[]);
    let url = redis.url("services");
    let nodes = [node(&url), node(&url)];
    nodes[1].append(
        "xs.service.ticker.create",
        br#"{run: {|| loop { .append tick; sleep 50ms } }}"#,
    );
    wait_until("ticks", T, || count(&nodes[0], "tick") >= 3);
    let owners: Vec<usize> = (0..2).filter(|n| runs_here(&nodes[*n], "ticker")).collect();
    assert_eq!(owners.len(), 1, "runs on exactly one node: {owners:?}");
    nodes[0].append("xs.service.ticker.term", b"");
    wait_until("fin.term", T, || {
        count(&nodes[1], "xs.service.ticker.fin.term") == 1
    });
    std::thread::sleep(Duration::from_millis(300));
    let ticks = count(&nodes[0], "tick");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&nodes[0], "tick"), ticks, "stopped everywhere");
    assert_eq!(count(&nodes[0], "xs.service.ticker.fin.term"), 1);
    assert!(!runs_here(&nodes[0], "ticker") && !runs_here(&nodes[1], "ticker"));
}

#[test]
fn redis_replicas_waits_for_a_replica() {
    let primary = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    let port = primary.port.to_string();
    let replica = RedisServer::start(&["--replicaof", "127.0.0.1", &port]);
    let client = ::redis::Client::open(format!("redis://127.0.0.1:{}/0", replica.port)).unwrap();
    let mut con = client.get_connection().unwrap();
    wait_until("the replica to sync", Duration::from_secs(20), || {
        let info: String = ::redis::cmd("INFO")
            .arg("replication")
            .query(&mut con)
            .unwrap();
        info.contains("master_link_status:up")
    });
    let ns = "replicated";
    let server = {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("node");
        Server::start_in(
            tmp,
            dir,
            &["--backend", &primary.url(ns), "--redis-replicas", "1"],
        )
    };
    let frame = server.append("durable", b"on two machines");
    // Acknowledged means the replica has it too: look there at once.
    let entries: Vec<(String, Vec<String>)> = ::redis::cmd("XRANGE")
        .arg(format!("{{{ns}}}:t:durable"))
        .arg("-")
        .arg("+")
        .query(&mut con)
        .unwrap();
    let fields: Vec<&String> = entries.iter().flat_map(|(_, f)| f).collect();
    assert!(
        fields.iter().any(|f| f.contains(id(&frame))),
        "the replica lacks the frame: {entries:?}"
    );
}

#[test]
fn action_calls_are_answered_once_even_when_their_node_dies() {
    let redis = RedisServer::start(&[]);
    let url = redis.url("actions");
    let mut nodes = vec![node(&url), node(&url)];
    nodes[0].append(
        "xs.action.slow.create",
        br#"{run: {|frame| sleep 1500ms; {n: $frame.meta.n}}}"#,
    );
    wait_until("the action", T, || {
        count(&nodes[1], "xs.action.slow.active") == 1
    });
    let owners: Vec<usize> = (0..2).filter(|n| runs_here(&nodes[*n], "slow")).collect();
    assert_eq!(
        owners.len(),
        1,
        "registered on exactly one node: {owners:?}"
    );
    let owner = owners[0];
    let call = |server: &Server, n: u64| {
        let r = request(
            &server.sock(),
            "POST",
            "/append/slow.call",
            &[("xs-meta", &b64(json!({"n": n}).to_string().as_bytes()))],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    // Answered while all is well.
    call(&nodes[1 - owner], 1);
    wait_until("the first answer", T, || {
        count(&nodes[0], "slow.response") == 1
    });
    // The owner dies mid-call; a second call lands while nobody holds
    // the action. The survivor answers both, once each.
    call(&nodes[owner], 2);
    std::thread::sleep(Duration::from_millis(300));
    nodes[owner].kill();
    let survivor = nodes.remove(1 - owner);
    call(&survivor, 3);
    wait_until("all answers", Duration::from_secs(15), || {
        count(&survivor, "slow.response") >= 3
    });
    std::thread::sleep(Duration::from_millis(2000));
    let answers = survivor.frames("/?topic=slow.response");
    let mut calls: Vec<String> = answers
        .iter()
        .map(|f| f["meta"]["frame_id"].as_str().unwrap().to_string())
        .collect();
    calls.sort();
    calls.dedup();
    assert_eq!(calls.len(), 3, "each call answered once: {answers:?}");
}

#[test]
fn a_dump_of_a_local_store_imports_into_a_fresh_namespace() {
    use common::cli::{ok, xs};
    let local = Server::start_local(&[]);
    local.append("note", b"first");
    local.append_q("note", "ttl=last:5", b"second");
    local.append("other.thing", b"");
    let history = local.frames("/");
    let dump = tempfile::tempdir().unwrap();
    let folder = dump.path().join("dump");
    let sock = local.sock();
    ok(&xs(&[
        "export",
        sock.to_str().unwrap(),
        folder.to_str().unwrap(),
    ]));

    let redis = RedisServer::start(&[]);
    let url = redis.url("migrated");
    let out = ok(&xs(&["import", &url, folder.to_str().unwrap()]));
    assert!(out.starts_with("imported 4 frames and 2 payloads"), "{out}");
    let node = node(&url);
    let served = node.frames("/");
    assert_eq!(
        served[..4],
        history[..],
        "the dump, then this node's xs.start"
    );
    assert_eq!(topic(&served[4]), "xs.start");
    let hash = history[1]["hash"].as_str().unwrap();
    assert_eq!(node.get(&format!("/cas/{hash}")).body, b"first");

    // The same dump again changes nothing.
    ok(&xs(&["import", &url, folder.to_str().unwrap()]));
    assert_eq!(node.frames("/"), served);
    // Into a namespace in use, other old ids are refused with the reason.
    let old = scru128::Scru128Id::try_from_fields(now_ms() - 3_600_000, 1, 2, 3).unwrap();
    let stale = dump.path().join("stale");
    std::fs::create_dir(&stale).unwrap();
    let line = json!({"topic": "late", "id": old.to_string()}).to_string();
    std::fs::write(stale.join("frames.jsonl"), line + "\n").unwrap();
    let out = xs(&["import", &url, stale.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("above the stream's last id"), "{text}");
}
