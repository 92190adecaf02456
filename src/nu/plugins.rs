//! Nushell plugins: `xs serve --plugin <path>` (cross.stream 0.15's flag).
//!
//! A plugin is a program (`nu_plugin_*`) that speaks Nushell's plugin
//! protocol on its stdin and stdout. Each one given is started once when
//! the server starts, asked for its commands, and those commands are put
//! in the base state (`base.rs`), so every script (eval, actors, services,
//! actions, views, gateway handlers) has them. The process is Nushell's
//! `PersistentPlugin`: shared by every engine and kept running (its idle
//! stop is off), and started again on next use after a crash (only the
//! scripts calling it meanwhile fail, with an error naming the plugin). It reads its stdin until the
//! server closes it: at shutdown (`stop`), or when the server dies, so it
//! never outlives the server.

use std::path::PathBuf;

use nu_plugin_engine::{add_plugin_to_working_set, GetPlugin, PluginDeclaration};
use nu_protocol::engine::{EngineState, Stack, StateWorkingSet};
use nu_protocol::{PluginGcConfig, PluginIdentity, RegisteredPlugin, ShellError};

/// Adds each plugin's commands to `state`; an error names the plugin.
pub fn register(state: &mut EngineState, paths: &[PathBuf]) -> Result<(), String> {
    for path in paths {
        let failed = |what: String| format!("--plugin {}: {what}", path.display());
        let absolute = std::fs::canonicalize(path).map_err(|e| failed(e.to_string()))?;
        let identity = PluginIdentity::new(&absolute, None)
            .map_err(|_| failed("a plugin's file name starts with nu_plugin_".into()))?;
        let delta = {
            let mut working_set = StateWorkingSet::new(state);
            let plugin = add_plugin_to_working_set(&mut working_set, &identity)
                .map_err(|e| failed(describe(&e)))?;
            // Started once and kept: Nushell's default stops a plugin idle
            // for 10 s, which would lose what a stateful one holds
            // (dataframes, caches) between scripts.
            plugin.set_gc_config(&PluginGcConfig {
                enabled: false,
                stop_after: 0,
            });
            let mut stack = Stack::new();
            let interface = plugin
                .clone()
                .get_plugin(Some((working_set.permanent_state, &mut stack)))
                .map_err(|e| failed(describe(&e)))?;
            let signatures = interface
                .get_signature()
                .map_err(|e| failed(describe(&e)))?;
            if let Ok(metadata) = interface.get_metadata() {
                plugin.set_metadata(Some(metadata));
            }
            for signature in signatures {
                working_set.add_decl(Box::new(PluginDeclaration::new(plugin.clone(), signature)));
            }
            working_set.render()
        };
        state.merge_delta(delta).map_err(|e| failed(describe(&e)))?;
    }
    Ok(())
}

/// Stops every plugin's process.
pub fn stop(state: &EngineState) {
    for plugin in state.plugins() {
        if let Err(e) = plugin.stop() {
            eprintln!(
                "xs: stopping plugin {}: {}",
                plugin.identity().name(),
                describe(&e)
            );
        }
    }
}

/// A Nushell error on one line, with its detail when it has one.
fn describe(error: &ShellError) -> String {
    use nu_protocol::shell_error::generic::GenericError;
    match error {
        ShellError::Generic(GenericError { error, msg, .. }) => format!("{error}: {msg}"),
        other => other.to_string(),
    }
}
