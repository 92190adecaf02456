//! The embedded Nushell engine: Nushell with its standard commands and std
//! library (`base.rs`), plus the xs builtins, which win where a name
//! clashes.
//!
//! One `Engine` is built per use (an `/eval` request, a processor) by
//! cloning the base state, so scripts never see each other's
//! definitions. Every engine carries an interrupt flag: setting it stops a
//! running script at its next check (long loops, `.cat --follow`,
//! `sleep`, `^prog`), which is how `term` and shutdown stop processors
//! and how a script's bounds (`bounds.rs`) stop it. Beside the flag the
//! engine keeps why it was set, so the error can say so.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use nu_protocol::ast::Block;
use nu_protocol::debugger::WithoutDebug;
use nu_protocol::engine::{Command, EngineState, Stack, StateWorkingSet};
use nu_protocol::{PipelineData, ShellError, Signals, Span, Value};

use super::commands;
use crate::store::Store;
use nu_protocol::engine::VirtualPath;

/// A script that could not be parsed or run: the Nushell error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError(pub String);

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a script was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `term`, a replacement, shutdown, or a client whose answer failed.
    Stopped,
    /// It ran longer than its timeout.
    Timeout,
    /// Its client closed the connection.
    Disconnected,
}

/// An engine's interrupt flag (what Nushell checks) and the reason it was
/// set, shared with whoever may stop the script.
#[derive(Clone, Debug)]
pub struct Interrupt {
    flag: Arc<AtomicBool>,
    reason: Arc<AtomicU8>,
}

impl Interrupt {
    fn new() -> Interrupt {
        Interrupt {
            flag: Arc::new(AtomicBool::new(false)),
            reason: Arc::new(AtomicU8::new(0)),
        }
    }

    /// Stops the script at its next check; the first reason given stays.
    pub fn stop(&self, reason: StopReason) {
        let code = match reason {
            StopReason::Stopped => 1,
            StopReason::Timeout => 2,
            StopReason::Disconnected => 3,
        };
        let _ = self
            .reason
            .compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed);
        self.flag.store(true, Ordering::Relaxed);
    }

    /// Sets the flag again (a `try` in the script clears it when it
    /// catches the interruption), keeping the reason.
    pub fn renew(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    /// Why the script was stopped through `stop`, if it was.
    pub fn reason(&self) -> Option<StopReason> {
        match self.reason.load(Ordering::Relaxed) {
            1 => Some(StopReason::Stopped),
            2 => Some(StopReason::Timeout),
            3 => Some(StopReason::Disconnected),
            _ => None,
        }
    }

    /// Clears the flag and the reason, for the next run of a script.
    pub fn clear(&self) {
        self.reason.store(0, Ordering::Relaxed);
        self.flag.store(false, Ordering::Relaxed);
    }

    /// The flag itself (what Nushell and the memory meter set).
    pub fn flag(&self) -> &Arc<AtomicBool> {
        &self.flag
    }

    /// The reason, as the memory meter reads it (0: not stopped).
    pub fn reason_code(&self) -> &Arc<AtomicU8> {
        &self.reason
    }
}

/// A Nushell engine bound to a store.
#[derive(Clone)]
pub struct Engine {
    state: EngineState,
    interrupt: Interrupt,
}

impl Engine {
    /// Nushell and the store builtins (`.cat`, `.append`, …).
    pub fn new(store: &Store) -> Engine {
        Engine::with_builtins(commands::all(store))
    }

    /// Nushell and the given builtins.
    pub fn with_builtins(decls: Vec<Box<dyn Command>>) -> Engine {
        let mut state = super::base::base().clone();
        let delta = {
            let mut working_set = StateWorkingSet::new(&state);
            for decl in decls {
                working_set.add_decl(decl);
            }
            working_set.render()
        };
        if let Err(e) = state.merge_delta(delta) {
            // Only duplicate or malformed declarations fail here: a bug.
            eprintln!("xs: registering builtins failed: {e:?}");
        }
        let interrupt = Interrupt::new();
        state.set_signals(Signals::new(interrupt.flag.clone()));
        Engine { state, interrupt }
    }

    /// A copy with its own interrupt flag, for one script.
    pub fn fork(&self) -> Engine {
        let mut state = self.state.clone();
        let interrupt = Interrupt::new();
        state.set_signals(Signals::new(interrupt.flag.clone()));
        Engine { state, interrupt }
    }

    /// The flag that interrupts this engine's scripts.
    pub fn interrupt_handle(&self) -> Arc<AtomicBool> {
        self.interrupt.flag.clone()
    }

    /// The flag with its reason.
    pub fn interrupter(&self) -> &Interrupt {
        &self.interrupt
    }

    /// Stops the running script at its next interrupt check.
    pub fn interrupt(&self) {
        self.interrupt.stop(StopReason::Stopped);
    }

