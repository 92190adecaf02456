//! Which backend the servers under test run on.
//!
//! The core black-box suites run twice: as their own test binaries on the
//! local backend, and compiled again into `tests/on_redis.rs`, whose
//! servers get `--backend redis://...` with a namespace of their own. The
//! choice is the test binary's name, so a suite needs no change to run on
//! Redis; what only the local folder has (the fixture store, `--fsync`,
//! `xs check`, payload files) returns early through `local_only(why)`.
//!
//! The Redis: `XS_TEST_REDIS` (e.g. `redis://127.0.0.1:6390/0`, as
//! `.ci/run` starts it), else a `redis-server` from PATH started here on a
//! free loopback port for this test binary, gone when the binary exits.
//! A machine without redis-server gets Debian's on first use
//! (scripts/install-redis.sh), as tests/xs_nu.rs does for Nushell.

use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// True in the test binary that runs the suites on Redis.
pub const ON_REDIS: bool = matches!(env!("CARGO_CRATE_NAME").as_bytes(), b"on_redis");

/// True when the test should stop here: it tests something only the
/// local folder has (`why`), and this run is on Redis.
pub fn local_only(why: &str) -> bool {
    if ON_REDIS {
        eprintln!("local backend only: {why}");
    }
    ON_REDIS
}

/// The extra `xs serve` arguments for a new store: none locally, a fresh
/// namespace on Redis.
pub fn serve_args() -> Vec<String> {
    if !ON_REDIS {
        return Vec::new();
    }
    vec![
        "--backend".into(),
        format!("{}?ns={}", redis_url(), fresh_namespace()),
    ]
}

/// The test Redis's address (without a namespace).
pub fn redis_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("XS_TEST_REDIS") {
        Ok(url) if !url.is_empty() => url,
        _ => start_redis(),
    })
    .clone()
}

fn fresh_namespace() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "t{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A `redis-server` for this test binary's suites, on a free port; it
/// lives until the binary exits.
fn start_redis() -> String {
    static SHARED: OnceLock<super::redis::RedisServer> = OnceLock::new();
    SHARED
        .get_or_init(|| super::redis::RedisServer::start(&["--appendonly", "no"]))
        .base_url()
}

/// Installs redis-server when it is missing (once per test binary).
pub fn ensure_redis_server() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-redis.sh");
        let status = Command::new(script)
            .status()
            .expect("run scripts/install-redis.sh");
        assert!(
            status.success(),
            "scripts/install-redis.sh failed: install redis-server"
        );
    });
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
