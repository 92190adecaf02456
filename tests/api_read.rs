//! Reading: `GET /` (history, follow, threshold, limits, topic filters,
//! SSE, pulses, reverse), `/first`, `/<id>/next|prev` and `/last`.

mod common;

use common::*;
use serde_json::Value;

const T: std::time::Duration = std::time::Duration::from_secs(5);

fn ids(frames: &[Value]) -> Vec<String> {
    frames.iter().map(|f| id(f).to_string()).collect()
}

#[test]
fn fresh_store_has_exactly_one_start_frame() {
    let server = Server::start(&[]);
    let r = server.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), Some("application/x-ndjson"));
    assert!(r.text().ends_with('\n'), "NDJSON lines end in \\n");
    let frames = r.frames();
    assert_eq!(frames.len(), 1, "{frames:?}");
    let start = &frames[0];
    assert_eq!(keys(start), ["topic", "id", "hash", "meta", "ttl"]);
    assert_eq!(topic(start), "xs.start");
    assert_eq!(id(start).len(), 25);
    assert_eq!(start["hash"], Value::Null);
    assert_eq!(start["meta"], Value::Null);
    assert_eq!(start["ttl"], Value::Null);
}

#[test]
fn follow_gives_history_threshold_then_live() {
    let server = Server::start(&[]);
    let mut follow = server.follow("/?follow");
    assert_eq!(follow.status, 200);
    assert_eq!(follow.header("content-type"), Some("application/x-ndjson"));
    let start = follow.next_frame(T);
    assert_eq!(topic(&start), "xs.start");
    let threshold = follow.next_frame(T);
    assert_eq!(topic(&threshold), "xs.threshold");
    assert_eq!(keys(&threshold), ["topic", "id", "hash", "meta", "ttl"]);
    assert_eq!(threshold["hash"], Value::Null);
    assert_eq!(threshold["meta"], Value::Null);
    assert_eq!(threshold["ttl"], "ephemeral");
    assert!(id(&threshold) > id(&start), "threshold has a fresh id");
    follow.expect_silence(ms(150));

    let note = server.append("note", b"hello");
    let live = follow.next_frame(T);
    assert_eq!(live, note, "the live frame is the appended frame");

    // The threshold is never stored.
    assert_eq!(server.get(&format!("/{}", id(&threshold))).status, 404);
    assert_eq!(topics(&server.frames("/")), ["xs.start", "note"]);
}

#[test]
fn follow_new_skips_history_and_threshold() {
    let server = Server::start(&[]);
    server.append("old", b"");
    let mut follow = server.follow("/?follow&new");
    follow.expect_silence(ms(100));
    let fresh = server.append("fresh", b"");
    assert_eq!(follow.next_frame(T), fresh);
    // `new` without follow yields nothing.
    let r = server.get("/?new");
    assert_eq!(r.status, 200);
    assert!(r.frames().is_empty(), "{:?}", r.text());
}

