//! Big stores made quickly through `POST /import` (frames with SCRU128 ids
//! made here, sharing payloads posted to `/cas` first), and what uses them:
//! `seek-cost` (the same queries against 10k and 1M frames, interleaved)
//! and `export-import-100k` (the `xs export` / `xs import` CLI round trip).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::client::*;
use crate::report::*;
use crate::startup::{cli_failure, run_cli};
use crate::*;

/// Posts `count` distinct small payloads to `/cas`; their SRIs.
pub(crate) fn post_payloads(conn: &mut Conn, count: u64) -> Res<Vec<String>> {
    (0..count)
        .map(|seq| {
            let sri = expect_200(conn, "POST", "/cas", &payload(9999, seq))?;
            Ok(String::from_utf8_lossy(&sri).trim().to_string())
        })
        .collect()
}

/// What a bulk import did.
pub(crate) struct Imported {
    pub(crate) elapsed: Duration,
    /// The id of frame `frames / 2`.
    pub(crate) mid: String,
}

/// Imports `frames` frames with increasing fresh ids by NDJSON
/// `POST /import` in batches of `IMPORT_BATCH`; frame `i` gets
/// `topic(i)` and `hashes[i % hashes.len()]`.
pub(crate) fn import_frames(
    conn: &mut Conn,
    frames: u64,
    topic: impl Fn(u64) -> &'static str,
    hashes: &[String],
) -> Res<Imported> {
    let started = Instant::now();
    let mut mid = String::new();
    let mut at = 0;
    while at < frames {
        let end = (at + IMPORT_BATCH).min(frames);
        let mut body = Vec::with_capacity(((end - at) * 160) as usize);
        for i in at..end {
            let id = scru128::new().to_string();
            if i == frames / 2 {
                mid = id.clone();
            }
            let hash = &hashes[(i % hashes.len() as u64) as usize];
            writeln!(
                body,
                r#"{{"topic":"{}","id":"{id}","hash":"{hash}","meta":null,"ttl":"forever"}}"#,
                topic(i)
            )
            .map_err(|e| e.to_string())?;
        }
        conn.send_typed("POST", "/import", "application/x-ndjson", &body)
            .map_err(|e| format!("POST /import: {e}"))?;
        let head = conn.read_head().map_err(|e| format!("POST /import: {e}"))?;
        let mut answer = Vec::new();
        conn.read_body(head.content_length.unwrap_or(0), &mut answer)
            .map_err(|e| format!("POST /import: {e}"))?;
        let expected = format!("{{\"imported\":{}}}", end - at);
        if head.status != 200 || String::from_utf8_lossy(&answer).trim() != expected {
            return Err(format!(
                "POST /import answered {}: {}",
                head.status,
                String::from_utf8_lossy(&answer).trim()
            ));
        }
        at = end;
    }
    Ok(Imported {
        elapsed: started.elapsed(),
        mid,
    })
}

/// One store of `seek-cost`.
pub(crate) struct SeekStore {
    pub(crate) server: Server,
    pub(crate) conn: Conn,
    pub(crate) frames: u64,
    pub(crate) imported: Imported,
    pub(crate) settle: Duration,
    pub(crate) settled: bool,
}

/// The topic of frame `i` of `frames`: `rare` for 10 evenly spread ones,
/// else `ev`.
pub(crate) fn rare_topic(frames: u64) -> impl Fn(u64) -> &'static str {
    let every = frames / 10;
    move |i| if i % every == every / 2 { "rare" } else { "ev" }
}

pub(crate) fn seek_store(bin: &Path, frames: u64) -> Res<SeekStore> {
    let server = Server::start(bin, "never")?;
    let mut conn = server.connect_served(1)?.remove(0);
    let hashes = post_payloads(&mut conn, 1)?;
    let imported = import_frames(&mut conn, frames, rare_topic(frames), &hashes)?;
    Ok(SeekStore {
        server,
        conn,
        frames,
        imported,
        settle: Duration::ZERO,
        settled: false,
    })
}

