//! `xs serve <dir>`: open the store, listen, run until SIGINT/SIGTERM.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::api::auth::Credentials;
use crate::api::gateway::{self, Gateway, GatewayOptions};
use crate::api::routes::Context;
use crate::api::server::{self, Limits, Listener, Ready};
use crate::api::write::WriteLimits;
use crate::store::head::EphemeralLimits;
use crate::store::read::{Follow, ReadEvent, ReadOptions, Reader};
use crate::store::redis::RedisAddress;
use crate::store::{Draft, FsyncPolicy, RawFrame, Store, StoreError, StoreOptions, Ttl};
use crate::sys::signals::ShutdownSignals;

const USAGE: &str = "usage: xs serve <dir> [--fsync always|interval:<ms>|never] [--expose <addr>] \
[--auth-file <file>] [--http <addr>] [--http-timeout <ms>] [--http-ttl <ttl>] [--max-payload <bytes>] \
[--ephemeral-frames <n>] [--ephemeral-bytes <bytes>] [--backend redis://host:port/db?ns=<name>] \
[--redis-replicas <n>] [--ttl-sweep <ms>] [--retain <pattern>=<rule>[,<rule>]]... [--eval-timeout <secs>] [--eval-memory <bytes>] \
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

/// The longest the server waits for services to stop at shutdown: they
/// are stopped together, each within its own grace (5 s by default).
#[cfg(feature = "nushell")]
const SHUTDOWN_WAIT: Duration = Duration::from_secs(35);

/// What `xs serve` was asked to do.
struct ServeArgs {
    dir: PathBuf,
    fsync: FsyncPolicy,
    expose: Option<String>,
    auth_file: Option<PathBuf>,
    http: Option<HttpArgs>,
    max_payload: u64,
    ephemeral: EphemeralLimits,
    backend: Option<RedisAddress>,
    redis_replicas: u32,
    ttl_sweep: Option<Duration>,
    /// `--retain`, in order.
    retain: Vec<crate::store::retain::RetainRule>,
    /// `--max-connections`; by default from the descriptor limit.
    max_connections: Option<usize>,
    /// `--idle-timeout`; `None`: never.
    idle_timeout: Option<Duration>,
    /// `--ui`: where the viewer page is served, as given.
    ui: Option<String>,
    /// Without Nushell there are no scripts to bound.
    #[cfg_attr(not(feature = "nushell"), allow(dead_code))]
    scripts: ScriptLimits,
    /// `--plugin`, in order.
    #[cfg_attr(not(feature = "nushell-plugins"), allow(dead_code))]
    plugins: Vec<PathBuf>,
}

/// `--eval-timeout` and `--eval-memory` (0: none).
struct ScriptLimits {
    timeout_secs: u64,
    memory: u64,
}

/// The gateway flags, as given.
struct HttpArgs {
    addr: String,
    timeout: Duration,
    ttl: Ttl,
}

