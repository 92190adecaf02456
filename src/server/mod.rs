//! `xs serve`'s wiring: the listeners, the store, the processors and the
//! gateway are started in order, and stopped in the reverse order on
//! SIGINT/SIGTERM (or when the store breaks). Arguments are parsed in
//! `cli/serve.rs`; the frame logger is `logger.rs`; the address rules of
//! `--expose` and `--ui` are `reach.rs`.

mod logger;
mod reach;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::api::auth::Credentials;
use crate::api::gateway::{self, Gateway, GatewayOptions};
use crate::api::routes::Context;
use crate::api::server::{self as api_server, Limits, Listener, Ready};
use crate::api::write::WriteLimits;
use crate::store::{
    Draft, EphemeralLimits, FsyncPolicy, RedisAddress, RetainRule, Store, StoreError, StoreOptions,
    Ttl,
};
use crate::sys::signals::ShutdownSignals;

/// The longest the server waits for services to stop at shutdown: they
/// are stopped together, each within its own grace (5 s by default).
#[cfg(feature = "nushell")]
const SHUTDOWN_WAIT: Duration = Duration::from_secs(35);

/// What `xs serve` was asked to do (parsed by `cli/serve.rs`).
pub struct Options {
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    pub expose: Option<String>,
    pub auth_file: Option<PathBuf>,
    pub http: Option<HttpOptions>,
    pub max_payload: u64,
    pub ephemeral: EphemeralLimits,
    pub backend: Option<RedisAddress>,
    pub redis_replicas: u32,
    pub ttl_sweep: Option<Duration>,
    /// `--dedup-window`; `None`: idempotency keys are ignored.
    pub dedup_window: Option<Duration>,
    /// `--retain`, in order.
    pub retain: Vec<RetainRule>,
    /// `--max-connections`; by default from the descriptor limit.
    pub max_connections: Option<usize>,
    /// `--idle-timeout`; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// `--ui`: where the viewer page is served, as given.
    pub ui: Option<String>,
    /// Without Nushell there are no scripts to bound.
    #[cfg_attr(not(feature = "nushell"), allow(dead_code))]
    pub scripts: ScriptLimits,
    /// `--plugin`, in order.
    #[cfg_attr(not(feature = "nushell-plugins"), allow(dead_code))]
    pub plugins: Vec<PathBuf>,
}

/// `--eval-timeout` and `--eval-memory` (0: none).
pub struct ScriptLimits {
    pub timeout_secs: u64,
    pub memory: u64,
}

/// The gateway flags, as given.
pub struct HttpOptions {
    pub addr: String,
    pub timeout: Duration,
    pub ttl: Ttl,
}

/// Runs the server until SIGINT/SIGTERM (or a broken store): the
/// listeners, the store, the processors, then the shutdown in order.
pub fn run(args: Options) -> Result<(), String> {
    let expose = args
        .expose
        .as_deref()
        .map(|addr| reach::parse_expose("--expose", addr))
        .transpose()?;
    // A browser reaches the viewer over TCP only.
    let ui = match args
        .ui
        .as_deref()
        .map(|addr| reach::parse_expose("--ui", addr))
    {
        Some(Ok(reach::Expose::Tcp(addr))) => Some(addr),
        Some(Ok(reach::Expose::Unix(_))) => {
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
        reach::check_reach("--ui", addr, credentials.as_ref())?;
    }
    match &expose {
        Some(reach::Expose::Tcp(addr)) => {
            reach::check_reach("--expose", *addr, credentials.as_ref())?
        }
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
            .unwrap_or_else(|| api_server::default_max_connections(fd_limit.now, listener_count)),
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
        dedup_window: args.dedup_window,
        retain: args.retain.clone(),
        control_topic: crate::processor::wakes_dispatcher,
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
    api_server::spawn(main_listener.clone(), context.clone(), ready.clone())?;
    let mut listeners = vec![main_listener];
    if let Some(expose) = &expose {
        let listener = match expose {
            reach::Expose::Tcp(addr) => match activated.take("expose") {
                Some(fd) => Listener::tcp_from(fd.into(), credentials.clone(), limits)?,
                None => Listener::tcp(*addr, credentials.clone(), limits)?,
            },
            reach::Expose::Unix(path) => Listener::unix(path, limits)?,
        };
        let listener = Arc::new(listener);
        api_server::spawn(listener.clone(), context.clone(), ready.clone())?;
        listeners.push(listener);
    }
    if let Some(addr) = ui {
        let listener = Arc::new(Listener::ui(addr, credentials.clone(), limits)?);
        api_server::spawn(listener.clone(), context.clone(), ready.clone())?;
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
    logger::start(store.clone());
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
    if let Some(reach::Expose::Unix(path)) = &expose {
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

fn locked_message(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        "store locked: {dir} (already running)\n\
         try: curl --unix-socket {dir}/sock http://localhost/\n\
         or:  with-env {{XS_ADDR: \"{dir}/sock\"}} {{ .cat }}"
    )
}
