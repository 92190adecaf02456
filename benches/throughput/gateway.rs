//! `gateway`: `xs serve --http` with an actor answering each
//! `http.request`; 16 keep-alive TCP clients send `GET /c<client>/<seq>`
//! back to back, and each answer must carry its own path.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::client::*;
use crate::processors::run_processor;
use crate::report::*;
use crate::*;

/// The actor answering every gateway request with its path as the body.
pub(crate) const GATEWAY_ACTOR: &str = r#"{topics: ["http.request"], run: {|frame, state| $frame.meta.path | .append http.response --ttl ephemeral --meta {request_id: $frame.id}; {next: $state}}}"#;

/// What one gateway client saw.
#[derive(Default)]
pub(crate) struct GatewayClient {
    /// Latencies of the requests answered right within the counted window.
    pub(crate) latencies: Vec<Duration>,
    /// Wrong answers (status, body) or broken connections, whole run.
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// Whether the connection broke (the client then stopped).
    pub(crate) broken: bool,
}

impl GatewayClient {
    pub(crate) fn error(&mut self, text: String) {
        self.errors += 1;
        self.first_error.get_or_insert(text);
    }
}

/// One gateway request for `path`: `Ok(None)` when answered 200 with the
/// path as the body, `Ok(Some(reason))` for a wrong answer, `Err` when the
/// connection failed.
pub(crate) fn gateway_get(conn: &mut Conn<TcpStream>, path: &str) -> io::Result<Option<String>> {
    let (status, body) = conn.request("GET", path, &[])?;
    if status == 200 && body == path.as_bytes() {
        return Ok(None);
    }
    let body = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    Ok(Some(format!(
        "GET {path} answered {status}: {:?}",
        body.trim()
    )))
}

/// Requests per second through the gateway (`--http`, default settings
/// otherwise) with `GATEWAY_ACTOR` answering; see the header.
pub(crate) fn gateway(bin: &Path) -> Res<Outcome> {
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}")
        .parse()
        .map_err(|e| format!("address: {e}"))?;
    let server = Server::spawn_with(bin, &["--http", &addr.to_string()])?;
    server.wait_ready(START_TIMEOUT)?;
    let mut conn = server.connect()?;
    let run = run_processor(&server, "actor", GATEWAY_ACTOR, |conn| {
        Ok(get_optional(conn, "/last/xs.actor.bench.active")?.is_some())
    })?;

    // The first request through the gateway, retried until it listens.
    let deadline = Instant::now() + START_TIMEOUT;
    let first_started = Instant::now();
    loop {
        let answered = Conn::connect_tcp(addr).and_then(|mut c| gateway_get(&mut c, "/first"));
        match answered {
            Ok(None) => break,
            Ok(Some(wrong)) => return Err(format!("the first request: {wrong}")),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("the gateway on {addr} did not answer: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let first_ms = first_started.elapsed();

    // Connections opened one at a time, each answered once before the next.
    let mut conns = Vec::with_capacity(GATEWAY_CLIENTS);
    for client in 0..GATEWAY_CLIENTS {
        let mut c = Conn::connect_tcp(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = c.stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
        match gateway_get(&mut c, &format!("/c{client}/hello")) {
            Ok(None) => {}
            Ok(Some(wrong)) => return Err(wrong),
            Err(e) => {
                return Err(format!(
                    "gateway connection {} of {GATEWAY_CLIENTS} was not served within \
                     {HANDSHAKE_TIMEOUT:?}: {e}",
                    client + 1
                ))
            }
        }
        let _ = c.stream.set_read_timeout(Some(IO_TIMEOUT));
        conns.push(c);
    }

    let barrier = Arc::new(Barrier::new(GATEWAY_CLIENTS + 1));
    let start = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut handles = Vec::new();
    for (client, mut c) in conns.into_iter().enumerate() {
        let barrier = barrier.clone();
        let start = start.clone();
        handles.push(std::thread::spawn(move || {
            barrier.wait();
            let begin = *start.get().expect("start set before the barrier");
            let from = begin + GATEWAY_WARMUP;
            let until = from + GATEWAY_WINDOW;
            let mut seen = GatewayClient::default();
            for seq in 0u64.. {
                let sent = Instant::now();
                if sent >= until {
                    break;
                }
                let path = format!("/c{client}/{seq}");
                match gateway_get(&mut c, &path) {
                    Ok(None) => {
                        let done = Instant::now();
                        if sent >= from && done <= until {
                            seen.latencies.push(done - sent);
                        }
                    }
                    Ok(Some(wrong)) => seen.error(wrong),
                    Err(e) => {
                        seen.error(format!("GET {path}: {e}"));
                        seen.broken = true;
                        break;
                    }
                }
            }
            seen
        }));
    }
    let begin = Instant::now();
    start.set(begin).expect("set once");
    barrier.wait();
    sleep_until(begin + GATEWAY_WARMUP);
    let cpu_from = cpu_time(server.pid());
    sleep_until(begin + GATEWAY_WARMUP + GATEWAY_WINDOW);
    let cpu_used = cpu_time(server.pid()).saturating_sub(cpu_from);
    let threads = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Threads:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_else(|| "?".into());
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut broken = 0;
    let mut first_error = None;
    for handle in handles {
        let seen = handle
            .join()
            .map_err(|p| format!("client panicked: {}", panic_text(&p)))?;
        latencies.extend(seen.latencies);
        errors += seen.errors;
        broken += u64::from(seen.broken);
        if first_error.is_none() {
            first_error = seen.first_error;
        }
    }
    // The actor must still be running.
    if let Some(frame) = get_optional(&mut conn, "/last/xs.actor.bench.fin.*")? {
        return Err(format!(
            "the actor stopped: {}",
            String::from_utf8_lossy(&frame).trim()
        ));
    }
    drop(conn);
    drop(server);
    latencies.sort();
    let rate = latencies.len() as f64 / GATEWAY_WINDOW.as_secs_f64();
    let cpu_per_request = cpu_used.as_secs_f64() * 1e6 / latencies.len().max(1) as f64;
    let mut keys = vec![
        ("requests_per_s", format!("{rate:.0}")),
        ("requests", latencies.len().to_string()),
        ("clients", GATEWAY_CLIENTS.to_string()),
        ("secs", format!("{:.1}", GATEWAY_WINDOW.as_secs_f64())),
        ("p50_ms", ms(percentile(&latencies, 0.50))),
        ("p99_ms", ms(percentile(&latencies, 0.99))),
        ("max_ms", ms(*latencies.last().unwrap_or(&Duration::ZERO))),
        ("errors", errors.to_string()),
        ("broken", broken.to_string()),
        ("server_cpu_us_per_request", format!("{cpu_per_request:.0}")),
        ("server_threads", threads),
        ("load_ms", run.load_ms.to_string()),
        ("first_ms", ms(first_ms)),
    ];
    if let Some(first_error) = first_error {
        keys.push(("first_error", format!("{first_error:?}")));
    }
    Ok(Outcome::Measured {
        keys,
        headline: format!("{rate:.0} req/s, {errors} errors"),
        met: rate >= 3_000.0 && errors == 0,
        target: ">=3000/s,0 errors",
    })
}