/// An `--expose` target.
enum Expose {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

fn usage_error(text: impl std::fmt::Display) -> i32 {
    eprintln!("error: {text}");
    eprintln!("{USAGE}");
    2
}

fn parse_args(args: Vec<OsString>) -> Result<Option<ServeArgs>, String> {
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
    let mut retain = Vec::new();
    let mut scripts = ScriptLimits {
        timeout_secs: 30,
        memory: 512 << 20,
    };
    let mut max_connections = None;
    let mut ui = None;
    let mut plugins = Vec::new();
    let mut idle_timeout = Some(Duration::from_secs(server::DEFAULT_IDLE_TIMEOUT_SECS));
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
            Long("retain") => retain.push(crate::store::retain::RetainRule::parse(&string(
                &mut parser,
            )?)?),
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
        Some(addr) => Some(HttpArgs {
            addr,
            timeout: http_timeout.unwrap_or(Duration::from_millis(gateway::DEFAULT_TIMEOUT_MS)),
            ttl: http_ttl.unwrap_or(Ttl::Ephemeral),
        }),
        None if http_timeout.is_some() || http_ttl.is_some() => {
            return Err("--http-timeout and --http-ttl need --http <addr>".into())
        }
        None => None,
    };
    Ok(Some(ServeArgs {
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

/// An `--expose` (or `--ui`: `flag` names it in errors) address.
fn parse_expose(flag: &str, addr: &str) -> Result<Expose, String> {
    if addr.starts_with('/') || addr.starts_with("./") || addr.starts_with("../") {
        return Ok(Expose::Unix(PathBuf::from(addr)));
    }
    if addr.starts_with("iroh://") || addr.starts_with("https://") {
        return Err(format!(
            "{flag} {addr}: only TCP and Unix addresses are supported"
        ));
    }
    let bare = addr.strip_prefix("http://").unwrap_or(addr);
    let full = if bare.starts_with(':') {
        format!("127.0.0.1{bare}")
    } else {
        bare.to_string()
    };
    full.to_socket_addrs()
        .map_err(|e| format!("{flag} {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{flag} {addr}: no address"))
        .map(Expose::Tcp)
}

/// A TCP listener (`flag`: `--expose` or `--ui`) beyond loopback needs
/// credentials.
fn check_reach(
    flag: &str,
    addr: SocketAddr,
    credentials: Option<&Credentials>,
) -> Result<(), String> {
    if !addr.ip().is_loopback() && credentials.is_none() {
        return Err(format!(
            "{flag} {addr} is not a loopback address: give --auth-file <file> with a user:password line"
        ));
    }
    Ok(())
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
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn run(args: ServeArgs) -> Result<(), String> {
    let expose = args
        .expose
        .as_deref()
        .map(|addr| parse_expose("--expose", addr))
        .transpose()?;
    // A browser reaches the viewer over TCP only.
    let ui = match args.ui.as_deref().map(|addr| parse_expose("--ui", addr)) {
        Some(Ok(Expose::Tcp(addr))) => Some(addr),
        Some(Ok(Expose::Unix(_))) => {
            return Err(format!(
                "--ui {}: the viewer needs a TCP address (:port or host:port)",
                args.ui.as_deref().unwrap_or_default()
            ))
        }
        Some(Err(e)) => return Err(e),
        None => None,
    };
    let credentials = args
        .auth_file
        .as_deref()
        .map(Credentials::from_file)
        .transpose()?;
    let http_addr = args
        .http
        .as_ref()
        .map(|http| gateway::parse_addr(&http.addr))
        .transpose()?;
    if let Some(addr) = ui {
        check_reach("--ui", addr, credentials.as_ref())?;
    }
    match &expose {
        Some(Expose::Tcp(addr)) => check_reach("--expose", *addr, credentials.as_ref())?,
        // Only a TCP listener checks credentials: refuse rather than
        // leave them silently unused.
        _ if credentials.is_some() && ui.is_none() => {
            return Err("--auth-file applies to a TCP --expose address".into())
        }
        _ => {}
    }
    // Each connection holds a descriptor: the soft limit goes up to the
    // hard one before anything is opened, and sets the default caps.
    let fd_limit = crate::sys::fs::raise_fd_limit();
    let listener_count = 1
        + usize::from(expose.is_some())
        + usize::from(args.http.is_some())
        + usize::from(ui.is_some());
    let limits = Limits {
        max_connections: args
            .max_connections
            .unwrap_or_else(|| server::default_max_connections(fd_limit.now, listener_count)),
        idle_timeout: args.idle_timeout,
    };
    // Listeners open before `xs.start` is written (a client may connect at
    // once), but requests wait at this gate until it is.
    let ready = Ready::default();
    // `$NOTIFY_SOCKET` leaves the environment before any thread starts.
    let notifier = crate::service_manager::Notifier::from_env();
    let mut activated = crate::service_manager::Activated::from_env();
    // Signals are taken by the main thread alone (sigwait below): block
    // them before any thread starts, so every thread inherits the mask.
    let signals = ShutdownSignals::block();
    #[cfg(feature = "nushell")]
    crate::nu::bounds::set_limits(crate::nu::bounds::Limits {
        timeout_secs: args.scripts.timeout_secs,
        memory: args.scripts.memory,
    });
    // Each plugin starts once, now, so a missing or broken one stops the
    // server before it serves anything.
    #[cfg(feature = "nushell-plugins")]
    if !args.plugins.is_empty() {
        crate::nu::load_plugins(&args.plugins)?;
    }

    let options = StoreOptions {
        fsync: args.fsync,
        ephemeral: args.ephemeral,
        redis: args.backend.clone(),
        redis_replicas: args.redis_replicas,
        ttl_sweep: args.ttl_sweep,
        retain: args.retain.clone(),
    };
    let store = Store::open(&args.dir, options).map_err(|e| match e {
        StoreError::Locked(_) => locked_message(&args.dir),
        other => format!("cannot open store {}: {other}", args.dir.display()),
    })?;
    let processes = crate::processor::ps::ProcessTable::default();
    let context = Context {
        store: store.clone(),
        limits: WriteLimits {
            max_payload: args.max_payload,
        },
        #[cfg(feature = "nushell")]
        engine: crate::nu::LazyEngine::new(&store),
        processes: processes.clone(),
    };
    let socket = args.dir.join("sock");
    // A socket the service manager bound is its to remove, not ours.
    let api_activated = activated.take_api();
    let socket_ours = api_activated.is_none();
    let main_listener = Arc::new(match api_activated {
        Some(fd) => Listener::unix_from(fd.into(), &socket, limits)?,
        None => Listener::unix(&socket, limits)?,
    });
    server::spawn(main_listener.clone(), context.clone(), ready.clone())?;
    let mut listeners = vec![main_listener];
    if let Some(expose) = &expose {
        let listener = match expose {
            Expose::Tcp(addr) => match activated.take("expose") {
                Some(fd) => Listener::tcp_from(fd.into(), credentials.clone(), limits)?,
                None => Listener::tcp(*addr, credentials.clone(), limits)?,
            },
            Expose::Unix(path) => Listener::unix(path, limits)?,
        };
        let listener = Arc::new(listener);
        server::spawn(listener.clone(), context.clone(), ready.clone())?;
        listeners.push(listener);
    }
    if let Some(addr) = ui {
        let listener = Arc::new(Listener::ui(addr, credentials.clone(), limits)?);
        server::spawn(listener.clone(), context.clone(), ready.clone())?;
        if let Some(bound) = listener.ui_addr() {
            eprintln!("xs: viewer on http://{bound}/");
        }
        listeners.push(listener);
    }
    let gateway = match (&args.http, http_addr) {
        (Some(http), Some(addr)) => {
            let options = GatewayOptions {
                addr,
                timeout: http.timeout,
                ttl: http.ttl,
                max_payload: args.max_payload,
            };
            let bound = activated.take("http").map(std::net::TcpListener::from);
            let gateway = Gateway::start(store.clone(), options, bound, limits, ready.clone())?;
            eprintln!("xs: HTTP gateway on http://{}", gateway.addr());
            Some(gateway)
        }
        _ => None,
    };
    let unused = activated.unused();
    if !unused.is_empty() {
        eprintln!(
            "xs: passed sockets not used (name them sock, expose or http): {}",
            unused.join(", ")
        );
    }
    start_logger(store.clone());
    stop_when_broken(store.clone());
    let start_meta = args
        .expose
        .as_ref()
        .map(|addr| serde_json::json!({ "expose": addr }));
    system_frame(&store, "xs.start", start_meta)?;
    // A store is started when its first read can see `xs.start`.
    ready.open();
    notifier.ready();
    let watched = store.clone();
    notifier.keep_watchdog(move |within| watched.writer_answers(within));
    // Processors start after `xs.start`, so what they emit at boot follows it.
    #[cfg(feature = "nushell")]
    let processors = crate::processor::start(store.clone(), processes)?;

    signals.wait();

    notifier.stopping();
    let _ = system_frame(&store, "xs.stopping", None);
    #[cfg(feature = "nushell")]
    processors.shut_down(SHUTDOWN_WAIT);
    #[cfg(feature = "nushell-plugins")]
    crate::nu::stop_plugins();
    for listener in &listeners {
        listener.unblock();
    }
    if let Some(gateway) = &gateway {
        gateway.stop();
    }
    store.close();
    // Followers write what they have left (`xs.stopping`) and end their
    // streams before the process does.
    store.head().wait_readers_done(Duration::from_secs(2));
    if socket_ours {
        let _ = std::fs::remove_file(&socket);
    }
    if let Some(Expose::Unix(path)) = &expose {
        let _ = std::fs::remove_file(path);
    }
    match store.broken().and_then(|broken| broken.reason()) {
        Some(reason) => Err(format!("xs: stopped: {reason}")),
        None => Ok(()),
    }
}

/// A store that can take no more writes stops the server, with the
/// reason, rather than leave it serving half (see `store::local::Broken`).
fn stop_when_broken(store: Store) {
    if store.broken().is_none() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("broken-store".into())
        .spawn(move || {
            if let Some(broken) = store.broken() {
                broken.wait();
                ShutdownSignals::raise();
            }
        });
    if let Err(e) = spawned {
        eprintln!("xs: cannot watch the store for failures: {e}");
    }
}

fn system_frame(store: &Store, topic: &str, meta: Option<serde_json::Value>) -> Result<(), String> {
    store
        .append(Draft::new(topic).meta(meta))
        .map(|_| ())
        .map_err(|e| format!("cannot append {topic}: {e}"))
}

/// Appends the logger's line for `frame` to `lines`.
fn log_line(lines: &mut String, frame: &RawFrame) {
    let id = frame.id.to_string();
    let parsed;
    let topic = match frame.quick_topic() {
        Some(topic) => topic,
        None => {
            parsed = frame.parse().map(|f| f.topic).unwrap_or_default();
            &parsed
        }
    };
    let _ = writeln!(
        lines,
        "{} {:>5} {topic}",
        server::time_of_day(frame.id.timestamp()),
        &id[id.len() - 5..],
    );
}

fn locked_message(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        "store locked: {dir} (already running)\n\
         try: curl --unix-socket {dir}/sock http://localhost/\n\
         or:  with-env {{XS_ADDR: \"{dir}/sock\"}} {{ .cat }}"
    )
}

/// How often at most the frame logger writes.
const LOG_EVERY: Duration = Duration::from_millis(10);

/// One stderr line per new frame: time, the id's last 5 characters, topic.
fn start_logger(store: Store) {
    let options = ReadOptions {
        follow: Follow::On,
        new: true,
        ..ReadOptions::default()
    };
    let spawned = std::thread::Builder::new()
        .name("logger".into())
        .spawn(move || {
            let mut reader = Reader::new(store, options);
            let mut lines = String::new();
            while let Ok(event) = reader.next_event(Duration::from_secs(3600)) {
                match event {
                    ReadEvent::Live(frame) => log_line(&mut lines, &frame),
                    ReadEvent::End => break,
                    _ => {}
                }
                // One write for all the frames read together (stderr is
                // unbuffered; a line per write cost a syscall per frame).
                if reader.queued() == 0 && !lines.is_empty() {
                    let _ = std::io::Write::write_all(&mut std::io::stderr(), lines.as_bytes());
                    lines.clear();
                    // A log for people: a line may wait a few milliseconds,
                    // and the logger wakes at most LOG_EVERY instead of once
                    // per batch (a wake-up per append was 10% of the CPU).
                    std::thread::sleep(LOG_EVERY);
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("xs: cannot start the frame logger: {e}");
    }
}
