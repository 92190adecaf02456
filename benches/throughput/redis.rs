//! The Redis backend dimensions: a `redis-server` started here (loopback,
//! temp folder, `appendfsync always`) under one or two `xs serve` nodes;
//! skipped when `redis-server` is not on PATH.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::appends::*;
use crate::client::*;
use crate::reads::follow_rtt_between;
use crate::report::*;
use crate::*;

/// A `redis-server` for the Redis dimensions: a free loopback port, a temp
/// folder, every write on disk before it is acknowledged. Killed on drop.
pub(crate) struct RedisServer {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) _dir: tempfile::TempDir,
}

impl RedisServer {
    pub(crate) fn start() -> Res<RedisServer> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server (scripts/install-redis.sh installs it): {e}"))?;
        let redis = RedisServer {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("redis-server did not come up".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(redis)
    }

    pub(crate) fn backend(&self, ns: &str) -> String {
        format!("redis://127.0.0.1:{}/0?ns={ns}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 16 clients appending through `nodes` servers on one Redis.
pub(crate) fn redis_append(bin: &Path, nodes: usize) -> Res<Outcome> {
    let redis = RedisServer::start()?;
    let backend = redis.backend("bench");
    let servers = (0..nodes)
        .map(|_| Server::start_with(bin, &["--backend", &backend]))
        .collect::<Res<Vec<_>>>()?;
    let mut pids: Vec<u32> = servers.iter().map(Server::pid).collect();
    pids.push(redis.child.id());
    let refs: Vec<&Server> = servers.iter().collect();
    let Hammered {
        latencies,
        cpu_used,
    } = hammer_spread(&refs, &pids, 16, |conn, client, seq| {
        append_one(conn, client, seq).map(drop)
    })?;
    drop(servers);
    let rate = latencies.len() as f64 / APPEND_WINDOW.as_secs_f64();
    let cpu_per_append = cpu_used.as_secs_f64() * 1e6 / latencies.len().max(1) as f64;
    Ok(Outcome::Measured {
        keys: vec![
            ("appends_per_s", format!("{rate:.0}")),
            ("nodes", nodes.to_string()),
            ("clients", "16".into()),
            ("p50_ms", ms(percentile(&latencies, 0.50))),
            ("p99_ms", ms(percentile(&latencies, 0.99))),
            ("cpu_us_per_append", format!("{cpu_per_append:.0}")),
        ],
        headline: format!("{rate:.0} appends/s"),
        met: true,
        target: "report",
    })
}

/// Append on one node, follow on another, both on one Redis.
pub(crate) fn redis_follow_rtt(bin: &Path) -> Res<Outcome> {
    let redis = RedisServer::start()?;
    let backend = redis.backend("bench");
    let writer = Server::start_with(bin, &["--backend", &backend])?;
    let reader = Server::start_with(bin, &["--backend", &backend])?;
    let (rtts, keys) = follow_rtt_between(&writer, &reader)?;
    Ok(Outcome::Measured {
        keys,
        headline: format!(
            "p50 {} ms, p99 {} ms",
            ms(percentile(&rtts, 0.50)),
            ms(percentile(&rtts, 0.99))
        ),
        met: true,
        target: "report",
    })
}