/// Seek latency on a 10k and a 1M store, side by side.
pub(crate) fn seek_cost(bin: &Path) -> Res<Outcome> {
    let mut stores = [seek_store(bin, SEEK_SMALL)?, seek_store(bin, SEEK_LARGE)?];
    for store in stores.iter_mut() {
        (store.settle, store.settled) = wait_idle(store.server.pid(), SEEK_SETTLE);
    }
    // (key, path on each store, lines the answer must hold)
    let queries: Vec<(&str, [String; 2], u64)> = {
        let per =
            |f: &dyn Fn(&str) -> String| [f(&stores[0].imported.mid), f(&stores[1].imported.mid)];
        vec![
            ("rev1", per(&|_| "/?rev&limit=1".into()), 1),
            ("first", per(&|_| "/first".into()), 1),
            ("last", per(&|_| "/last".into()), 1),
            ("next", per(&|mid| format!("/{mid}/next")), 1),
            ("prev", per(&|mid| format!("/{mid}/prev")), 1),
            ("from10", per(&|mid| format!("/?from={mid}&limit=10")), 10),
            ("rare_rev1", per(&|_| "/?rev&topic=rare&limit=1".into()), 1),
        ]
    };
    // Check every answer once (and warm up).
    for (key, paths, lines) in &queries {
        for (store, path) in stores.iter_mut().zip(paths) {
            let body = expect_200(&mut store.conn, "GET", path, &[])?;
            let got = body.iter().filter(|&&b| b == b'\n').count() as u64;
            // Single frames come without a trailing newline.
            let got = if *lines == 1 && got == 0 && !body.is_empty() {
                1
            } else {
                got
            };
            if got != *lines {
                return Err(format!(
                    "{key}: GET {path} on the {}-frame store gave {got} lines, expected {lines}",
                    store.frames
                ));
            }
            if *key == "rare_rev1" && !body.windows(14).any(|w| w == b"\"topic\":\"rare\"") {
                return Err(format!("GET {path} did not answer a rare frame"));
            }
        }
    }
    let cpu_from = [
        cpu_time(stores[0].server.pid()),
        cpu_time(stores[1].server.pid()),
    ];
    let mut medians = Vec::new();
    for (key, paths, _) in &queries {
        let mut samples = [Vec::new(), Vec::new()];
        while samples[1].len() < SEEK_SAMPLES {
            for (at, store) in stores.iter_mut().enumerate() {
                for _ in 0..SEEK_ROUND {
                    let sent = Instant::now();
                    expect_200(&mut store.conn, "GET", &paths[at], &[])?;
                    samples[at].push(sent.elapsed());
                }
            }
        }
        for s in samples.iter_mut() {
            s.sort();
        }
        medians.push((
            *key,
            percentile(&samples[0], 0.5),
            percentile(&samples[1], 0.5),
        ));
    }
    let requests = (queries.len() * SEEK_SAMPLES) as f64;
    let cpu_per_request: Vec<f64> = stores
        .iter()
        .zip(cpu_from)
        .map(|(store, from)| {
            cpu_time(store.server.pid())
                .saturating_sub(from)
                .as_secs_f64()
                * 1e6
                / requests
        })
        .collect();
    let us = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1e6);
    let mut keys = vec![(
        "frames",
        format!("{}/{}", stores[0].frames, stores[1].frames),
    )];
    let mut worst: f64 = 0.0;
    let mut worst_key = "";
    for (key, small, large) in &medians {
        let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-9);
        if ratio > worst {
            worst = ratio;
            worst_key = key;
        }
        keys.push((key, format!("{}/{}us", us(*small), us(*large))));
    }
    keys.extend([
        ("worst_ratio", format!("{worst:.2}({worst_key})")),
        (
            "server_cpu_us_per_req",
            format!("{:.0}/{:.0}", cpu_per_request[0], cpu_per_request[1]),
        ),
        (
            "import_s",
            format!(
                "{:.1}/{:.1}",
                stores[0].imported.elapsed.as_secs_f64(),
                stores[1].imported.elapsed.as_secs_f64()
            ),
        ),
        (
            "settle_s",
            format!(
                "{:.1}/{:.1}",
                stores[0].settle.as_secs_f64(),
                stores[1].settle.as_secs_f64()
            ),
        ),
        (
            "settled",
            format!("{}/{}", stores[0].settled, stores[1].settled),
        ),
    ]);
    drop(stores);
    Ok(Outcome::Measured {
        keys,
        headline: format!("worst 1M/10k {worst:.2}x"),
        met: worst <= 2.0,
        target: "1M<=2x10k",
    })
}

