//! Concurrent appends and followers, and durability under SIGKILL.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;

const THREADS: usize = 8;
const PER_THREAD: usize = 50;

#[test]
fn concurrent_appends_reach_a_follower_in_order() {
    let server = Server::start(&[]);
    let mut follow = server.follow("/?follow&topic=conc.*");
    assert_eq!(follow.next_topic(Duration::from_secs(5)), "xs.threshold");
    // A second follower that reads nothing until the load is over.
    let mut lazy = server.follow("/?follow&topic=conc.*");

    let sock = server.sock();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|i| {
                        let r = request(
                            &sock,
                            "POST",
                            &format!("/append/conc.t{t}"),
                            &[],
                            format!("{t}-{i}").as_bytes(),
                        );
                        assert_eq!(r.status, 200, "{}", r.text());
                        r.json()
                    })
                    .collect::<Vec<Value>>()
            })
        })
        .collect();

    let total = THREADS * PER_THREAD;
    let mut received = Vec::with_capacity(total);
    while received.len() < total {
        received.push(follow.next_frame(Duration::from_secs(20)));
    }
    let appended: Vec<Vec<Value>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    follow.expect_silence(ms(100));

    // Strictly increasing ids, exactly the appended frames.
    for pair in received.windows(2) {
        assert!(
            id(&pair[0]) < id(&pair[1]),
            "{} !< {}",
            id(&pair[0]),
            id(&pair[1])
        );
    }
    let received_ids: HashSet<&str> = received.iter().map(id).collect();
    let appended_ids: HashSet<&str> = appended.iter().flatten().map(id).collect();
    assert_eq!(received_ids.len(), total);
    assert_eq!(received_ids, appended_ids);
    // Each thread's own appends keep their order.
    for frames in &appended {
        for pair in frames.windows(2) {
            assert!(id(&pair[0]) < id(&pair[1]));
        }
    }
    // The live view equals the stored history.
    assert_eq!(server.frames("/?topic=conc.*"), received);

    // The follower that fell behind catches up without loss.
    assert_eq!(lazy.next_topic(Duration::from_secs(5)), "xs.threshold");
    let caught_up: Vec<Value> = (0..total)
        .map(|_| lazy.next_frame(Duration::from_secs(10)))
        .collect();
    assert_eq!(caught_up, received);
}

/// Acknowledged frames with their payloads.
type Acked = Vec<(Value, Vec<u8>)>;

/// Appends from several threads until the server goes away; returns the
/// acknowledged frames with their payloads.
fn load_until_killed(server: &mut Server, writers: usize, min_acked: usize) -> Acked {
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sock = server.sock();
    let round = now_ms();
    let handles: Vec<_> = (0..writers)
        .map(|t| {
            let (sock, acked, stop) = (sock.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let payload = format!("round {round} writer {t} frame {i}").into_bytes();
                    let topic = format!("dur.w{t}");
                    match try_request(
                        &sock,
                        "POST",
                        &format!("/append/{topic}"),
                        &[],
                        &payload,
                        Duration::from_secs(10),
                    ) {
                        Ok(r) if r.status == 200 => {
                            acked.lock().unwrap().push((r.json(), payload));
                        }
                        // The server died under us: stop.
                        _ => break,
                    }
                }
            })
        })
        .collect();
    let enough = wait_until(Duration::from_secs(30), || {
        acked.lock().unwrap().len() >= min_acked
    });
    assert!(enough, "appends are acknowledged under load");
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    acked
}

#[test]
fn sigkill_loses_nothing_acknowledged() {
    let mut server = Server::start(&[]);
    let mut all_acked = Vec::new();
    for _round in 0..2 {
        let acked = load_until_killed(&mut server, 4, 60);
        server.restart();
        all_acked.extend(acked);

        let history = server.frames("/");
        let stored: std::collections::HashMap<&str, &Value> =
            history.iter().map(|f| (id(f), f)).collect();
        for (frame, payload) in &all_acked {
            let got = stored
                .get(id(frame))
                .unwrap_or_else(|| panic!("acknowledged frame lost: {frame}"));
            assert_eq!(*got, frame);
            let hash = frame["hash"].as_str().unwrap();
            let r = server.get(&format!("/cas/{hash}"));
            assert_eq!(r.status, 200, "payload of {frame}");
            assert_eq!(&r.body, payload);
        }
        // Ids strictly increase and the new ones are above all old ones.
        for pair in history.windows(2) {
            assert!(id(&pair[0]) < id(&pair[1]));
        }
        assert_eq!(topic(history.last().unwrap()), "xs.start");
        let fresh = server.append("after.crash", b"");
        assert!(id(&fresh) > id(history.last().unwrap()));
    }
    assert!(all_acked.len() >= 120);
}
