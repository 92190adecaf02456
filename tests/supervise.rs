//! Process supervision (SPEC 7.4) as a user sees it, through the real
//! binary: `command:` services, restart policies and back-off, the
//! `exited` / `fin.*` / `stopped` lifecycle frames, `term` with a grace
//! period, no orphans after a SIGKILLed server, `^prog` inside Nushell, and
//! the process table (`GET /ps`, `xs ps`).
//!
//! Processes are observed from the outside through `/proc`; every process a
//! test's services start is watched by a guard that SIGKILLs it (by pid,
//! checked against its start time) should the test end with it alive.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use common::waits::*;
use common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Stream helpers

/// Appends `script` as the payload of `xs.service.<name>.create`.
fn create(server: &Server, name: &str, script: &str) -> Value {
    server.append(&format!("xs.service.{name}.create"), script.as_bytes())
}

/// A payload as text.
fn payload_text(server: &Server, frame: &Value) -> String {
    let hash = frame["hash"]
        .as_str()
        .unwrap_or_else(|| panic!("no hash: {frame}"));
    let r = server.get(&format!("/cas/{hash}"));
    assert_eq!(r.status, 200, "GET /cas/{hash}");
    String::from_utf8(r.body).expect("UTF-8 payload")
}

/// The payloads of some frames.
fn payloads(server: &Server, frames: &[Value]) -> Vec<String> {
    frames.iter().map(|f| payload_text(server, f)).collect()
}

/// Milliseconds from frame `a` to frame `b`, by their ids.
fn gap(a: &Value, b: &Value) -> i64 {
    id_ms(id(b)) as i64 - id_ms(id(a)) as i64
}

fn pause(d: Duration) {
    std::thread::sleep(d);
}

// ---------------------------------------------------------------------------
// The CLI

/// Runs `xs args…` with stdout piped (not a terminal), failing the test
/// if it takes longer than 20 s.
fn xs(args: &[&str]) -> Output {
    let mut child = Command::new(XS)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("xs {args:?} did not finish within 20 s");
        }
        pause(ms(5));
    }
    child.wait_with_output().expect("output")
}

fn dir_arg(server: &Server) -> String {
    server.dir().to_str().expect("UTF-8 path").to_string()
}

/// `xs ps <dir> --json` as rows, or what went wrong.
fn ps_rows(server: &Server) -> Result<Vec<Value>, String> {
    let out = xs(&["ps", &dir_arg(server), "--json"]);
    if !out.status.success() {
        return Err(format!(
            "xs ps --json failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_ndjson(&out.stdout)
}

fn parse_ndjson(bytes: &[u8]) -> Result<Vec<Value>, String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not a JSON line ({e}): {l:?}")))
        .collect()
}

/// The `xs ps` row of service `name`.
fn ps_row(server: &Server, name: &str) -> Result<Value, String> {
    ps_rows(server)?
        .into_iter()
        .find(|r| r["name"] == name && r["kind"] == "service")
        .ok_or_else(|| format!("no service row for {name} in xs ps"))
}

/// The pid `xs ps` shows for service `name`.
fn ps_pid(server: &Server, name: &str) -> Result<i32, String> {
    let row = ps_row(server, name)?;
    row["pid"]
        .as_i64()
        .map(|p| p as i32)
        .ok_or_else(|| format!("no pid for {name}: {row}"))
}

// ---------------------------------------------------------------------------
// Processes, seen through /proc

/// Fields of `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy)]
struct Stat {
    state: char,
    ppid: i32,
    pgrp: i32,
    start: u64,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after its ')' do not.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Alive: it exists and is not a zombie (a killed process whose parent
/// died is reaped only when its new parent gets to it).
fn alive(pid: i32) -> bool {
    matches!(stat(pid), Some(s) if s.state != 'Z' && s.state != 'X')
}

fn wait_gone(pid: i32, timeout: Duration) -> bool {
    wait_until(timeout, || !alive(pid))
}

fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|w| !w.is_empty())
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Live members of process group `pgrp`.
fn group(pgrp: i32) -> Vec<i32> {
    pids()
        .into_iter()
        .filter(|p| alive(*p) && stat(*p).is_some_and(|s| s.pgrp == pgrp))
        .collect()
}

/// The live child of `parent` running exactly `argv`, waiting for it.
fn wait_child(parent: u32, argv: &[&str]) -> i32 {
    let mut found = None;
    let ok = wait_until(WAIT, || {
        found = pids().into_iter().find(|p| {
            alive(*p) && stat(*p).is_some_and(|s| s.ppid == parent as i32) && cmdline(*p) == argv
        });
        found.is_some()
    });
    assert!(ok, "no child of the server runs {argv:?}");
    found.unwrap()
}

/// `/proc/<pid>/status` line `key`, for failure messages.
fn status_line(pid: i32, key: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or("")
        .to_string()
}

/// Reaps `pid` if it is a zombie child of this test process (it can be
/// one once this process is a subreaper); true when it is gone.
fn reap(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid on one pid, no memory effects beyond `status`.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    stat(pid).is_none()
}

/// Makes this test process the reaper of orphans below it, as init would
/// be on an ordinary host: a service's program killed along with its
/// server is then reaped (by `reap`) instead of lingering as a zombie
/// under a pid 1 that never reaps (as in some containers), where /proc
/// would still show it with its start time.
fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a process attribute, no memory effects.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    });
}

