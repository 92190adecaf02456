//! Watching the stream from a test: poll the whole history until a frame
//! (or a count of them) shows up, with the stream in the failure message.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{id, topic, Server};

/// How long to wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long to watch for something that should not happen.
pub const QUIET: Duration = Duration::from_millis(300);

/// Every frame in the store.
pub fn all(server: &Server) -> Vec<Value> {
    server.frames("/")
}

/// Polls the whole stream until `find` answers, or fails after `WAIT`
/// showing the stream.
pub fn wait_for<T>(server: &Server, what: &str, mut find: impl FnMut(&[Value]) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let frames = all(server);
        if let Some(found) = find(&frames) {
            return found;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; stream:\n{}", dump(&frames));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The stream, one frame a line, for failure messages.
pub fn dump(frames: &[Value]) -> String {
    frames
        .iter()
        .map(|f| format!("  {} {} {}", id(f), topic(f), f["meta"]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Frames of `topic`.
pub fn of<'a>(frames: &'a [Value], t: &str) -> Vec<&'a Value> {
    frames.iter().filter(|f| topic(f) == t).collect()
}

/// Frames after the frame `since` (ids sort by time).
pub fn after<'a>(frames: &'a [Value], since: &Value) -> Vec<&'a Value> {
    let since = id(since);
    frames.iter().filter(|f| id(f) > since).collect()
}

/// The first frame of `topic`.
pub fn wait_topic(server: &Server, t: &str) -> Value {
    wait_for(server, t, |frames| {
        of(frames, t).first().map(|f| (*f).clone())
    })
}

/// The first frame of `topic` after the frame `since`.
pub fn wait_topic_after(server: &Server, t: &str, since: &Value) -> Value {
    wait_for(server, &format!("{t} after {}", id(since)), |frames| {
        after(frames, since)
            .into_iter()
            .find(|f| topic(f) == t)
            .cloned()
    })
}

/// At least `n` frames of `topic`; returns all of them.
pub fn wait_count(server: &Server, t: &str, n: usize) -> Vec<Value> {
    wait_for(server, &format!("{n} × {t}"), |frames| {
        let found = of(frames, t);
        (found.len() >= n).then(|| found.into_iter().cloned().collect())
    })
}

/// The frames of `topic` now.
pub fn now_of(server: &Server, t: &str) -> Vec<Value> {
    of(&all(server), t).into_iter().cloned().collect()
}