#[test]
fn after_from_and_limit() {
    let server = Server::start(&[]);
    let a = server.append("t", b"a");
    let b = server.append("t", b"b");
    let c = server.append("t", b"c");
    let d = server.append("t", b"d");
    let all = server.frames("/");
    assert_eq!(topics(&all), ["xs.start", "t", "t", "t", "t"]);

    // `after` is exclusive, `from` inclusive, `from` wins over `after`.
    assert_eq!(
        server.frames(&format!("/?after={}", id(&b))),
        [c.clone(), d.clone()]
    );
    assert_eq!(
        server.frames(&format!("/?from={}", id(&b))),
        [b.clone(), c.clone(), d.clone()]
    );
    assert_eq!(
        server.frames(&format!("/?from={}&after={}", id(&c), id(&a))),
        [c.clone(), d.clone()]
    );
    assert_eq!(
        server.frames(&format!("/?after={}&from={}", id(&a), id(&c))),
        [c.clone(), d.clone()]
    );
    // `limit` counts from the start of the range.
    assert_eq!(ids(&server.frames("/?limit=2")), ids(&all[..2]));
    assert_eq!(
        server.frames(&format!("/?after={}&limit=2", id(&a))),
        [b.clone(), c.clone()]
    );
    assert_eq!(
        server.frames(&format!("/?after={}", id(&d))),
        Vec::<Value>::new()
    );

    // Invalid values are 400 with a plain-text reason.
    for bad in [
        "/?after=123",
        "/?from=nope",
        "/?limit=-1",
        "/?limit=x",
        "/?last=x",
        "/?follow=maybe",
    ] {
        let r = server.get(bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(!r.text().is_empty(), "{bad}: a reason is given");
        assert!(!r.text().contains('\n'), "{bad}: one line: {:?}", r.text());
    }
    // Unknown keys are ignored.
    assert_eq!(server.frames("/?bogus=1").len(), 5);
}

#[test]
fn follow_limit_counts_across_history_and_live() {
    let server = Server::start(&[]);
    let first = server.append("lim", b"1");
    let mut follow = server.follow("/?follow&limit=2&topic=lim");
    assert_eq!(follow.next_frame(T), first);
    assert_eq!(follow.next_topic(T), "xs.threshold");
    follow.expect_silence(ms(150));
    server.append("other", b"not counted");
    let live = server.append("lim", b"2");
    assert_eq!(follow.next_frame(T), live);
    follow.expect_closed(T);
}

#[test]
fn follow_limit_cut_in_history_closes_without_threshold() {
    let server = Server::start(&[]);
    let frames: Vec<Value> = (0..5)
        .map(|i| server.append("five", format!("{i}").as_bytes()))
        .collect();
    let mut follow = server.follow("/?follow&limit=3&topic=five");
    for expected in &frames[..3] {
        assert_eq!(&follow.next_frame(T), expected);
    }
    follow.expect_closed(T);
}

#[test]
fn last_is_newest_n_in_chronological_order() {
    let server = Server::start(&[]);
    let frames: Vec<Value> = (0..5)
        .map(|i| server.append(if i % 2 == 0 { "even" } else { "odd" }, b"x"))
        .collect();
    assert_eq!(server.frames("/?last=3"), frames[2..].to_vec());
    assert_eq!(
        server.frames("/?last=2&topic=even"),
        [frames[2].clone(), frames[4].clone()]
    );
    assert_eq!(
        server.frames("/?last=100").len(),
        6,
        "all of them, start included"
    );
    // `last` ignores after/limit.
    assert_eq!(
        server.frames(&format!("/?last=2&after={}&limit=1", id(&frames[4]))),
        frames[3..].to_vec()
    );
    // With follow: the last n, the threshold, then live frames.
    let mut follow = server.follow("/?follow&last=2&topic=odd");
    assert_eq!(follow.next_frame(T), frames[1]);
    assert_eq!(follow.next_frame(T), frames[3]);
    assert_eq!(follow.next_topic(T), "xs.threshold");
    let live = server.append("odd", b"live");
    assert_eq!(follow.next_frame(T), live);
}

/// The store used by the topic filter tests.
fn filter_fixture(server: &Server) -> Vec<Value> {
    [
        "user",
        "user.a",
        "user.a.msg",
        "user.b",
        "other",
        "user2",
        "user.b.c.d",
    ]
    .iter()
    .map(|t| server.append(t, b""))
    .collect()
}

fn filtered(server: &Server, spec: &str) -> Vec<String> {
    topics(&server.frames(&format!("/?topic={spec}")))
}

#[test]
fn topic_filters_exact_wildcard_lists_and_all() {
    let server = Server::start(&[]);
    filter_fixture(&server);
    assert_eq!(filtered(&server, "user"), ["user"]);
    assert_eq!(filtered(&server, "user.a"), ["user.a"]);
    assert_eq!(
        filtered(&server, "user.*"),
        ["user.a", "user.a.msg", "user.b", "user.b.c.d"],
        "user.* spans depths, excludes user and user2"
    );
    assert_eq!(filtered(&server, "user.a.*"), ["user.a.msg"]);
    assert_eq!(filtered(&server, "user.b.*"), ["user.b.c.d"]);
    assert_eq!(filtered(&server, "user,other"), ["user", "other"]);
    assert_eq!(
        filtered(&server, "other,user"),
        ["user", "other"],
        "id order"
    );
    assert_eq!(filtered(&server, ",user,,other,"), ["user", "other"]);
    assert_eq!(filtered(&server, "user%2Cother"), ["user", "other"]);
    let everything = [
        "xs.start",
        "user",
        "user.a",
        "user.a.msg",
        "user.b",
        "other",
        "user2",
        "user.b.c.d",
    ];
    assert_eq!(filtered(&server, "*"), everything);
    assert_eq!(filtered(&server, "user,*"), everything);
    assert_eq!(filtered(&server, ""), everything);
    assert_eq!(filtered(&server, "nothing"), Vec::<String>::new());
    // Bad patterns simply match nothing.
    assert_eq!(filtered(&server, "1bad"), Vec::<String>::new());
    // With last and limit.
    assert_eq!(
        topics(&server.frames("/?topic=user.*&last=2")),
        ["user.b", "user.b.c.d"]
    );
    assert_eq!(
        topics(&server.frames("/?topic=user.*,other&limit=3")),
        ["user.a", "user.a.msg", "user.b"]
    );
}

#[test]
fn overlapping_patterns_are_deduplicated() {
    let server = Server::start(&[]);
    let frames = filter_fixture(&server);
    let expected = ["user.a", "user.a.msg", "user.b", "user.b.c.d"];
    for spec in [
        "user.*,user.a.msg",
        "user.a.*,user.*",
        "user.*,user.*",
        "user.a,user.*,user.a.msg",
    ] {
        assert_eq!(filtered(&server, spec), expected, "{spec}");
    }
    assert_eq!(
        topics(&server.frames("/?topic=user.*,user.a.msg&last=3")),
        ["user.a.msg", "user.b", "user.b.c.d"]
    );
    assert_eq!(
        topics(&server.frames(&format!(
            "/?topic=user.a.*,user.*&after={}&limit=2",
            id(&frames[1])
        ))),
        ["user.a.msg", "user.b"]
    );
}

#[test]
fn filters_apply_to_live_frames() {
    let server = Server::start(&[]);
    server.append("user", b"");
    let hist = server.append("user.a", b"");
    let mut follow = server.follow("/?follow&topic=user.*,solo");
    assert_eq!(follow.next_frame(T), hist);
    assert_eq!(
        follow.next_topic(T),
        "xs.threshold",
        "threshold bypasses the filter"
    );
    server.append("other", b"");
    let x = server.append("user.x", b"");
    server.append("user", b"");
    server.append("solo.not", b"");
    let deep = server.append("user.y.z", b"");
    let solo = server.append("solo", b"");
    assert_eq!(follow.next_frame(T), x);
    assert_eq!(follow.next_frame(T), deep);
    assert_eq!(follow.next_frame(T), solo);
    follow.expect_silence(ms(100));
}

#[test]
fn with_timestamp_adds_timestamp_last() {
    let server = Server::start(&[]);
    let note = server.append("note", b"x");
    let frames = server.frames("/?with-timestamp");
    assert_eq!(frames.len(), 2);
    for frame in &frames {
        assert_eq!(
            keys(frame),
            ["topic", "id", "hash", "meta", "ttl", "timestamp"]
        );
        let expected = rfc3339(id_ms(id(frame)));
        assert_eq!(frame["timestamp"], expected.as_str());
    }
    let got = server.get(&format!("/{}?with-timestamp", id(&note))).json();
    assert_eq!(
        keys(&got),
        ["topic", "id", "hash", "meta", "ttl", "timestamp"]
    );
    let last = server.get("/last?with-timestamp").json();
    assert_eq!(last["timestamp"], rfc3339(id_ms(id(&note))).as_str());
    let appended = server.append_q("note", "with-timestamp", b"y");
    assert_eq!(
        keys(&appended).last().map(String::as_str),
        Some("timestamp")
    );
    // Without the flag there is no timestamp.
    assert_eq!(keys(&server.get("/last").json()).len(), 5);
}

#[test]
fn timestamp_format_helper() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00+00:00");
    assert_eq!(rfc3339(1_740_830_400_123), "2025-03-01T12:00:00.123+00:00");
}