/// Processes the services of a test started: SIGKILLed (by pid, if it is
/// still the same process) when the test ends, pass or fail.
#[derive(Default)]
struct Strays(Vec<(i32, u64)>);

impl Strays {
    fn watch(&mut self, pid: i32) {
        if let Some(s) = stat(pid) {
            self.0.push((pid, s.start));
        }
    }
}

impl Drop for Strays {
    fn drop(&mut self) {
        for &(pid, start) in &self.0 {
            if alive(pid) && stat(pid).map(|s| s.start) == Some(start) {
                // SAFETY: signalling a process this test's service started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                wait_until(ms(500), || reap(pid) || !alive(pid));
            }
            reap(pid);
        }
    }
}

// ---------------------------------------------------------------------------
// Plain commands

#[test]
fn command_stdout_and_stderr_lines_become_frames_then_fin_ok() {
    let server = Server::start(&[]);
    let svc = create(
        &server,
        "lines",
        r#"{command: ["sh", "-c", "echo out1; echo err1 >&2; echo out2"], restart: "never"}"#,
    );
    let fin = wait_topic(&server, "xs.service.lines.fin.ok");
    assert_eq!(fin["meta"], json!({"source_id": id(&svc)}));
    let frames = all(&server);
    let recv: Vec<Value> = of(&frames, "lines.recv").into_iter().cloned().collect();
    let stderr: Vec<Value> = of(&frames, "lines.stderr").into_iter().cloned().collect();
    assert_eq!(
        payloads(&server, &recv),
        ["out1", "out2"],
        "{}",
        dump(&frames)
    );
    assert_eq!(payloads(&server, &stderr), ["err1"]);
    for f in recv.iter().chain(&stderr) {
        assert_eq!(f["meta"], json!({"source_id": id(&svc)}), "{f}");
        assert!(id(f) < id(&fin), "{} after fin.ok", topic(f));
    }
    let active = of(&frames, "xs.service.lines.active");
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["meta"], json!({"source_id": id(&svc)}));
    assert!(id(active[0]) < id(&recv[0]));
    assert!(of(&frames, "xs.service.lines.exited").is_empty());
    // `never`: a clean exit is the end.
    pause(Duration::from_millis(1300));
    let frames = all(&server);
    assert_eq!(
        after(&frames, &fin).len(),
        0,
        "nothing after fin.ok:\n{}",
        dump(&frames)
    );
}

// ---------------------------------------------------------------------------
// Policies and back-off

