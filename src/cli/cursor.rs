//! `xs cat --cursor <name>`: a consumer that remembers where it was.
//!
//! The cursor is the k/v key `cursor.<name>` holding `{"id":"<id>"}`: the
//! last frame written to stdout. A run starts after it (unless an explicit
//! `--after/--from/--last/--new` says otherwise) and saves its progress at
//! least every second, at the end, and on SIGINT/SIGTERM. Progress only
//! counts frames whose whole line was written and flushed, so a run that is
//! killed and restarted redelivers at most what came after its last save,
//! and never skips a frame. Synthetic frames (`xs.threshold`, `xs.pulse`)
//! carry fresh ids that were never stored: they are printed but never saved.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::address::Address;
use super::args::{usage, Stop};
use super::cat::CatOptions;
use super::client::{call, send, Request, RequestBody};
use super::output::to_stderr;
use crate::store::id::{parse_id, Id};
use crate::store::topic::validate_topic;

/// How often progress is saved while frames flow.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// What has been written and what has been saved.
#[derive(Default)]
struct Progress {
    written: Option<Id>,
    saved: Option<Id>,
}

/// A cursor bound to one store.
struct Cursor {
    address: Address,
    key: String,
    progress: Mutex<Progress>,
    /// Held while lines are written and their position recorded, so a
    /// signal's final save never lands between the two.
    writing: Mutex<()>,
}

impl Cursor {
    /// Saves the written position if it moved; saves never overlap, so the
    /// stored id only moves forward.
    fn save(&self) -> Result<(), Stop> {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        let Some(id) = progress.written else {
            return Ok(());
        };
        if progress.saved == Some(id) {
            return Ok(());
        }
        let body = format!("{{\"id\":\"{id}\"}}").into_bytes();
        let mut request = Request::new("PUT", format!("/kv/{}", self.key));
        request.body = RequestBody::Stream {
            len: Some(body.len() as u64),
            reader: Box::new(io::Cursor::new(body)),
        };
        call(&self.address, request)?;
        progress.saved = Some(id);
        Ok(())
    }

    /// The saved id, if any.
    fn load(&self) -> Result<Option<Id>, Stop> {
        let response = send(&self.address, Request::get(format!("/kv/{}", self.key)))?;
        if response.status == 404 {
            return Ok(None);
        }
        let mut response = super::client::success(response)?;
        let text = response
            .body
            .text(64 * 1024)
            .map_err(|e| Stop::Failed(format!("reading cursor {}: {e}", self.key)))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Stop::Failed(format!("cursor {} is not JSON: {e}", self.key)))?;
        let id = value
            .get("id")
            .and_then(|id| id.as_str())
            .ok_or_else(|| Stop::Failed(format!("cursor {} has no \"id\"", self.key)))?;
        parse_id(id)
            .map(Some)
            .map_err(|e| Stop::Failed(format!("cursor {} holds a bad id: {e}", self.key)))
    }
}

/// Runs `xs cat` with a cursor.
pub fn cat(mut options: CatOptions, name: &str, address: Address) -> Result<(), Stop> {
    let key = format!("cursor.{name}");
    validate_topic(&key).map_err(|e| usage(format!("invalid cursor name '{name}': {e}")))?;
    if options.sse {
        return Err(usage("--cursor cannot be combined with --sse"));
    }
    let cursor = Arc::new(Cursor {
        address,
        key,
        progress: Mutex::new(Progress::default()),
        writing: Mutex::new(()),
    });
    let explicit_start =
        options.after.is_some() || options.from.is_some() || options.last.is_some() || options.new;
    if !explicit_start {
        options.after = cursor.load()?;
    }
    save_on_signal(cursor.clone());
    save_periodically(cursor.clone());
    let mut response = call(&cursor.address, Request::get(options.target()))?;
    let copied = copy_lines(&mut response.body, &cursor);
    let saved = cursor.save();
    copied.and(saved)
}

/// Copies whole lines to stdout, recording the last stored frame written.
fn copy_lines(body: &mut impl Read, cursor: &Cursor) -> Result<(), Stop> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut piece = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match body.read(&mut piece) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Stop::Failed(format!("reading response: {e}"))),
        };
        pending.extend_from_slice(&piece[..n]);
        let Some(end) = pending.iter().rposition(|b| *b == b'\n') else {
            continue;
        };
        let complete: Vec<u8> = pending.drain(..=end).collect();
        let mut last_stored = None;
        let mut lines = Vec::with_capacity(complete.len());
        for line in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            lines.extend_from_slice(line);
            lines.push(b'\n');
            if let Some(id) = stored_frame_id(line) {
                last_stored = Some(id);
            }
        }
        if lines.is_empty() {
            continue;
        }
        let _writing = cursor.writing.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = out.write_all(&lines).and_then(|()| out.flush()) {
            return if matches!(e.kind(), io::ErrorKind::BrokenPipe) {
                Err(Stop::OutputClosed)
            } else {
                Err(Stop::Failed(format!("writing output: {e}")))
            };
        }
        if let Some(id) = last_stored {
            cursor
                .progress
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .written = Some(id);
        }
    }
}

/// The id of a frame line, unless it is a synthetic frame.
fn stored_frame_id(line: &[u8]) -> Option<Id> {
    let frame: serde_json::Value = serde_json::from_slice(line).ok()?;
    let topic = frame.get("topic")?.as_str()?;
    if topic == "xs.threshold" || topic == "xs.pulse" {
        return None;
    }
    parse_id(frame.get("id")?.as_str()?).ok()
}

fn save_periodically(cursor: Arc<Cursor>) {
    let _ = std::thread::Builder::new()
        .name("cursor-save".into())
        .spawn(move || loop {
            std::thread::sleep(SAVE_EVERY);
            if let Err(Stop::Failed(e)) = cursor.save() {
                to_stderr(&format!("xs: saving cursor {}: {e}\n", cursor.key));
            }
        });
}

/// SIGINT and SIGTERM save the cursor before the process ends.
fn save_on_signal(cursor: Arc<Cursor>) {
    let signals = crate::sys::signals::ShutdownSignals::block();
    let _ = std::thread::Builder::new()
        .name("cursor-signal".into())
        .spawn(move || {
            let signal = signals.wait();
            // Wait out a write in progress, then keep the writer parked
            // until the process ends.
            let _writing = cursor.writing.lock().unwrap_or_else(|e| e.into_inner());
            let _ = cursor.save();
            std::process::exit(128 + signal);
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_frames_are_never_saved() {
        let threshold = br#"{"topic":"xs.threshold","id":"03hb7vs4b0t4huyeodndj62ne","hash":null,"meta":null,"ttl":"ephemeral"}"#;
        assert_eq!(stored_frame_id(threshold), None);
        let note = br#"{"topic":"note","id":"03hb7vs4b0t4huyeodndj62ne","hash":null,"meta":null,"ttl":"forever"}"#;
        assert!(stored_frame_id(note).is_some());
    }
}