#[test]
fn sse_when_accept_is_event_stream() {
    let server = Server::start(&[]);
    let note = server.append("note", b"x");
    let sock = server.sock();
    let r = request(&sock, "GET", "/", &[("Accept", "text/event-stream")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), Some("text/event-stream"));
    let text = r.text();
    assert!(!text.starts_with('{'), "{text}");
    assert!(text.contains("id: ") && text.contains("data: "), "{text}");
    let expected = format!(
        "id: {}\ndata: {}\n\n",
        id(&note),
        serde_json::to_string(&note).unwrap()
    );
    assert!(text.ends_with(&expected), "{text:?}");
    assert_eq!(text.matches("id: ").count(), 2);

    // SSE while following: the threshold and live frames are events too.
    let mut follow = Stream::open(&sock, "/?follow&new", &[("Accept", "text/event-stream")]);
    assert_eq!(follow.header("content-type"), Some("text/event-stream"));
    let live = server.append("live", b"");
    assert_eq!(
        follow.next_line(T),
        Next::Line(format!("id: {}", id(&live)))
    );
    let data = match follow.next_line(T) {
        Next::Line(line) => line,
        other => panic!("{other:?}"),
    };
    let json = data.strip_prefix("data: ").expect("data line");
    assert_eq!(serde_json::from_str::<Value>(json).unwrap(), live);

    // Only the exact Accept value selects SSE.
    let r = request(&sock, "GET", "/", &[("Accept", "*/*")], b"");
    assert_eq!(r.content_type(), Some("application/x-ndjson"));
}