#[test]
fn quick_failures_back_off_doubling_with_exited_frames() {
    let server = Server::start(&[]);
    let svc = create(
        &server,
        "flaky",
        r#"{command: ["sh", "-c", "exit 1"], restart: "always", healthy_ms: 60000}"#,
    );
    let exited = wait_count(&server, "xs.service.flaky.exited", 3);
    let actives = now_of(&server, "xs.service.flaky.active");
    for (n, delay) in [1000, 2000, 4000].into_iter().enumerate() {
        assert_eq!(
            exited[n]["meta"],
            json!({"source_id": id(&svc), "status": 1, "signal": null, "restart_in_ms": delay}),
            "exited #{n}"
        );
    }
    // active, exited (1 s), active, exited (2 s), active, exited …
    assert!(actives.len() >= 3, "{actives:?}");
    for n in 0..3 {
        assert!(id(&actives[n]) < id(&exited[n]));
    }
    let waited1 = gap(&exited[0], &actives[1]);
    let waited2 = gap(&exited[1], &actives[2]);
    assert!(
        (900..2000).contains(&waited1),
        "first restart after {waited1} ms"
    );
    assert!(
        (1900..3200).contains(&waited2),
        "second restart after {waited2} ms"
    );
    let between1 = gap(&actives[0], &actives[1]);
    let between2 = gap(&actives[1], &actives[2]);
    assert!(
        between2 >= between1 + 700,
        "the gaps between runs grow: {between1} ms, then {between2} ms"
    );
    assert!(of(&all(&server), "xs.service.flaky.fin.error").is_empty());

    let row = ps_row(&server, "flaky").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        row["state"] == "backoff" || row["state"] == "running",
        "{row}"
    );
    assert!(row["restarts"].as_u64().unwrap_or(0) >= 1, "{row}");
    let last_exit = row["last_exit"].as_str().unwrap_or_default();
    assert!(last_exit.contains('1'), "last_exit names status 1: {row}");
}

