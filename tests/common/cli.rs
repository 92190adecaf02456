//! Helpers for the CLI tests: running the `xs` binary and reading what it
//! prints, to its end (`xs`, `run`, with a deadline) or line by line while
//! it keeps running (`Follower`).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{id, Server, XS};

// ---------------------------------------------------------------------------
// Running the binary

/// How long one CLI command may take before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a follower may take to print its next line.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// `xs <args>` with stdin closed.
pub fn xs(args: &[&str]) -> Output {
    run(cmd(args), None)
}

/// `xs <args>` with `input` on stdin.
pub fn xs_stdin(args: &[&str], input: &[u8]) -> Output {
    run(cmd(args), Some(input))
}

pub fn cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(XS);
    cmd.args(args);
    cmd
}

/// Runs a command to its end (killed after `COMMAND_TIMEOUT`).
pub fn run(mut cmd: Command, input: Option<&[u8]>) -> Output {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn xs");
    let writer = input.map(|bytes| {
        let mut stdin = child.stdin.take().unwrap();
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        })
    });
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let status = wait_for(&mut child, COMMAND_TIMEOUT)
        .unwrap_or_else(|| panic!("{cmd:?} did not finish within {COMMAND_TIMEOUT:?}"));
    if let Some(writer) = writer {
        writer.join().unwrap();
    }
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

pub fn drain(mut from: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        bytes
    })
}

/// Waits for `child` to exit; kills it and answers `None` after `timeout`.
pub fn wait_for(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit 0 and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "expected success, got {:?}; stderr: {}",
        out.status,
        stderr(out)
    );
    stdout(out)
}

/// Asserts exit 1 with nothing on stdout or stderr ("not found").
pub fn not_found(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1; stdout: {:?}; stderr: {:?}",
        stdout(out),
        stderr(out)
    );
    assert_eq!(stdout(out), "", "no output expected");
    assert_eq!(stderr(out), "", "nothing on stderr expected");
}

/// The NDJSON lines of some output, parsed.
pub fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

pub fn ids(frames: &[Value]) -> Vec<String> {
    frames.iter().map(|f| id(f).to_string()).collect()
}

/// The store folder as a command-line address.
pub fn addr(server: &Server) -> String {
    server.dir().to_str().expect("UTF-8 path").to_string()
}

// ---------------------------------------------------------------------------
// Followers

/// A long-running `xs …` (`cat -f`, `kv watch`, a cursor consumer) whose
/// stdout a thread reads line by line into a channel, so a test waits for
/// each line with a timeout; killed on drop.
pub struct Follower {
    child: Child,
    lines: Receiver<String>,
}

impl Follower {
    pub fn spawn(args: &[&str]) -> Follower {
        let mut child = cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn xs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        let line = String::from_utf8_lossy(&line).into_owned();
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Follower { child, lines: rx }
    }

    /// The next line; panics after `LINE_TIMEOUT` or at the end.
    pub fn line(&self) -> String {
        match self.lines.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("no line within {LINE_TIMEOUT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("output ended"),
        }
    }

    pub fn frame(&self) -> Value {
        json(&self.line())
    }

    /// SIGKILL, and waits for it to go.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        wait_for(&mut self.child, Duration::from_secs(10)).expect("exits after SIGTERM")
    }

    /// Asserts nothing is printed within `wait`.
    pub fn silent(&self, wait: Duration) {
        match self.lines.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(line) => panic!("expected silence, got {line:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("expected silence, output ended"),
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
