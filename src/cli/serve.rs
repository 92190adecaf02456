//! `xs serve <dir>`: its arguments and usage; `server::run` does the rest.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::api::gateway;
use crate::api::server::DEFAULT_IDLE_TIMEOUT_SECS;
use crate::server::{self, HttpOptions, Options, ScriptLimits};
use crate::store::{EphemeralLimits, FsyncPolicy, RedisAddress, RetainRule, Ttl};

const USAGE: &str = "usage: xs serve <dir> [--fsync always|interval:<ms>|never] [--expose <addr>] \
[--auth-file <file>] [--http <addr>] [--http-timeout <ms>] [--http-ttl <ttl>] [--max-payload <bytes>] \
[--ephemeral-frames <n>] [--ephemeral-bytes <bytes>] [--backend redis://host:port/db?ns=<name>] \
[--redis-replicas <n>] [--ttl-sweep <ms>] [--dedup-window <duration>] [--retain <pattern>=<rule>[,<rule>]]... \
[--eval-timeout <secs>] [--eval-memory <bytes>] \
[--max-connections <n>] [--idle-timeout <secs>] [--ui <addr>] [--plugin <path>]...";

const HELP: &str = "Run the store in <dir>: its API listens on <dir>/sock.

Options:
  --fsync <policy>          always (default): an append is answered once on disk;
                            interval:<ms>: synced at most <ms> after the answer;
                            never: left to the OS
  --expose <addr>           also serve the API on :port, host:port or a Unix path
  --auth-file <file>        one user:password line (password 12+ characters,
                            file mode 600); required for a non-loopback
                            --expose or --ui; a TCP --expose and --ui then
                            need Basic auth
  --http <addr>             also run the HTTP gateway on :port (loopback) or
                            host:port: requests become http.request frames,
                            http.response frames answer them
  --http-timeout <ms>       how long a gateway request waits for its answer
                            before a 504 (default 30000)
  --http-ttl <ttl>          ttl of http.request frames: ephemeral (default),
                            forever, time:<ms> or last:<n>
  --max-payload <bytes>     largest payload accepted (default 1073741824)
  --ephemeral-frames <n>    ephemeral frames kept in memory (default 10000)
  --ephemeral-bytes <bytes> memory for ephemeral frames and payloads (default 67108864)
  --backend <url>           keep frames, payloads and k/v in Redis (or Valkey):
                            redis://host:port/db?ns=<name> (ns default: xs);
                            several servers on one Redis share one stream
  --redis-replicas <n>      with --backend: an append is answered once <n>
                            replicas also have it (WAIT)
  --ttl-sweep <ms>          how often expired time:<ms> frames are removed
                            from disk (default 1000); 0: never (reads still
                            skip them)
  --dedup-window <duration> how long an append's xs-idempotency-key is
                            remembered: 500ms, 30s, 2m (default), 1h; 0: keys
                            are ignored
  --retain <pattern>=<rules> keep at most this much of a topic or pattern
                            (log.*, metrics, *): an age (7d, 12h, 30m), a
                            size of frames and payloads (1GiB, 500MB) and/or
                            a frame count (100000), comma-separated; the
                            oldest frames go first, every --ttl-sweep ms;
                            repeatable; `xs retain` shows them
  --eval-timeout <secs>     a script (/eval until its answer starts, an action
                            call) is stopped with an error after this long
                            (default 30; 0: no limit)
  --eval-memory <bytes>     memory one script may build before it is stopped
                            with an error (default 536870912; 0: no limit)
  --max-connections <n>     connections open at once on each listener; beyond,
                            503 and close (default: from the open-file limit)
  --idle-timeout <secs>     close a connection that has not sent a whole
                            request head within <secs>, or that pauses that
                            long inside a request body (408) (default 30,
                            0: never); a follow is never timed out
  --ui <addr>               also serve the live viewer page (and the API it
                            reads) on :port (loopback) or host:port; beyond
                            loopback only with --auth-file, as --expose
  --plugin <path>           a Nushell plugin (nu_plugin_*), repeatable: started
                            once at start, its commands in every script
                            (needs the nushell-plugins build)";

fn usage_error(text: impl std::fmt::Display) -> i32 {
    eprintln!("error: {text}");
    eprintln!("{USAGE}");
    2
}

