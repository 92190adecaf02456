//! The Nushell processor dimensions: a store filled with `ev` frames, then
//! an actor or view created by appending its script; the clock runs from
//! that append until its result shows (polled every `POLL_EVERY`), and a
//! `fin.*`/`invalid` lifecycle frame fails the dimension.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::appends::*;
use crate::client::*;
use crate::report::*;
use crate::*;

/// What one processor run took.
pub(crate) struct ProcessorRun {
    /// From sending the create append until the result was seen.
    pub(crate) elapsed: Duration,
    /// The server's CPU time over `elapsed`.
    pub(crate) cpu: Duration,
    /// The create frame's JSON.
    pub(crate) create: Vec<u8>,
    /// The create frame's id time to the `active` frame's.
    pub(crate) load_ms: u64,
}

/// Appends `script` as `xs.<kind>.bench.create` and polls every
/// `POLL_EVERY` until `done` yields; a `fin.*` or `invalid` frame of the
/// processor, or `PROCESSOR_LIMIT`, is an error.
pub(crate) fn run_processor(
    server: &Server,
    kind: &str,
    script: &str,
    mut done: impl FnMut(&mut Conn) -> Res<bool>,
) -> Res<ProcessorRun> {
    let mut conn = server.connect_served(1)?.remove(0);
    let prefix = format!("xs.{kind}.bench");
    let failures = format!("/last/{prefix}.fin.*,{prefix}.invalid");
    let cpu_from = cpu_time(server.pid());
    let started = Instant::now();
    let create = append_to(&mut conn, &format!("{prefix}.create"), script.as_bytes())?;
    let seen = poll(PROCESSOR_LIMIT, POLL_EVERY, || {
        if done(&mut conn)? {
            return Ok(Some(Instant::now()));
        }
        match get_optional(&mut conn, &failures)? {
            Some(frame) => Err(format!(
                "the {kind} stopped: {}",
                String::from_utf8_lossy(&frame).trim()
            )),
            None => Ok(None),
        }
    })
    .map_err(|e| format!("waiting for the {kind}: {e}"))?;
    let elapsed = seen - started;
    let cpu = cpu_time(server.pid()).saturating_sub(cpu_from);
    let active = get_optional(&mut conn, &format!("/last/{prefix}.active"))?
        .ok_or_else(|| format!("no {prefix}.active frame"))?;
    let load_ms = id_ms(&active)?.saturating_sub(id_ms(&create)?);
    Ok(ProcessorRun {
        elapsed,
        cpu,
        create,
        load_ms,
    })
}

/// Fills `topic` with `frames` appends and waits for the server to go
/// idle; an error when the fill fell short.
pub(crate) fn fill_and_settle(
    server: &Server,
    topic: &str,
    frames: u64,
) -> Res<(Fill, Duration, bool)> {
    let fill = fill(server, topic, frames)?;
    if fill.filled < frames {
        return Err(format!(
            "the fill stored {} of {frames} frames within {FILL_LIMIT:?}",
            fill.filled
        ));
    }
    let (settle, settled) = wait_idle(server.pid(), SETTLE_LIMIT);
    Ok((fill, settle, settled))
}

/// An actor counting `ev` frames from the first; on the `frames`th it
/// appends `bench.done`, and with `emit` each count also goes to
/// `bench.out` as the payload.
pub(crate) fn actor_script(frames: u64, emit: bool) -> String {
    let emit = if emit {
        r#"$"($n)" | .append bench.out; "#
    } else {
        ""
    };
    format!(
        r#"{{initial: 0, start: "first", run: {{|frame, state| if $frame.topic == "ev" {{ let n = $state + 1; {emit}if $n == {frames} {{ .append bench.done }}; {{next: $n}} }} else {{ {{next: $state}} }} }}}}"#
    )
}

/// An actor folding `frames` pre-appended frames; see the header.
pub(crate) fn actor(
    bin: &Path,
    fsync: &str,
    frames: u64,
    emit: bool,
    target: f64,
    target_text: &'static str,
) -> Res<Outcome> {
    let server = Server::start(bin, fsync)?;
    let (fill, settle, settled) = fill_and_settle(&server, "ev", frames)?;
    let mut done_frame = Vec::new();
    let run =
        run_processor(
            &server,
            "actor",
            &actor_script(frames, emit),
            |conn| match get_optional(conn, "/last/bench.done")? {
                Some(frame) => {
                    done_frame = frame;
                    Ok(true)
                }
                None => Ok(false),
            },
        )?;
    let server_ms = id_ms(&done_frame)?.saturating_sub(id_ms(&run.create)?);
    let mut conn = server.connect()?;
    let outs = if emit {
        let outs = count_lines(&mut conn, "/?topic=bench.out")?;
        if outs != frames {
            return Err(format!("{outs} bench.out frames, expected {frames}"));
        }
        Some(outs)
    } else {
        None
    };
    drop(conn);
    drop(server);
    let rate = frames as f64 / run.elapsed.as_secs_f64();
    let mut keys = vec![
        ("frames_per_s", format!("{rate:.0}")),
        ("frames", frames.to_string()),
        ("fsync", fsync.to_string()),
        ("ms", ms(run.elapsed)),
        ("server_ms", server_ms.to_string()),
        ("load_ms", run.load_ms.to_string()),
        (
            "server_cpu_us_per_frame",
            format!("{:.1}", run.cpu.as_secs_f64() * 1e6 / frames as f64),
        ),
    ];
    if let Some(outs) = outs {
        keys.push(("out_frames", outs.to_string()));
    }
    keys.extend([
        ("fill_s", format!("{:.1}", fill.elapsed.as_secs_f64())),
        ("settle_s", format!("{:.1}", settle.as_secs_f64())),
        ("settled", settled.to_string()),
    ]);
    Ok(Outcome::Measured {
        keys,
        headline: format!("{rate:.0} frames/s"),
        met: rate >= target,
        target: target_text,
    })
}

/// A view counting `VIEW_FRAMES` pre-appended frames.
pub(crate) fn view_fold(bin: &Path) -> Res<Outcome> {
    let server = Server::start(bin, "never")?;
    let (fill, settle, settled) = fill_and_settle(&server, "ev", VIEW_FRAMES)?;
    let script = r#"{initial: 0, topics: ["ev"], run: {|frame, state| $state + 1}}"#;
    let mut saves_seen = 0u64;
    let run = run_processor(&server, "view", script, |conn| {
        let Some(body) = get_optional(conn, "/kv/view.bench")? else {
            return Ok(false);
        };
        saves_seen += 1;
        let state = json(&body)?;
        Ok(state.get("state").and_then(|s| s.as_u64()) == Some(VIEW_FRAMES))
    })?;
    drop(server);
    let rate = VIEW_FRAMES as f64 / run.elapsed.as_secs_f64();
    Ok(Outcome::Measured {
        keys: vec![
            ("frames_per_s", format!("{rate:.0}")),
            ("frames", VIEW_FRAMES.to_string()),
            ("ms", ms(run.elapsed)),
            ("load_ms", run.load_ms.to_string()),
            (
                "server_cpu_us_per_frame",
                format!("{:.1}", run.cpu.as_secs_f64() * 1e6 / VIEW_FRAMES as f64),
            ),
            ("saves_seen", saves_seen.to_string()),
            ("fill_s", format!("{:.1}", fill.elapsed.as_secs_f64())),
            ("settle_s", format!("{:.1}", settle.as_secs_f64())),
            ("settled", settled.to_string()),
        ],
        headline: format!("{rate:.0} frames/s"),
        met: rate >= 100_000.0,
        target: ">=100000/s",
    })
}