    /// Sets an environment variable for every later script of this engine.
    pub fn set_env(&mut self, name: &str, value: Value) {
        self.state.add_env_var(name.to_string(), value);
    }

    /// Makes a module usable as `use a/b` for the name `a.b`: a virtual
    /// folder `a/b` holding `mod.nu`.
    pub fn add_module(&mut self, name: &str, source: &str) -> Result<(), ScriptError> {
        let dir = name.replace('.', "/");
        let file = format!("{dir}/mod.nu");
        let mut working_set = StateWorkingSet::new(&self.state);
        let file_id = working_set.add_file(&file, source.as_bytes());
        let file_path = working_set.add_virtual_path(file, VirtualPath::File(file_id));
        let _folder = working_set.add_virtual_path(dir, VirtualPath::Dir(vec![file_path]));
        let delta = working_set.render();
        self.state
            .merge_delta(delta)
            .map_err(|e| ScriptError(self.render_shell_error(&e)))
    }

    /// Parses `source` (a script, or a module's definitions) into this
    /// engine; its definitions stay for later evaluations.
    pub fn parse(&mut self, name: &str, source: &str) -> Result<Arc<Block>, ScriptError> {
        let mut working_set = StateWorkingSet::new(&self.state);
        let block = nu_parser::parse(&mut working_set, Some(name), source.as_bytes(), false);
        if let Some(error) = working_set.parse_errors.first() {
            let text = nu_protocol::format_cli_error(None, &working_set, error, None);
            return Err(ScriptError(text));
        }
        if let Some(error) = working_set.compile_errors.first() {
            let text = nu_protocol::format_cli_error(None, &working_set, error, None);
            return Err(ScriptError(text));
        }
        let delta = working_set.render();
        self.state
            .merge_delta(delta)
            .map_err(|e| ScriptError(self.render_shell_error(&e)))?;
        Ok(block)
    }

    /// Runs a parsed block with `input`.
    pub fn eval(&self, block: &Block, input: PipelineData) -> Result<PipelineData, ShellError> {
        let mut stack = Stack::new();
        nu_engine::eval_block_with_early_return::<WithoutDebug>(
            &self.state,
            &mut stack,
            block,
            input,
        )
        .map(|data| data.body)
    }

    /// Parses and runs a script in one go.
    pub fn run(&mut self, name: &str, source: &str) -> Result<PipelineData, ScriptError> {
        let block = self.parse(name, source)?;
        self.eval(&block, PipelineData::empty())
            .map_err(|e| ScriptError(self.render_shell_error(&e)))
    }

    /// Calls a closure value with positional arguments.
    pub fn call_closure(
        &self,
        closure: &nu_protocol::engine::Closure,
        args: Vec<Value>,
        input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        nu_engine::ClosureEvalOnce::new(&self.state, &Stack::new(), closure.clone())
            .add_args(args)?
            .run_with_input(input)
    }

    /// The default value of a closure's positional parameter, if it has one.
    pub fn closure_default(
        &self,
        closure: &nu_protocol::engine::Closure,
        index: usize,
    ) -> Option<Value> {
        let signature = &self.state.get_block(closure.block_id).signature;
        let required = signature.required_positional.len();
        index
            .checked_sub(required)
            .and_then(|at| signature.optional_positional.get(at))
            .and_then(|param| param.default_value.clone())
    }

    /// How many positional parameters a closure declares.
    pub fn closure_arity(&self, closure: &nu_protocol::engine::Closure) -> usize {
        let block = self.state.get_block(closure.block_id);
        block.signature.required_positional.len() + block.signature.optional_positional.len()
    }

    /// A shell error as Nushell prints it, source excerpt included.
    pub fn render_shell_error(&self, error: &ShellError) -> String {
        let working_set = StateWorkingSet::new(&self.state);
        nu_protocol::format_cli_error(None, &working_set, error, None)
    }

    /// The signals of this engine, for streams it creates.
    pub fn signals(&self) -> &Signals {
        self.state.signals()
    }
}

/// The engine `/eval` forks from, made when the first script needs it,
/// not while the server starts.
#[derive(Clone)]
pub struct LazyEngine {
    store: Store,
    engine: Arc<OnceLock<Engine>>,
}

impl LazyEngine {
    pub fn new(store: &Store) -> LazyEngine {
        LazyEngine {
            store: store.clone(),
            engine: Default::default(),
        }
    }

    /// The engine, made now if it is not yet.
    pub fn get(&self) -> &Engine {
        self.engine.get_or_init(|| Engine::new(&self.store))
    }
}

/// Collects a pipeline into one value (streams become lists).
pub fn collect(data: PipelineData) -> Result<Value, ShellError> {
    data.into_value(Span::unknown())
}
