//! The frame logger: one stderr line per new frame (time, the id's last
//! 5 characters, topic), written in bursts.

use std::fmt::Write as _;
use std::time::Duration;

use crate::api::server::time_of_day;
use crate::store::{Follow, RawFrame, ReadEvent, ReadOptions, Reader, Store};

/// How often at most the frame logger writes.
const LOG_EVERY: Duration = Duration::from_millis(10);

/// One stderr line per new frame: time, the id's last 5 characters, topic.
pub fn start(store: Store) {
    let options = ReadOptions {
        follow: Follow::On,
        new: true,
        ..ReadOptions::default()
    };
    let spawned = std::thread::Builder::new()
        .name("logger".into())
        .spawn(move || {
            let mut reader = Reader::new(store, options);
            let mut lines = String::new();
            while let Ok(event) = reader.next_event(Duration::from_secs(3600)) {
                match event {
                    ReadEvent::Live(frame) => log_line(&mut lines, &frame),
                    ReadEvent::End => break,
                    _ => {}
                }
                // One write for all the frames read together (stderr is
                // unbuffered; a line per write cost a syscall per frame).
                if reader.queued() == 0 && !lines.is_empty() {
                    let _ = std::io::Write::write_all(&mut std::io::stderr(), lines.as_bytes());
                    lines.clear();
                    // A log for people: a line may wait a few milliseconds,
                    // and the logger wakes at most LOG_EVERY instead of once
                    // per batch (a wake-up per append was 10% of the CPU).
                    std::thread::sleep(LOG_EVERY);
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("xs: cannot start the frame logger: {e}");
    }
}

/// Appends the logger's line for `frame` to `lines`.
fn log_line(lines: &mut String, frame: &RawFrame) {
    let id = frame.id.to_string();
    let parsed;
    let topic = match frame.quick_topic() {
        Some(topic) => topic,
        None => {
            parsed = frame.parse().map(|f| f.topic).unwrap_or_default();
            &parsed
        }
    };
    let _ = writeln!(
        lines,
        "{} {:>5} {topic}",
        time_of_day(frame.id.timestamp()),
        &id[id.len() - 5..],
    );
}
