//! `redis-server` processes for the tests: a private one per test that
//! needs to stop, kill or restart it, and the shared one of `backend.rs`.
//!
//! Each runs with a parent-death signal, so none outlives the test binary;
//! that signal follows the *thread* that spawned it, so the spawn happens
//! on a thread of its own that lives as long as the server.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    /// The running server's pid, and the thread waiting on it.
    running: Option<(u32, std::thread::JoinHandle<()>)>,
}

impl RedisServer {
    /// Starts one with `args` added (e.g. `--appendonly yes`).
    pub fn start(args: &[&str]) -> RedisServer {
        super::backend::ensure_redis_server();
        let mut server = RedisServer {
            port: super::backend::free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            args: args.iter().map(|a| a.to_string()).collect(),
            running: None,
        };
        server.spawn();
        server
    }

    /// `redis://127.0.0.1:<port>/0?ns=<ns>`.
    pub fn url(&self, ns: &str) -> String {
        format!("{}?ns={ns}", self.base_url())
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn base_url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn spawn(&mut self) {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; it runs in the child only.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let (pid_tx, pid_rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || match command.spawn() {
            Ok(mut child) => {
                let _ = pid_tx.send(Some(child.id()));
                let _ = child.wait();
            }
            Err(_) => {
                let _ = pid_tx.send(None);
            }
        });
        let pid = pid_rx
            .recv()
            .ok()
            .flatten()
            .expect("redis-server on PATH (Debian: apt-get install redis-server)");
        self.running = Some((pid, waiter));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis_ping(self.port) {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: Redis dies as in a crash.
    pub fn kill(&mut self) {
        if let Some((pid, waiter)) = self.running.take() {
            // SAFETY: signalling the server this value started.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            let _ = waiter.join();
        }
    }

    /// Starts it again on the same port and data folder.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a Redis answers PING on the port (a loaded one: `LOADING`
/// while it replays its AOF does not count).
fn redis_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}
