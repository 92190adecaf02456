//! `POST /eval`: run a Nushell script; the response's shape follows the
//! result's: nothing → 204; a string, number or bool → `text/plain`, bare;
//! another value → JSON; a list stream → NDJSON, one line per item as it is
//! produced; a byte stream → raw bytes, streamed.

use std::io::Read;

use nu_protocol::{PipelineData, Value};
use tiny_http::Request;

use super::respond::{ChunkedStream, Reply};
use super::write::read_small_body;
use crate::nu::value::to_json;
use crate::nu::Engine;

/// The largest script accepted, in bytes.
const MAX_SCRIPT: u64 = 16 * 1024 * 1024;

pub fn eval(base: &Engine, store: &crate::store::Store, mut request: Request) {
    let body = match read_small_body(&mut request, MAX_SCRIPT) {
        Ok(body) => body,
        Err(e) => return Reply::error(e.status(), e).send(request),
    };
    let Ok(script) = String::from_utf8(body) else {
        return Reply::error(400, "the script is not valid UTF-8").send(request);
    };
    let mut engine = base.fork();
    // Every module registered so far.
    if let Some(head) = store.head().view().last_id {
        for (name, source) in crate::processor::script::modules_as_of(store, head) {
            if let Err(e) = engine.add_module(&name, &source) {
                return failed(request, &e.0);
            }
        }
    }
    let data = match engine.run("eval", &script) {
        Ok(data) => data,
        Err(e) => return failed(request, &e.0),
    };
    match data {
        PipelineData::Empty => Reply::status(204).send(request),
        PipelineData::Value(value, _) => single(&engine, request, value),
        PipelineData::ListStream(stream, _) => {
            let Ok(mut out) = ChunkedStream::start(request, "application/x-ndjson") else {
                return;
            };
            for value in stream.into_iter() {
                if let Value::Error { error, .. } = &value {
                    eprintln!(
                        "xs: eval stream ended by an error: {}",
                        engine.render_shell_error(error)
                    );
                    break;
                }
                let mut line = to_json(&value).to_string().into_bytes();
                line.push(b'\n');
                if out.chunk(&line).and_then(|_| out.flush()).is_err() {
                    engine.interrupt();
                    return;
                }
            }
            let _ = out.finish();
        }
        PipelineData::ByteStream(stream, _) => {
            let Some(mut reader) = stream.reader() else {
                return Reply::status(204).send(request);
            };
            let mut buf = vec![0u8; 64 * 1024];
            // The first read decides the status: a program that fails
            // before printing anything is a failed script.
            let first = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(e) => return failed(request, &io_error_text(&engine, e)),
            };
            let Ok(mut out) = ChunkedStream::start(request, "application/octet-stream") else {
                return;
            };
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
                        eprintln!("xs: eval byte stream failed: {e}");
                        break;
                    }
                }
            }
            let _ = out.finish();
        }
    }
}

fn single(engine: &Engine, request: Request, value: Value) {
    match value {
        Value::Nothing { .. } => Reply::status(204).send(request),
        Value::String { val, .. } => Reply::with_type(200, "text/plain", val).send(request),
        Value::Int { val, .. } => {
            Reply::with_type(200, "text/plain", val.to_string()).send(request)
        }
        Value::Float { val, .. } => {
            Reply::with_type(200, "text/plain", val.to_string()).send(request)
        }
        Value::Bool { val, .. } => {
            Reply::with_type(200, "text/plain", val.to_string()).send(request)
        }
        Value::Error { error, .. } => failed(request, &engine.render_shell_error(&error)),
        Value::Binary { val, .. } => {
            Reply::with_type(200, "application/octet-stream", val.to_vec()).send(request)
        }
        other => Reply::json(to_json(&other).to_string()).send(request),
    }
}

/// An error from a byte stream: a Nushell error when it carries one.
fn io_error_text(engine: &Engine, error: std::io::Error) -> String {
    match nu_protocol::shell_error::bridge::ShellErrorBridge::try_from(error) {
        Ok(bridge) => engine.render_shell_error(&bridge.0),
        Err(error) => error.to_string(),
    }
}

fn failed(request: Request, text: &str) {
    Reply::error(500, format!("Script evaluation failed:\n{text}")).send(request)
}
