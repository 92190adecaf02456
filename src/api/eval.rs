//! `POST /eval`: run a Nushell script; the response's shape follows the
//! result's: nothing → 204; a string, number or bool → `text/plain`, bare;
//! another value → JSON; a list stream → NDJSON, one line per item as it is
//! produced; a byte stream → raw bytes, streamed.
//!
//! The script is bounded (`nu::bounds`): its memory cap, `--eval-timeout`
//! until its answer starts, and its client — the request's socket is
//! polled while the script runs, and a client that hung up stops it. A
//! script stopped before its answer started gets a 500 with the one-line
//! reason; a streamed answer that is stopped is cut off (no last chunk,
//! the connection closed), so the client sees it did not end cleanly.

use std::io::Read;
use std::os::fd::AsFd;

use nu_protocol::{PipelineData, Value};
use tiny_http::Request;

use super::respond::{Answer, ChunkedStream, Handled, Reply};
use super::write::read_small_body;
use crate::nu::bounds::{Bounds, Timed};
use crate::nu::value::to_json;
use crate::nu::watch::Probe;
use crate::nu::Engine;
use crate::sys;

/// The largest script accepted, in bytes.
const MAX_SCRIPT: u64 = 16 * 1024 * 1024;

pub fn eval(base: &Engine, store: &crate::store::Store, request: &mut Request) -> Handled {
    let body = read_small_body(request, MAX_SCRIPT)?;
    let script =
        String::from_utf8(body).map_err(|_| Reply::error(400, "the script is not valid UTF-8"))?;
    let mut engine = base.fork();
    let connection = request.connection_fd();
    let probe = connection.and_then(hang_up_probe);
    let bounds = Bounds::start(&engine, Timed::Yes, probe);
    // Every module registered so far.
    if let Some(head) = store.head().view().last_id {
        for (name, source) in crate::processor::script::modules_as_of(store, head) {
            if let Err(e) = engine.add_module(&name, &source) {
                return Err(failed(&e.0));
            }
        }
    }
    let result = engine.run("eval", &script);
    // A bound that stopped the script outranks its result, which may be
    // a stream that was cut short.
    if let Some(verdict) = bounds.verdict() {
        return Err(stopped(&verdict));
    }
    match result.map_err(|e| failed(&e.0))? {
        PipelineData::Empty => Ok(Reply::status(204).into()),
        PipelineData::Value(value, _) => single(&engine, &bounds, value).map(Answer::from),
        PipelineData::ListStream(stream, _) => Ok(Answer::stream(move |request| {
            let Ok(mut out) = ChunkedStream::start(request, "application/x-ndjson") else {
                return;
            };
            bounds.answering();
            for value in stream.into_iter() {
                if let Some(verdict) = bounds.verdict() {
                    return cut_off(&verdict, connection);
                }
                if let Value::Error { error, .. } = &value {
                    eprintln!(
                        "xs: eval stream ended by an error: {}",
                        engine.render_shell_error(error)
                    );
                    break;
                }
                let mut line = to_json(&value).to_string().into_bytes();
                line.push(b'\n');
                if let Some(verdict) = bounds.verdict() {
                    return cut_off(&verdict, connection);
                }
                if out.chunk(&line).and_then(|_| out.flush()).is_err() {
                    engine.interrupt();
                    return;
                }
            }
            // An interrupted stream just ends: say why rather than finish.
            if let Some(verdict) = bounds.verdict() {
                return cut_off(&verdict, connection);
            }
            let _ = out.finish();
        })),
        PipelineData::ByteStream(stream, _) => {
            let Some(mut reader) = stream.reader() else {
                return Ok(Reply::status(204).into());
            };
            let mut buf = vec![0u8; 64 * 1024];
            // The first read decides the status: a program that fails
            // before printing anything is a failed script.
            let first = reader.read(&mut buf);
            if let Some(verdict) = bounds.verdict() {
                return Err(stopped(&verdict));
            }
            let first = first.map_err(|e| failed(&io_error_text(&engine, e)))?;
            Ok(Answer::stream(move |request| {
                let Ok(mut out) = ChunkedStream::start(request, "application/octet-stream") else {
                    return;
                };
                bounds.answering();
                if out.chunk(&buf[..first]).and_then(|_| out.flush()).is_err() {
                    engine.interrupt();
                    return;
                }
                if first == 0 {
                    let _ = out.finish();
                    return;
                }
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if out.chunk(&buf[..n]).and_then(|_| out.flush()).is_err() {
                                engine.interrupt();
                                return;
                            }
                        }
                        Err(e) => {
                            if let Some(verdict) = bounds.verdict() {
                                return cut_off(&verdict, connection);
                            }
                            eprintln!("xs: eval byte stream failed: {e}");
                            break;
                        }
                    }
                }
                if let Some(verdict) = bounds.verdict() {
                    return cut_off(&verdict, connection);
                }
                let _ = out.finish();
            }))
        }
    }
}

fn single(engine: &Engine, bounds: &Bounds, value: Value) -> Handled<Reply> {
    let text = |text: String| Ok(Reply::with_type(200, "text/plain", text));
    match value {
        Value::Nothing { .. } => Ok(Reply::status(204)),
        Value::String { val, .. } => text(val),
        Value::Int { val, .. } => text(val.to_string()),
        Value::Float { val, .. } => text(val.to_string()),
        Value::Bool { val, .. } => text(val.to_string()),
        Value::Error { error, .. } => Err(failed(&engine.render_shell_error(&error))),
        Value::Binary { val, .. } => Ok(Reply::with_type(
            200,
            "application/octet-stream",
            val.to_vec(),
        )),
        other => {
            let json = to_json(&other).to_string();
            match bounds.verdict() {
                Some(verdict) => Err(stopped(&verdict)),
                None => Ok(Reply::json(json)),
            }
        }
    }
}

/// An error from a byte stream: a Nushell error when it carries one.
fn io_error_text(engine: &Engine, error: std::io::Error) -> String {
    match nu_protocol::shell_error::bridge::ShellErrorBridge::try_from(error) {
        Ok(bridge) => engine.render_shell_error(&bridge.0),
        Err(error) => error.to_string(),
    }
}

fn failed(text: &str) -> Reply {
    Reply::error(500, format!("Script evaluation failed:\n{text}"))
}

/// A script a bound stopped before its answer started.
fn stopped(verdict: &str) -> Reply {
    Reply::error(500, format!("Script evaluation failed: {verdict}"))
}

/// A streamed answer a bound stopped: it ends without its last chunk,
/// and the connection is shut down so the client sees the cut at once
/// rather than wait for a chunk that never comes. Called while the answer's
/// writer (and so the socket `connection` names) is still open.
fn cut_off(verdict: &str, connection: Option<i32>) {
    eprintln!("xs: eval stream cut off: {verdict}");
    if let Some(fd) = connection {
        // The request's own socket, still open (see above).
        let _ = sys::fd::shutdown(fd);
    }
}

/// Whether the client on socket `fd` has hung up (closed or shut down its
/// side, or reset): asked without blocking. The probe holds its own copy
/// of the descriptor, so the number cannot be reused under it.
fn hang_up_probe(fd: i32) -> Option<Probe> {
    // `fd` is the request's socket, open while the request lives (it
    // does here); the copy is ours and closed when the probe drops.
    let socket = sys::fd::duplicate(fd).ok()?;
    Some(Box::new(move || {
        sys::fd::peer_hung_up(socket.as_fd()).unwrap_or(false)
    }))
}