/// `xs export` of a 100k-frame store, `xs import` into a fresh one.
pub(crate) fn export_import(bin: &Path) -> Res<Outcome> {
    let source = Server::start(bin, "never")?;
    let mut conn = source.connect_served(1)?.remove(0);
    let hashes = post_payloads(&mut conn, EXPORT_PAYLOADS)?;
    let imported = import_frames(&mut conn, EXPORT_FRAMES, |_| "ev", &hashes)?;
    let source_frames = count_lines(&mut conn, "/")?;
    drop(conn);
    let (settle, settled) = wait_idle(source.pid(), SEEK_SETTLE);

    let dump_tmp = tempfile::Builder::new()
        .prefix("xs-bench-dump")
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    let dump = dump_tmp.path().join("dump");
    let cpu_from = cpu_time(source.pid());
    let (export_time, output) = run_cli(
        bin,
        &[
            "export".as_ref(),
            source.store.as_os_str(),
            dump.as_os_str(),
        ],
        &[],
        CLI_LIMIT,
    )?;
    let export_cpu = cpu_time(source.pid()).saturating_sub(cpu_from);
    if !output.status.success() {
        return Err(cli_failure("xs export", &output));
    }
    let said = String::from_utf8_lossy(&output.stdout).trim().to_string();
    // "exported <n> frames and <m> payloads to <folder>"
    let words: Vec<&str> = said.split_whitespace().collect();
    let number = |at: usize| -> Res<u64> {
        words
            .get(at)
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| format!("unexpected xs export output: {said}"))
    };
    let (exported, payloads) = (number(1)?, number(4)?);
    if exported != source_frames {
        return Err(format!(
            "xs export wrote {exported} frames; the store holds {source_frames}"
        ));
    }
    let dump_bytes = dir_bytes(&dump);
    drop(source);

    let target = Server::start(bin, "always")?;
    let mut conn = target.connect_served(1)?.remove(0);
    // The server appends `xs.start` just after its socket opens (on a new
    // store once the writer has made its keyspaces): count from there.
    let before = poll(START_TIMEOUT, Duration::from_millis(2), || {
        let frames = count_lines(&mut conn, "/")?;
        Ok((frames > 0).then_some(frames))
    })?;
    let cpu_from = cpu_time(target.pid());
    let (import_time, output) = run_cli(
        bin,
        &[
            "import".as_ref(),
            target.store.as_os_str(),
            dump.as_os_str(),
        ],
        &[],
        CLI_LIMIT,
    )?;
    let import_cpu = cpu_time(target.pid()).saturating_sub(cpu_from);
    if !output.status.success() {
        return Err(cli_failure("xs import", &output));
    }
    let after = count_lines(&mut conn, "/")?;
    if after - before != exported {
        return Err(format!(
            "the fresh store gained {} frames; export wrote {exported}",
            after - before
        ));
    }
    drop(conn);
    drop(target);
    let per_frame = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e6 / exported as f64);
    Ok(Outcome::Measured {
        keys: vec![
            ("frames", exported.to_string()),
            ("payloads", payloads.to_string()),
            ("export_s", format!("{:.2}", export_time.as_secs_f64())),
            ("import_s", format!("{:.2}", import_time.as_secs_f64())),
            (
                "export_frames_per_s",
                format!("{:.0}", exported as f64 / export_time.as_secs_f64()),
            ),
            (
                "import_frames_per_s",
                format!("{:.0}", exported as f64 / import_time.as_secs_f64()),
            ),
            ("export_server_cpu_us_per_frame", per_frame(export_cpu)),
            ("import_server_cpu_us_per_frame", per_frame(import_cpu)),
            ("import_fsync", "always".into()),
            ("dump_mb", format!("{:.1}", dump_bytes as f64 / 1e6)),
            ("fill_s", format!("{:.1}", imported.elapsed.as_secs_f64())),
            ("settle_s", format!("{:.1}", settle.as_secs_f64())),
            ("settled", settled.to_string()),
        ],
        headline: format!(
            "export {:.1} s, import {:.1} s",
            export_time.as_secs_f64(),
            import_time.as_secs_f64()
        ),
        met: true,
        target: "report",
    })
}

/// The bytes of the files under `dir`.
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&entry.path()),
            _ => entry.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}
