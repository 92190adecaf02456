//! Store-level: live followers read recent frames from memory and fall
//! back to the store when they are further behind than that window.

use std::time::Duration;

use xs::store::{Draft, FsyncPolicy, Id, RawFrame, Store, StoreOptions, TopicFilter};
use xs::store::{Follow, ReadEvent, ReadOptions, Reader};

fn open(dir: &std::path::Path) -> Store {
    let options = StoreOptions {
        fsync: FsyncPolicy::Never,
        ..StoreOptions::default()
    };
    Store::open(dir, options).unwrap()
}

fn draft(n: usize) -> Draft {
    Draft::new(format!("t{}", n % 3)).meta(Some(serde_json::json!({ "n": n })))
}

/// Appends `n` frames, submitted together; their ids in order.
fn append_many(store: &Store, n: usize) -> Vec<Id> {
    let replies: Vec<_> = (0..n).map(|i| store.append_queued(draft(i))).collect();
    replies
        .into_iter()
        .map(|r| match r.recv().unwrap().unwrap() {
            xs::store::WriteOutcome::Frame(frame) => frame.id,
            other => panic!("not a frame: {other:?}"),
        })
        .collect()
}

fn live_reader(store: &Store, topic: &str) -> Reader {
    let options = ReadOptions {
        follow: Follow::On,
        new: true,
        topic: TopicFilter::parse(topic),
        ..ReadOptions::default()
    };
    let mut reader = Reader::new(store.clone(), options);
    // Past the (empty) history: live from here.
    assert!(matches!(
        reader.next_event(Duration::from_millis(20)).unwrap(),
        ReadEvent::Idle
    ));
    reader
}

fn drain(reader: &mut Reader, n: usize) -> Vec<RawFrame> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match reader.next_event(Duration::from_secs(5)).unwrap() {
            ReadEvent::Live(frame) => got.push(frame),
            ReadEvent::History(frames) => got.extend(frames),
            other => panic!("after {} frames: {other:?}", got.len()),
        }
    }
    got
}

#[test]
fn a_follower_far_behind_reads_the_store_then_memory_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store"));
    let close = live_reader(&store, "*");
    let mut behind = live_reader(&store, "*");
    let mut filtered = live_reader(&store, "t1");
    let mut close = close;

    // More than the head keeps in memory (4,096 frames), while `behind`
    // and `filtered` read nothing; `close` keeps up as it goes.
    let mut appended = Vec::new();
    let mut seen_close = Vec::new();
    for _ in 0..6 {
        let ids = append_many(&store, 1_000);
        seen_close.extend(drain(&mut close, ids.len()).iter().map(|f| f.id));
        appended.extend(ids);
    }
    assert_eq!(seen_close, appended);

    let got: Vec<Id> = drain(&mut behind, appended.len())
        .iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(
        got, appended,
        "the follower far behind lost or repeated frames"
    );

    let stored = store
        .scan(
            &TopicFilter::parse("t1"),
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            false,
        )
        .map(|f| f.unwrap())
        .filter(|f| appended.contains(&f.id))
        .collect::<Vec<_>>();
    assert_eq!(stored.len(), 6 * (0..1_000).filter(|n| n % 3 == 1).count());
    let got = drain(&mut filtered, stored.len());
    assert_eq!(
        got.iter().map(|f| &f.json).collect::<Vec<_>>(),
        stored.iter().map(|f| &f.json).collect::<Vec<_>>(),
        "the filtered follower differs from the stored frames"
    );

    // Nothing more, and a removed frame is not delivered later.
    let more = append_many(&store, 2);
    store.remove(more[0]).unwrap();
    let last = drain(&mut behind, 1);
    assert_eq!(last[0].id, more[1]);
    store.close();
}
