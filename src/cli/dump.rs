//! `xs export <addr> <folder>` and `xs import <addr> <folder>`: a whole
//! store to a folder and back, in the layout cross.stream's xs.nu
//! `.export`/`.import` use: `frames.jsonl` (what `xs cat` prints) and
//! `cas/<name>`, one file per payload, named by the base64 of its SRI
//! string. (An SRI is ASCII, and base64 of ASCII never produces the 62nd
//! or 63rd symbol, so the standard and URL-safe alphabets give the same
//! name, never holding a `/`.) Both stream: memory stays flat whatever the
//! store's size.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use base64::Engine as _;

use super::address::Address;
use super::args::{exactly, positionals, Stop};
use super::client::{call, Request, RequestBody};
use super::output::to_stdout;

/// Threads posting payloads during an import.
const UPLOADERS: usize = 4;

/// The file name of a payload: base64 (URL-safe) of its SRI string.
pub fn cas_file_name(sri: &str) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(sri)
}

/// The SRI a payload file is named after, from either alphabet.
pub fn sri_of_file_name(name: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(name)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(name))
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn failed(what: &str, path: &Path, e: io::Error) -> Stop {
    Stop::Failed(format!("{what} {}: {e}", path.display()))
}

/// A progress line on stderr, only when it is a terminal.
struct Progress {
    on: bool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            on: io::stderr().is_terminal(),
        }
    }

    fn show(&self, line: &str) {
        if self.on {
            eprint!("\r{line}");
        }
    }

    fn done(&self) {
        if self.on {
            eprintln!();
        }
    }
}

/// `xs export <addr> <folder>`
pub fn export(args: Vec<OsString>) -> Result<(), Stop> {
    let [addr, folder] = exactly(positionals(args)?, ["addr", "folder"])?;
    let folder = PathBuf::from(folder);
    if folder.exists() {
        return Err(Stop::Failed(format!(
            "{} already exists: export into a new folder",
            folder.display()
        )));
    }
    let cas = folder.join("cas");
    fs::create_dir_all(&cas).map_err(|e| failed("creating", &cas, e))?;
    let address = Address::parse(&addr)?;
    let frames_path = folder.join("frames.jsonl");
    let mut frames = BufWriter::new(
        File::create(&frames_path).map_err(|e| failed("creating", &frames_path, e))?,
    );
    let response = call(&address, Request::get("/".to_string()))?;
    let progress = Progress::new();
    let (mut frame_count, mut payload_count) = (0u64, 0u64);
    for line in BufReader::new(response.body).split(b'\n') {
        let line = line.map_err(|e| Stop::Failed(format!("reading the stream: {e}")))?;
        if line.is_empty() {
            continue;
        }
        frames
            .write_all(&line)
            .and_then(|()| frames.write_all(b"\n"))
            .map_err(|e| failed("writing", &frames_path, e))?;
        frame_count += 1;
        if let Some(hash) = frame_hash(&line) {
            if save_payload(&address, &cas, &hash)? {
                payload_count += 1;
            }
        }
        if frame_count.is_multiple_of(1000) {
            progress.show(&format!(
                "exported {frame_count} frames, {payload_count} payloads"
            ));
        }
    }
    frames
        .flush()
        .map_err(|e| failed("writing", &frames_path, e))?;
    progress.done();
    to_stdout(
        format!(
            "exported {} and {} to {}\n",
            counted(frame_count, "frame"),
            counted(payload_count, "payload"),
            folder.display()
        )
        .as_bytes(),
    )
}

fn frame_hash(line: &[u8]) -> Option<String> {
    let frame: serde_json::Value = serde_json::from_slice(line).ok()?;
    Some(frame.get("hash")?.as_str()?.to_string())
}