fn parse_args(args: Vec<OsString>) -> Result<Option<Options>, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut dir = None;
    let mut fsync = FsyncPolicy::Always;
    let mut expose = None;
    let mut auth_file = None;
    let mut http = None;
    let mut http_timeout = None;
    let mut http_ttl = None;
    let mut max_payload: u64 = 1 << 30;
    let mut ephemeral = EphemeralLimits::default();
    let mut fsync_given = false;
    let mut backend = None;
    let mut redis_replicas = None;
    let mut ttl_sweep = Some(crate::store::DEFAULT_TTL_SWEEP);
    let mut dedup_window = Some(crate::store::DEFAULT_DEDUP_WINDOW);
    let mut retain = Vec::new();
    let mut scripts = ScriptLimits {
        timeout_secs: 30,
        memory: 512 << 20,
    };
    let mut max_connections = None;
    let mut ui = None;
    let mut plugins = Vec::new();
    let mut idle_timeout = Some(Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS));
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("fsync") => {
                fsync = FsyncPolicy::parse(&string(&mut parser)?)?;
                fsync_given = true;
            }
            Long("expose") => expose = Some(string(&mut parser)?),
            Long("ui") => ui = Some(string(&mut parser)?),
            Long("auth-file") => auth_file = Some(PathBuf::from(string(&mut parser)?)),
            Long("max-payload") => max_payload = number(&mut parser, "--max-payload")?,
            Long("ephemeral-frames") => {
                ephemeral.max_frames = number(&mut parser, "--ephemeral-frames")? as usize
            }
            Long("ephemeral-bytes") => {
                ephemeral.max_bytes = number(&mut parser, "--ephemeral-bytes")? as usize
            }
            Long("http") => http = Some(string(&mut parser)?),
            Long("http-timeout") => match number(&mut parser, "--http-timeout")? {
                0 => return Err("invalid value '0' for --http-timeout: expected at least 1".into()),
                ms => http_timeout = Some(Duration::from_millis(ms)),
            },
            Long("http-ttl") => {
                let text = string(&mut parser)?;
                let ttl = Ttl::parse(&text)
                    .map_err(|e| format!("invalid value '{text}' for --http-ttl: {e}"))?;
                http_ttl = Some(ttl);
            }
            Long("backend") => backend = Some(RedisAddress::parse(&string(&mut parser)?)?),
            Long("redis-replicas") => {
                let n = number(&mut parser, "--redis-replicas")?;
                let n = u32::try_from(n)
                    .map_err(|_| format!("invalid value '{n}' for --redis-replicas: too large"))?;
                redis_replicas = Some(n);
            }
            Long("ttl-sweep") => match number(&mut parser, "--ttl-sweep")? {
                0 => ttl_sweep = None,
                ms => ttl_sweep = Some(Duration::from_millis(ms)),
            },
            Long("retain") => retain.push(RetainRule::parse(&string(&mut parser)?)?),
            Long("dedup-window") => {
                let text = string(&mut parser)?;
                let ms = match text.as_str() {
                    "0" => 0,
                    _ => crate::cli::when::parse_duration(&text)
                        .unwrap_or_else(|| {
                            Err(format!(
                                "'{text}': expected 0 or a number with ms, s, m, h or d"
                            ))
                        })
                        .map_err(|e| format!("invalid value for --dedup-window: {e}"))?,
                };
                dedup_window = (ms > 0).then(|| Duration::from_millis(ms));
            }
            Long(flag @ ("eval-timeout" | "eval-memory")) if cfg!(not(feature = "nushell")) => {
                return Err(format!(
                    "--{flag}: this xs is built without Nushell (cargo feature nushell), so it runs no scripts"
                ));
            }
            Long("plugin") if cfg!(not(feature = "nushell-plugins")) => {
                return Err(
                    "--plugin: this xs is built without Nushell plugins (cargo feature \
                     nushell-plugins, which brings nushell-os)"
                        .into(),
                );
            }
            Long("plugin") => plugins.push(PathBuf::from(string(&mut parser)?)),
            Long("eval-timeout") => scripts.timeout_secs = number(&mut parser, "--eval-timeout")?,
            Long("eval-memory") => scripts.memory = number(&mut parser, "--eval-memory")?,
            Long("max-connections") => match number(&mut parser, "--max-connections")? {
                0 => {
                    return Err(
                        "invalid value '0' for --max-connections: expected at least 1".into(),
                    )
                }
                n => max_connections = Some(usize::try_from(n).unwrap_or(usize::MAX)),
            },
            Long("idle-timeout") => {
                let secs = number(&mut parser, "--idle-timeout")?;
                idle_timeout = (secs > 0).then(|| Duration::from_secs(secs));
            }
            Value(value) if dir.is_none() => dir = Some(PathBuf::from(value)),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let dir = dir.ok_or("missing <dir>")?;
    if backend.is_some() && fsync_given {
        return Err("--fsync applies to the local backend; on Redis, durability is Redis's appendfsync setting (and --redis-replicas)".into());
    }
    if backend.is_none() && redis_replicas.is_some() {
        return Err("--redis-replicas needs --backend redis://...".into());
    }
    if !retain.is_empty() && ttl_sweep.is_none() {
        return Err("--retain needs sweeping: --ttl-sweep 0 turns it off".into());
    }
    let http = match http {
        Some(addr) => Some(HttpOptions {
            addr,
            timeout: http_timeout.unwrap_or(Duration::from_millis(gateway::DEFAULT_TIMEOUT_MS)),
            ttl: http_ttl.unwrap_or(Ttl::Ephemeral),
        }),
        None if http_timeout.is_some() || http_ttl.is_some() => {
            return Err("--http-timeout and --http-ttl need --http <addr>".into())
        }
        None => None,
    };
    Ok(Some(Options {
        dir,
        fsync,
        expose,
        auth_file,
        http,
        max_payload,
        ephemeral,
        backend,
        redis_replicas: redis_replicas.unwrap_or(0),
        ttl_sweep,
        dedup_window,
        retain,
        scripts,
        max_connections,
        idle_timeout,
        ui,
        plugins,
    }))
}

fn string(parser: &mut lexopt::Parser) -> Result<String, String> {
    parser
        .value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| "argument is not valid UTF-8".to_string())
}

fn number(parser: &mut lexopt::Parser, flag: &str) -> Result<u64, String> {
    let text = string(parser)?;
    text.parse::<u64>()
        .map_err(|_| format!("invalid value '{text}' for {flag}: expected a number"))
}

/// Runs `xs serve`; returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let args = match parse_args(args) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}\n\n{HELP}");
            return 0;
        }
        Err(e) => return usage_error(e),
    };
    match server::run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}