#[test]
fn follow_with_interval_gives_pulses() {
    let server = Server::start(&[]);
    let mut follow = server.follow("/?follow=1");
    let mut pulses = 0;
    let mut saw_threshold = false;
    let mut last_id = String::new();
    while pulses < 5 {
        let frame = follow.next_frame(T);
        match topic(&frame) {
            "xs.pulse" => {
                assert_eq!(frame["ttl"], "ephemeral");
                assert_eq!(frame["hash"], Value::Null);
                assert!(id(&frame) > last_id.as_str(), "pulses get fresh ids");
                last_id = id(&frame).to_string();
                pulses += 1;
            }
            "xs.threshold" => saw_threshold = true,
            "xs.start" => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(saw_threshold, "follow=<ms> is still a follow");
    // Pulses are not stored.
    assert_eq!(topics(&server.frames("/")), ["xs.start"]);
}

#[test]
fn reverse_reads() {
    let server = Server::start(&[]);
    let a = server.append("a", b"");
    let b = server.append("b", b"");
    let c = server.append("a", b"");
    let all = server.frames("/?rev");
    assert_eq!(topics(&all), ["a", "b", "a", "xs.start"]);
    assert_eq!(all[0], c);
    assert_eq!(
        server.frames(&format!("/?rev&before={}", id(&c))),
        [b.clone(), a.clone(), all[3].clone()]
    );
    assert_eq!(server.frames("/?rev&limit=2"), [c.clone(), b.clone()]);
    assert_eq!(
        server.frames(&format!("/?rev&before={}&limit=1", id(&b))),
        std::slice::from_ref(&a)
    );
    assert_eq!(server.frames("/?rev&topic=a"), [c.clone(), a.clone()]);
    let r = server.get("/?rev&follow");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(server.get("/?rev&before=bad").status, 400);
}

#[test]
fn first_next_and_prev() {
    let server = Server::start(&[]);
    let start = server.frames("/").remove(0);
    let a = server.append("a", b"");
    let b = server.append("b", b"");
    let c = server.append("a", b"");

    let r = server.get("/first");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), Some("application/json"));
    assert_eq!(r.json(), start);
    assert_eq!(server.get("/first/a").json(), a);
    assert_eq!(server.get("/first/b,a").json(), a);
    let two = server.get("/first/a?first=2");
    assert_eq!(two.content_type(), Some("application/x-ndjson"));
    assert_eq!(two.frames(), [a.clone(), c.clone()]);
    assert_eq!(server.get("/first/none").status, 404);

    let next = |f: &Value, q: &str| server.get(&format!("/{}/next{q}", id(f)));
    let prev = |f: &Value, q: &str| server.get(&format!("/{}/prev{q}", id(f)));
    assert_eq!(next(&start, "").json(), a);
    assert_eq!(next(&a, "").json(), b);
    assert_eq!(next(&a, "?topic=a").json(), c);
    assert_eq!(next(&c, "").status, 404);
    assert_eq!(next(&b, "?topic=b").status, 404);
    assert_eq!(prev(&c, "").json(), b);
    assert_eq!(prev(&c, "?topic=a").json(), a);
    assert_eq!(prev(&a, "").json(), start);
    assert_eq!(prev(&start, "").status, 404);
    assert_eq!(prev(&a, "?topic=a").status, 404);
    assert_eq!(next(&a, "").content_type(), Some("application/json"));
    assert_eq!(server.get("/nonsense/next").status, 400);
}

