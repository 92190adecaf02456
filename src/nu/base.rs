//! The base engine state every script starts from: Nushell's language
//! core, its standard commands (nu-command, as the build's features
//! choose), the std library, the server's environment, and a config that
//! renders errors as plain text.
//!
//! Building it registers some 400 commands and parses the std library's
//! prelude: several milliseconds and several megabytes, which must not sit
//! on `xs serve`'s start path nor on every script. So it is built once,
//! by the first script that needs it (a processor at boot, or the first
//! `/eval`), and every engine clones it: the clone shares the command
//! table until a script adds to it. A server that runs no script never
//! builds it (an idle store stays small: see docs/benchmarks.md).

use std::sync::OnceLock;

use nu_protocol::engine::EngineState;
use nu_protocol::{Config, Span, UseAnsiColoring, Value};

static BASE: OnceLock<EngineState> = OnceLock::new();

/// The base state, built on first use.
pub fn base() -> &'static EngineState {
    BASE.get_or_init(build)
}

/// Builds the base state now, with the commands of these Nushell plugins
/// (each plugin's process is started to ask for them, and stays, shared
/// by every script); an error names the plugin. `xs serve --plugin` calls
/// this before anything runs a script.
#[cfg(feature = "nushell-plugins")]
pub fn load_plugins(paths: &[std::path::PathBuf]) -> Result<(), String> {
    let mut state = build();
    super::plugins::register(&mut state, paths)?;
    BASE.set(state)
        .map_err(|_| "Nushell was started before its plugins were loaded".to_string())
}

/// Stops the plugins' processes (at shutdown).
#[cfg(feature = "nushell-plugins")]
pub fn stop_plugins() {
    if let Some(state) = BASE.get() {
        super::plugins::stop(state);
    }
}

fn build() -> EngineState {
    // `http …` over TLS: rustls with ring, as official nu builds use.
    #[cfg(feature = "nushell-http")]
    nu_command::tls::CRYPTO_PROVIDER.default();
    let state = nu_cmd_lang::create_default_context();
    let mut state = nu_command::add_shell_command_context(state);
    let guarded = super::commands::guarded(&state);
    let delta = {
        let mut working_set = nu_protocol::engine::StateWorkingSet::new(&state);
        for decl in guarded {
            working_set.add_decl(decl);
        }
        working_set.render()
    };
    if let Err(e) = state.merge_delta(delta) {
        eprintln!("xs: wrapping Nushell's conversions failed: {e:?}");
    }
    add_environment(&mut state);
    // `$nu`: home-dir, temp-dir, os-info and the like. nu finds its
    // folders when it starts; a server has none but the home folder.
    if let Some(home) = std::env::var_os("HOME") {
        state.config_dirs.home_dir = home.into();
    }
    state.generate_nu_constant();
    // Errors go to HTTP bodies, frames, pipes and files: never colour
    // codes or Unicode box drawing, whatever the server's stderr is.
    let config = Config {
        use_ansi_coloring: UseAnsiColoring::False,
        ..Config::default()
    };
    state.set_config(config);
    if let Err(e) = nu_std::load_standard_library(&mut state) {
        // The std library is compiled in; failing to load it is a bug.
        eprintln!("xs: loading the Nushell std library failed: {e:?}");
    }
    state
}

/// The server's environment as `nu` shows it: every variable as a
/// string, but `PATH` as a list of folders (what nu's default
/// ENV_CONVERSIONS do), and `PWD` the server's working folder.
fn add_environment(state: &mut EngineState) {
    let span = Span::unknown();
    for (name, value) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        // `.append` reads it from the script's own environment; one the
        // server inherited must not tag every script's appends.
        if name == "XS_APPEND_META" {
            continue;
        }
        let value = if name == "PATH" {
            let folders = std::env::split_paths(&value)
                .map(|folder| Value::string(folder.to_string_lossy(), span))
                .collect();
            Value::list(folders, span)
        } else {
            Value::string(value.to_string_lossy(), span)
        };
        state.add_env_var(name, value);
    }
    if let Ok(pwd) = std::env::current_dir() {
        state.add_env_var("PWD".into(), Value::string(pwd.to_string_lossy(), span));
    }
}