#[test]
fn on_failure_and_never_policies() {
    let server = Server::start(&[]);
    let clean = create(
        &server,
        "okf",
        r#"{command: ["true"], restart: "on-failure"}"#,
    );
    let failing = create(
        &server,
        "failf",
        r#"{command: ["sh", "-c", "exit 3"], restart: "on-failure", healthy_ms: 60000}"#,
    );
    let killed = create(
        &server,
        "sigf",
        r#"{command: ["sh", "-c", "kill -KILL $$"], restart: "on-failure"}"#,
    );
    let never = create(
        &server,
        "nevf",
        r#"{command: ["sh", "-c", "exit 4"], restart: "never"}"#,
    );

    let fin_ok = wait_topic(&server, "xs.service.okf.fin.ok");
    assert_eq!(fin_ok["meta"], json!({"source_id": id(&clean)}));

    let exited = wait_topic(&server, "xs.service.failf.exited");
    assert_eq!(
        exited["meta"],
        json!({"source_id": id(&failing), "status": 3, "signal": null, "restart_in_ms": 1000})
    );
    let again = wait_count(&server, "xs.service.failf.active", 2);
    assert!(id(&again[1]) > id(&exited));

    let exited = wait_topic(&server, "xs.service.sigf.exited");
    assert_eq!(
        exited["meta"],
        json!({"source_id": id(&killed), "status": null, "signal": 9, "restart_in_ms": 1000})
    );

    let fin_error = wait_topic(&server, "xs.service.nevf.fin.error");
    assert_eq!(fin_error["meta"]["source_id"], never["id"]);
    assert_eq!(fin_error["meta"]["status"], 4, "{fin_error}");
    assert!(
        !fin_error["meta"]["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{fin_error}"
    );

    // Neither stopped service comes back (a rerun would be 1 s later).
    let since = fin_ok.clone();
    pause(Duration::from_millis(1300));
    let frames = all(&server);
    for name in ["okf", "nevf"] {
        assert_eq!(
            of(&frames, &format!("xs.service.{name}.active")).len(),
            1,
            "{name} ran again:\n{}",
            dump(&frames)
        );
        assert!(of(&frames, &format!("xs.service.{name}.exited")).is_empty());
    }
    assert!(after(&frames, &since)
        .iter()
        .all(|f| !topic(f).starts_with("xs.service.okf.")));
    assert!(of(&frames, "xs.service.okf.fin.error").is_empty());
    assert!(of(&frames, "xs.service.nevf.fin.ok").is_empty());
}

#[test]
fn on_success_reruns_clean_finishes_and_stops_on_errors() {
    let server = Server::start(&[]);
    let clean = create(
        &server,
        "oks",
        r#"{run: {|| {n: 1}}, restart: "on-success"}"#,
    );
    let failing = create(
        &server,
        "bads",
        r#"{command: ["sh", "-c", "exit 5"], restart: "on-success"}"#,
    );
    let erroring = create(
        &server,
        "nubads",
        r#"{run: {|| error make {msg: "boom"}}, restart: "on-success"}"#,
    );

    // A clean finish runs again, with an exited frame as under our other
    // policies.
    let exited = wait_topic(&server, "xs.service.oks.exited");
    assert_eq!(
        exited["meta"],
        json!({"source_id": id(&clean), "status": null, "signal": null, "restart_in_ms": 1000})
    );
    let actives = wait_count(&server, "xs.service.oks.active", 2);
    assert!(id(&actives[1]) > id(&exited));

    // An error (a failing program, a Nushell error) ends it for good.
    let fin = wait_topic(&server, "xs.service.bads.fin.error");
    assert_eq!(fin["meta"]["source_id"], failing["id"]);
    assert_eq!(fin["meta"]["status"], 5, "{fin}");
    let fin = wait_topic(&server, "xs.service.nubads.fin.error");
    assert_eq!(fin["meta"]["source_id"], erroring["id"]);
    let message = fin["meta"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("boom"), "{fin}");

    // Neither comes back (a rerun would be 1 s later).
    pause(Duration::from_millis(1300));
    let frames = all(&server);
    for name in ["bads", "nubads"] {
        assert_eq!(
            of(&frames, &format!("xs.service.{name}.active")).len(),
            1,
            "{name} ran again:\n{}",
            dump(&frames)
        );
        assert!(of(&frames, &format!("xs.service.{name}.exited")).is_empty());
    }
}

#[test]
fn defaults_command_always_and_run_as_cross_stream() {
    let server = Server::start(&[]);
    let cmd = create(&server, "dflt", r#"{command: ["true"]}"#);
    let nu = create(&server, "nurun", "{run: {|| {n: 1}}}");
    let err = create(&server, "nuerr", r#"{run: {|| error make {msg: "nope"}}}"#);
    let policy = create(
        &server,
        "nuonf",
        r#"{run: {|| error make {msg: "again"}}, restart: "on-failure", healthy_ms: 60000}"#,
    );

    // A command restarts after a clean exit by default, saying so (its
    // meta is checked last).
    let cmd_exited = wait_topic(&server, "xs.service.dflt.exited");
    let actives = wait_count(&server, "xs.service.dflt.active", 2);
    let waited = gap(&cmd_exited, &actives[1]);
    assert!((900..2000).contains(&waited), "restarted after {waited} ms");

    // A run closure reruns a second after a clean finish: a new active,
    // no exited frame.
    let actives = wait_count(&server, "xs.service.nurun.active", 2);
    let recvs = wait_count(&server, "nurun.recv", 1);
    assert_eq!(recvs[0]["meta"], json!({"n": 1, "source_id": id(&nu)}));
    let waited = gap(&recvs[0], &actives[1]);
    assert!((900..2000).contains(&waited), "reran after {waited} ms");
    for active in &actives {
        assert_eq!(active["meta"], json!({"source_id": id(&nu)}));
    }

    // An error ends it.
    let fin = wait_topic(&server, "xs.service.nuerr.fin.error");
    assert_eq!(fin["meta"]["source_id"], err["id"]);
    let message = fin["meta"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("nope"), "{fin}");

    // A run closure under a policy: its failures restart with exited.
    let exited = wait_topic(&server, "xs.service.nuonf.exited");
    assert_eq!(
        exited["meta"],
        json!({"source_id": id(&policy), "status": null, "signal": null, "restart_in_ms": 1000})
    );
    wait_count(&server, "xs.service.nuonf.active", 2);

    pause(Duration::from_millis(1300));
    let frames = all(&server);
    assert!(of(&frames, "xs.service.nurun.exited").is_empty());
    assert!(of(&frames, "xs.service.nurun.fin.ok").is_empty());
    assert!(of(&frames, "xs.service.nuerr.exited").is_empty());
    assert_eq!(
        of(&frames, "xs.service.nuerr.active").len(),
        1,
        "no rerun after an error"
    );
    // A clean exit is status 0.
    assert_eq!(
        cmd_exited["meta"],
        json!({"source_id": id(&cmd), "status": 0, "signal": null, "restart_in_ms": 1000})
    );
}

// ---------------------------------------------------------------------------
// Signals

#[test]
fn term_kills_a_child_that_ignores_sigterm_after_the_grace() {
    let server = Server::start(&[]);
    let mut strays = Strays::default();
    let argv = ["sh", "-c", "trap '' TERM; echo ready; sleep 1000"];
    let svc = create(
        &server,
        "stubborn",
        &format!(r#"{{command: {}, grace_ms: 500}}"#, json!(argv)),
    );
    let ready = wait_topic(&server, "stubborn.recv");
    assert_eq!(payload_text(&server, &ready), "ready");
    let leader = wait_child(server.pid(), &argv);
    // Its `sleep` is in its group.
    assert!(
        wait_until(WAIT, || group(leader).len() >= 2),
        "the group of {leader}: {:?}",
        group(leader)
    );
    let members = group(leader);
    for pid in &members {
        strays.watch(*pid);
    }
    let from_ps = ps_pid(&server, "stubborn");

    let term = server.append("xs.service.stubborn.term", b"");
    let started = Instant::now();
    for pid in &members {
        assert!(
            wait_gone(*pid, Duration::from_millis(2500)),
            "{pid} ({:?}) still alive {:?} after term",
            cmdline(*pid),
            started.elapsed()
        );
    }
    let fin = wait_topic(&server, "xs.service.stubborn.fin.term");
    assert_eq!(fin["meta"], json!({"source_id": id(&svc)}));
    let took = gap(&term, &fin);
    assert!(
        (400..2500).contains(&took),
        "SIGTERM ignored, so SIGKILL after the 500 ms grace: fin.term after {took} ms"
    );
    pause(QUIET);
    let frames = all(&server);
    assert!(
        after(&frames, &fin).is_empty(),
        "nothing after fin.term:\n{}",
        dump(&frames)
    );
    assert!(of(&frames, "xs.service.stubborn.exited").is_empty());
    assert_eq!(from_ps, Ok(leader), "xs ps shows the program's pid");
}

/// A program that does not ignore SIGTERM ends on `term` at once, long
/// before the default 5 s grace.
#[test]
fn term_is_prompt_for_a_program_that_obeys_sigterm() {
    let server = Server::start(&[]);
    let mut strays = Strays::default();
    let svc = create(&server, "obedient", r#"{command: ["sleep", "1000"]}"#);
    let pid = wait_child(server.pid(), &["sleep", "1000"]);
    strays.watch(pid);
    let blocked = status_line(pid, "SigBlk");
    let term = server.append("xs.service.obedient.term", b"");
    let fin = wait_topic(&server, "xs.service.obedient.fin.term");
    assert_eq!(fin["meta"], json!({"source_id": id(&svc)}));
    let took = gap(&term, &fin);
    assert!(
        !alive(pid) && took < 2000,
        "fin.term {took} ms after term (default grace 5000 ms): SIGTERM had no effect; \
         the program's signal mask: {blocked}"
    );
}

// ---------------------------------------------------------------------------
// No orphans

#[test]
fn no_child_survives_a_sigkilled_server_and_services_come_back() {
    become_subreaper();
    let mut server = Server::start(&[]);
    let mut strays = Strays::default();
    let sleeper = create(
        &server,
        "orph",
        r#"{command: ["sleep", "1000"], grace_ms: 300}"#,
    );
    let gc_argv = ["sh", "-c", "sleep 1000 & echo $!; wait"];
    let gc = create(
        &server,
        "gc",
        &format!(r#"{{command: {}, grace_ms: 300}}"#, json!(gc_argv)),
    );
    let pid = wait_child(server.pid(), &["sleep", "1000"]);
    strays.watch(pid);
    let leader = wait_child(server.pid(), &gc_argv);
    strays.watch(leader);
    let recv = wait_topic(&server, "gc.recv");
    let grandchild: i32 = payload_text(&server, &recv)
        .trim()
        .parse()
        .expect("the grandchild's pid");
    strays.watch(grandchild);
    assert!(alive(grandchild));
    assert_eq!(stat(grandchild).map(|s| s.pgrp), Some(leader));
    let from_ps = ps_pid(&server, "orph");

    server.kill();
    // The direct children die with the server (parent-death signal).
    assert!(
        wait_gone(pid, ms(2000)),
        "`sleep 1000` outlived the SIGKILLed server"
    );
    assert!(
        wait_gone(leader, ms(2000)),
        "the gc service's sh outlived the SIGKILLed server"
    );
    // Its leader is gone for good (reaped, as init would), the grandchild
    // is left in its group.
    assert!(wait_until(ms(2000), || reap(leader)), "reaping {leader}");
    reap(pid);
    assert!(
        alive(grandchild),
        "the grandchild is no child of the server"
    );

    server.restart();
    let restarted = Instant::now();
    let started = wait_for(&server, "this run's xs.start", |frames| {
        of(frames, "xs.start").get(1).map(|f| (*f).clone())
    });
    // Both services were running: both run again, with new processes.
    for (name, made) in [("orph", &sleeper), ("gc", &gc)] {
        let active = wait_topic_after(&server, &format!("xs.service.{name}.active"), &started);
        assert_eq!(active["meta"], json!({"source_id": id(made)}));
    }
    let new_pid = wait_child(server.pid(), &["sleep", "1000"]);
    strays.watch(new_pid);
    let new_leader = wait_child(server.pid(), &gc_argv);
    strays.watch(new_leader);
    let recv = wait_topic_after(&server, "gc.recv", &started);
    let new_grandchild: i32 = payload_text(&server, &recv)
        .trim()
        .parse()
        .expect("the new grandchild's pid");
    strays.watch(new_grandchild);
    assert_ne!(new_pid, pid);
    assert!(alive(new_pid) && alive(new_grandchild));
    let new_from_ps = ps_pid(&server, "orph");
    assert_eq!(from_ps, Ok(pid), "xs ps shows the pid before the crash");
    assert_eq!(new_from_ps, Ok(new_pid), "xs ps shows the new pid");
    // The predecessor's process group was killed at start-up.
    let left = (restarted + ms(2000)).saturating_duration_since(Instant::now());
    assert!(
        wait_gone(grandchild, left),
        "grandchild {grandchild} (group {leader}, whose leader is gone) survived the restart"
    );
    server.stop();
    for p in [new_pid, new_leader, new_grandchild] {
        assert!(wait_gone(p, ms(1000)), "{p} outlived a stopped server");
    }
}

#[test]
fn server_sigterm_stops_running_services_which_come_back() {
    let mut server = Server::start(&[]);
    let running = create(
        &server,
        "run1",
        r#"{command: ["sleep", "1000"], grace_ms: 300}"#,
    );
    let backing_off = create(&server, "bo", r#"{command: ["false"], grace_ms: 300}"#);
    let done = create(&server, "done1", r#"{command: ["true"], restart: "never"}"#);
    let failed = create(&server, "bad1", r#"{command: ["false"], restart: "never"}"#);
    let pid = wait_child(server.pid(), &["sleep", "1000"]);
    let mut strays = Strays::default();
    strays.watch(pid);
    wait_topic(&server, "xs.service.done1.fin.ok");
    wait_topic(&server, "xs.service.bad1.fin.error");
    wait_topic(&server, "xs.service.bo.exited");

    server.stop();
    assert!(!alive(pid), "`sleep 1000` outlived the stopped server");
    server.restart();
    let frames = all(&server);
    let stopping = of(&frames, "xs.stopping")
        .first()
        .map(|f| (*f).clone())
        .expect("xs.stopping");
    for (name, made) in [("run1", &running), ("bo", &backing_off)] {
        let stopped = of(&frames, &format!("xs.service.{name}.stopped"));
        assert_eq!(stopped.len(), 1, "{name}:\n{}", dump(&frames));
        assert_eq!(stopped[0]["meta"], json!({"source_id": id(made)}));
        assert!(id(stopped[0]) > id(&stopping));
        let active = wait_topic_after(&server, &format!("xs.service.{name}.active"), &stopping);
        assert_eq!(active["meta"], json!({"source_id": id(made)}));
    }
    let new_pid = wait_child(server.pid(), &["sleep", "1000"]);
    strays.watch(new_pid);
    assert_ne!(new_pid, pid);

    pause(QUIET);
    let frames = all(&server);
    for (name, made) in [("done1", &done), ("bad1", &failed)] {
        let after_stop: Vec<&Value> = after(&frames, &stopping)
            .into_iter()
            .filter(|f| topic(f).starts_with(&format!("xs.service.{name}.")))
            .collect();
        assert!(
            after_stop.is_empty(),
            "{name} (created {}) had ended: {after_stop:?}",
            id(made)
        );
    }
}

// ---------------------------------------------------------------------------
// External programs in Nushell

#[test]
fn external_programs_in_nushell_services_and_eval() {
    let server = Server::start(&[]);
    let echo = create(
        &server,
        "echo1",
        r#"{run: {|| ^echo hello }, return_options: {target: "cas"}}"#,
    );
    let cat = create(
        &server,
        "cat1",
        r#"{run: {|| "text" | ^cat }, return_options: {target: "cas"}}"#,
    );
    let falsy = create(&server, "false1", "{run: {|| ^false }}");

    let recv = wait_topic(&server, "echo1.recv");
    assert_eq!(payload_text(&server, &recv), "hello\n");
    assert_eq!(recv["meta"], json!({"source_id": id(&echo)}));
    let recv = wait_topic(&server, "cat1.recv");
    assert_eq!(payload_text(&server, &recv), "text");
    assert_eq!(recv["meta"], json!({"source_id": id(&cat)}));

    // A non-zero exit is an error: the run fails.
    let fin = wait_topic(&server, "xs.service.false1.fin.error");
    assert_eq!(fin["meta"]["source_id"], falsy["id"]);
    let message = fin["meta"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("false") || message.contains("non-zero"),
        "{fin}"
    );
    assert!(now_of(&server, "false1.recv").is_empty());

    let out = xs(&["eval", &dir_arg(&server), "-c", "^echo hi"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    let out = xs(&["eval", &dir_arg(&server), "-c", "\"piped\" | ^cat"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped");
}

/// A program that fails before the script's last statement fails the
/// script, as in Nushell: a service ends with `fin.error`, `/eval` answers
/// 500 with the Nushell error text.
#[test]
fn a_program_failing_mid_script_is_a_script_error() {
    let mut server = Server::start(&[]);
    let script = "^false; \"after\"";
    let r = server.post("/eval", script.as_bytes());
    assert_eq!(r.status, 500, "{:?}", r.text());
    assert!(
        r.text().contains("false") || r.text().contains("non-zero"),
        "500 with the error text: {:?}",
        r.text()
    );
    let out = xs(&["eval", &dir_arg(&server), "-c", script]);
    assert!(!out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("after"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("false") || stderr.contains("non-zero"),
        "xs eval says why: {stderr:?}"
    );

    let svc = create(&server, "false2", &format!("{{run: {{|| {script} }}}}"));
    let fin = wait_topic(&server, "xs.service.false2.fin.error");
    assert_eq!(fin["meta"]["source_id"], svc["id"]);
    let message = fin["meta"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("false") || message.contains("non-zero"),
        "{fin}"
    );
    assert!(now_of(&server, "false2.recv").is_empty());
    assert!(server.is_running());
}

// ---------------------------------------------------------------------------
// The process table

const PS_KEYS: [&str; 8] = [
    "name",
    "kind",
    "state",
    "pid",
    "since",
    "restarts",
    "last_exit",
    "last_error",
];

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    if b.len() < 20 || !digits(0..4) || !digits(5..7) || !digits(8..10) {
        return false;
    }
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return false;
    }
    if !digits(11..13) || !digits(14..16) || !digits(17..19) {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':')
}

#[test]
fn ps_lists_actors_services_and_actions() {
    let server = Server::start(&[]);
    server.append(
        "xs.actor.watcher.create",
        b"{run: {|frame, state = null| {next: $state}}}",
    );
    server.append("xs.action.doer.create", b"{run: {|frame| 1}}");
    create(
        &server,
        "sleeper",
        r#"{command: ["sleep", "1000"], grace_ms: 300}"#,
    );
    create(
        &server,
        "finished",
        r#"{command: ["true"], restart: "never"}"#,
    );
    create(
        &server,
        "broken",
        r#"{command: ["sh", "-c", "exit 7"], restart: "never"}"#,
    );
    let pid = wait_child(server.pid(), &["sleep", "1000"]);
    let mut strays = Strays::default();
    strays.watch(pid);
    wait_topic(&server, "xs.actor.watcher.active");
    wait_topic(&server, "xs.action.doer.active");
    wait_topic(&server, "xs.service.finished.fin.ok");
    wait_topic(&server, "xs.service.broken.fin.error");

    let r = server.get("/ps");
    assert_eq!(r.status, 200, "GET /ps: {}", r.text());
    assert!(
        r.content_type().unwrap_or("").contains("ndjson"),
        "{:?}",
        r.content_type()
    );
    let rows = parse_ndjson(&r.body).unwrap_or_else(|e| panic!("{e}"));
    let expected: BTreeSet<&str> = PS_KEYS.into_iter().collect();
    for row in &rows {
        let keys: BTreeSet<&str> = row
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, expected, "{row}");
        assert!(
            is_rfc3339(row["since"].as_str().unwrap_or("")),
            "since: {row}"
        );
        assert!(
            ["running", "backoff", "stopped", "failed"]
                .contains(&row["state"].as_str().unwrap_or("")),
            "{row}"
        );
    }
    let row = |kind: &str, name: &str| -> Value {
        rows.iter()
            .find(|r| r["kind"] == kind && r["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {rows:?}"))
            .clone()
    };
    let actor = row("actor", "watcher");
    assert_eq!(actor["state"], "running");
    let action = row("action", "doer");
    assert_eq!(action["state"], "running");
    let sleeper = row("service", "sleeper");
    assert_eq!(sleeper["state"], "running");
    assert_eq!(sleeper["pid"], pid);
    assert_eq!(sleeper["restarts"], 0);
    assert_eq!(sleeper["last_exit"], Value::Null);
    assert_eq!(sleeper["last_error"], Value::Null);
    let finished = row("service", "finished");
    assert_eq!(finished["state"], "stopped", "{finished}");
    assert_eq!(finished["pid"], Value::Null);
    let broken = row("service", "broken");
    assert_eq!(broken["state"], "failed", "{broken}");
    assert!(
        broken["last_exit"].as_str().unwrap_or("").contains('7'),
        "{broken}"
    );
    assert!(
        !broken["last_error"].as_str().unwrap_or("").is_empty(),
        "{broken}"
    );

    // The CLI: NDJSON when piped, and with --json.
    for args in [vec!["ps", "DIR"], vec!["ps", "DIR", "--json"]] {
        let dir = dir_arg(&server);
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "DIR" { dir.as_str() } else { a })
            .collect();
        let out = xs(&args);
        assert!(out.status.success(), "xs {args:?}: {out:?}");
        let printed = parse_ndjson(&out.stdout).unwrap_or_else(|e| panic!("xs {args:?}: {e}"));
        let names: BTreeSet<(String, String)> = printed
            .iter()
            .map(|r| (r["kind"].to_string(), r["name"].to_string()))
            .collect();
        let served: BTreeSet<(String, String)> = rows
            .iter()
            .map(|r| (r["kind"].to_string(), r["name"].to_string()))
            .collect();
        assert_eq!(names, served, "xs {args:?}");
        for r in &printed {
            assert_eq!(r.as_object().map(|o| o.len()), Some(PS_KEYS.len()), "{r}");
        }
    }
}