#[test]
fn last_route_shapes() {
    let server = Server::start(&[]);
    // Nothing on the topic: 404 with an empty body.
    let r = server.get("/last/nothing");
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());

    let one = server.append("single", b"1");
    let r = server.get("/last/single");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), Some("application/json"));
    assert!(!r.text().ends_with('\n'), "one frame, no newline");
    assert_eq!(r.json(), one);

    // The requested count picks NDJSON, even with one frame.
    let r = server.get("/last/single?last=3");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), Some("application/x-ndjson"));
    assert!(r.text().ends_with('\n'));
    assert_eq!(r.frames(), std::slice::from_ref(&one));

    // Newest overall; `topic` in the query is ignored by /last.
    let newest = server.append("other", b"");
    assert_eq!(server.get("/last").json(), newest);
    assert_eq!(server.get("/last?topic=single").json(), newest);
    assert_eq!(server.get("/last/*").json(), newest);
    // An unparsable count falls back to 1.
    assert_eq!(server.get("/last?last=abc").json(), newest);
    assert_eq!(
        server.get("/last?last=2").frames(),
        [one.clone(), newest.clone()]
    );

    // Wildcards and lists in the path.
    let foo = server.append("W.foo", b"");
    let bar = server.append("W.bar", b"");
    assert_eq!(server.get("/last/W.*").json(), bar);
    assert_eq!(
        server.get("/last/W.*?last=2").frames(),
        [foo.clone(), bar.clone()]
    );
    assert_eq!(server.get("/last/W.foo,single").json(), foo);
    assert_eq!(server.get("/last/W").status, 404);
}

#[test]
fn last_follow_streams_last_threshold_live() {
    let server = Server::start(&[]);
    server.append("lf", b"1");
    let second = server.append("lf", b"2");
    let mut follow = server.follow("/last/lf?follow");
    assert_eq!(follow.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(follow.next_frame(T), second);
    assert_eq!(follow.next_topic(T), "xs.threshold");
    server.append("elsewhere", b"");
    let live = server.append("lf", b"3");
    assert_eq!(follow.next_frame(T), live);

    let mut follow2 = server.follow("/last/lf?last=2&follow=true");
    assert_eq!(follow2.next_frame(T), second);
    assert_eq!(follow2.next_frame(T), live);
    assert_eq!(follow2.next_topic(T), "xs.threshold");

    // Following an empty topic: no 404, just the threshold.
    let mut empty = server.follow("/last/empty?follow");
    assert_eq!(empty.status, 200);
    assert_eq!(empty.next_topic(T), "xs.threshold");
    let e = server.append("empty", b"");
    assert_eq!(empty.next_frame(T), e);
}

#[test]
fn last_follow_false_is_off() {
    let server = Server::start(&[]);
    let frame = server.append("lf", b"");
    for query in ["follow=false", "follow=no"] {
        let r = server.get(&format!("/last/lf?{query}"));
        assert_eq!(r.status, 200, "{query}");
        assert_eq!(r.content_type(), Some("application/json"), "{query}");
        assert_eq!(r.json(), frame, "{query}");
        assert_eq!(server.get(&format!("/last/none?{query}")).status, 404);
    }
}