/// Fetches a payload into `cas/` unless it is there; true when fetched.
fn save_payload(address: &Address, cas: &Path, hash: &str) -> Result<bool, Stop> {
    let path = cas.join(cas_file_name(hash));
    if path.exists() {
        return Ok(false);
    }
    let mut response = match call(address, Request::get(format!("/cas/{hash}"))) {
        Ok(response) => response,
        // A frame whose payload is gone: the dump says so by its absence.
        Err(Stop::NotFound) => return Ok(false),
        Err(e) => return Err(e),
    };
    let partial = path.with_extension("partial");
    let mut file = File::create(&partial).map_err(|e| failed("creating", &partial, e))?;
    io::copy(&mut response.body, &mut file).map_err(|e| failed("writing", &partial, e))?;
    fs::rename(&partial, &path).map_err(|e| failed("renaming", &partial, e))?;
    Ok(true)
}

/// `xs import <addr> <folder>`: payloads first (checked against their
/// names), then every frame in one streamed request.
pub fn import_folder(addr: &str, folder: &Path) -> Result<(), Stop> {
    if addr.starts_with("redis://") || addr.starts_with("valkey://") {
        return import_into_namespace(addr, folder);
    }
    let address = Address::parse(addr)?;
    let cas = folder.join("cas");
    let mut files: Vec<PathBuf> = match fs::read_dir(&cas) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(failed("reading", &cas, e)),
    };
    files.sort();
    let progress = Progress::new();
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<Stop>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..UPLOADERS {
            scope.spawn(|| loop {
                let at = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(at) else { return };
                if let Err(e) = upload(&address, path) {
                    first_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(e);
                    return;
                }
                if at.is_multiple_of(100) {
                    progress.show(&format!("imported {at} of {} payloads", files.len()));
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let frames_path = folder.join("frames.jsonl");
    let file = File::open(&frames_path).map_err(|e| failed("opening", &frames_path, e))?;
    let len = file
        .metadata()
        .map_err(|e| failed("reading", &frames_path, e))?
        .len();
    progress.show("importing frames...");
    let mut request = Request::new("POST", "/import".to_string());
    request
        .headers
        .push(("Content-Type", "application/x-ndjson".to_string()));
    request.body = RequestBody::Stream {
        reader: Box::new(file),
        len: Some(len),
    };
    let mut response = call(&address, request)?;
    let answer = response
        .body
        .text(4096)
        .map_err(|e| Stop::Failed(format!("reading the answer: {e}")))?;
    progress.done();
    let frames = serde_json::from_str::<serde_json::Value>(&answer)
        .ok()
        .and_then(|v| v.get("imported").and_then(|n| n.as_u64()))
        .unwrap_or(0);
    to_stdout(
        format!(
            "imported {} and {} from {}\n",
            counted(frames, "frame"),
            counted(files.len() as u64, "payload"),
            folder.display()
        )
        .as_bytes(),
    )
}

/// `xs import redis://…?ns=<name> <folder>`: straight into a namespace of
/// a Redis, no server in between. On Redis an imported id must be above
/// the namespace's last one, and a server appends `xs.start` as it starts,
/// so a dump goes into a fresh namespace this way, before any node serves
/// it (`POST /import` would answer 409).
fn import_into_namespace(addr: &str, folder: &Path) -> Result<(), Stop> {
    use crate::store::RedisAddress;
    use crate::store::{Frame, Store, StoreOptions};
    let address = RedisAddress::parse(addr).map_err(Stop::Usage)?;
    // The store wants a folder (for its lock): a private one, removed after.
    let scratch = std::env::temp_dir().join(format!("xs-import-{}", std::process::id()));
    let options = StoreOptions {
        redis: Some(address),
        ..StoreOptions::default()
    };
    let store = Store::open(&scratch, options).map_err(|e| Stop::Failed(e.to_string()))?;
    let result = (|| {
        let cas = folder.join("cas");
        let mut payloads = 0;
        if let Ok(entries) = fs::read_dir(&cas) {
            for path in entries.flatten().map(|e| e.path()) {
                let expected = named_hash(&path)?;
                let mut file = File::open(&path).map_err(|e| failed("opening", &path, e))?;
                let hash = store
                    .put_payload(&mut file, None, u64::MAX, false)
                    .and_then(|stored| store.sync_payload(stored))
                    .map_err(|e| Stop::Failed(format!("{}: {e}", path.display())))?;
                if hash.to_string() != expected {
                    return Err(Stop::Failed(format!(
                        "{} holds content hashing to {hash}, not {expected}",
                        path.display(),
                    )));
                }
                payloads += 1;
            }
        }
        let frames_path = folder.join("frames.jsonl");
        // Every frame is read and its id checked before the first is
        // written, as `POST /import` does: a bad line imports nothing (a
        // conflict with a stored frame is still found only as it is
        // written). The file is read twice rather than held in memory.
        let read_frames = |check: &mut dyn FnMut(Frame) -> Result<(), Stop>| {
            let file = File::open(&frames_path).map_err(|e| failed("opening", &frames_path, e))?;
            for (number, line) in BufReader::new(file).split(b'\n').enumerate() {
                let line = line.map_err(|e| failed("reading", &frames_path, e))?;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let at = |e: &dyn std::fmt::Display| {
                    Stop::Failed(format!("{}:{}: {e}", frames_path.display(), number + 1))
                };
                let frame = Frame::from_json(&line).map_err(|e| at(&e))?;
                check(frame)?;
            }
            Ok::<(), Stop>(())
        };
        read_frames(&mut |frame| {
            crate::store::id::check_room_after(frame.id)
                .map_err(|e| Stop::Failed(format!("{}: {e}", frames_path.display())))
        })?;
        let mut import = store.bulk_import();
        let mut refused = None;
        let read = read_frames(&mut |frame| {
            import.push(frame).map_err(|e| {
                refused = Some(Stop::Failed(e.to_string()));
                Stop::Failed(String::new())
            })
        });
        // Every frame sent is answered either way. A refusal `push` saw
        // comes first; then one among the frames still in flight; then a
        // line that could not be read after them.
        let settled = import.finish().map_err(|e| Stop::Failed(e.to_string()));
        let frames = match (refused, settled, read) {
            (Some(e), _, _) | (None, Err(e), _) | (None, Ok(_), Err(e)) => return Err(e),
            (None, Ok(frames), Ok(())) => frames,
        };
        Ok((frames, payloads))
    })();
    store.close();
    let _ = fs::remove_dir_all(&scratch);
    let (frames, payloads) = result?;
    to_stdout(
        format!(
            "imported {} and {} from {} into {addr}\n",
            counted(frames, "frame"),
            counted(payloads as u64, "payload"),
            folder.display()
        )
        .as_bytes(),
    )
}

/// The hash a payload file of a dump is named after.
fn named_hash(path: &Path) -> Result<String, Stop> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    sri_of_file_name(name).ok_or_else(|| {
        Stop::Failed(format!(
            "{}: the name is not the base64 of a hash",
            path.display()
        ))
    })
}

/// Posts one payload file and checks the server computed its name's hash.
fn upload(address: &Address, path: &Path) -> Result<(), Stop> {
    let expected = named_hash(path)?;
    let file = File::open(path).map_err(|e| failed("opening", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| failed("reading", path, e))?
        .len();
    let mut request = Request::new("POST", "/cas".to_string());
    request.body = RequestBody::Stream {
        reader: Box::new(file),
        len: Some(len),
    };
    let mut response = call(address, request)?;
    let got = response
        .body
        .text(4096)
        .map_err(|e| Stop::Failed(format!("reading the answer: {e}")))?;
    if got.trim() != expected {
        return Err(Stop::Failed(format!(
            "{} holds content hashing to {}, not {expected}",
            path.display(),
            got.trim()
        )));
    }
    Ok(())
}

/// `1 frame`, `2 frames`.
fn counted(n: u64, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_names_round_trip_and_never_hold_a_slash() {
        let sri = "sha256-KSi9i4QGqQy/aUFzqVwPo7OTTN8FID7t80oXA6b5QxI=";
        let name = cas_file_name(sri);
        assert!(!name.contains('/'));
        assert_eq!(sri_of_file_name(&name).as_deref(), Some(sri));
        let standard = base64::engine::general_purpose::STANDARD.encode("sha256-abc+");
        assert_eq!(sri_of_file_name(&standard).as_deref(), Some("sha256-abc+"));
    }
}
