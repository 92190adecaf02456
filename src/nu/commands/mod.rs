//! The xs builtins, one file each (reference 6.1), plus the few standard
//! commands xs provides itself: `run-external` and `sleep` (tied to the
//! server's process groups and interrupts), and `print` (which Nushell
//! keeps in its line editor's crate).

mod append;
mod cas;
mod cas_post;
mod cat;
mod get;
mod groups;
mod guard;
mod id;
mod import;
mod kv;
mod last;
mod print;
mod program_end;
mod remove;
mod run_external;
mod sleep;

use nu_protocol::engine::Command;
use nu_protocol::{ShellError, Span};

use crate::store::{Store, StoreError};
use crate::sys::process::ChildGroups;

pub use append::{Append, AppendBuffer, AppendMode};

/// Every builtin, bound to `store`. `.append` writes directly.
pub fn all(store: &Store) -> Vec<Box<dyn Command>> {
    with_append(store, AppendMode::Direct, ChildGroups::default())
}

/// Every builtin, with the given `.append`; programs the script starts are
/// tracked in `groups`.
pub fn with_append(
    store: &Store,
    append: AppendMode,
    groups: ChildGroups,
) -> Vec<Box<dyn Command>> {
    vec![
        Box::new(run_external::RunExternal::new(groups)),
        Box::new(Append::new(store.clone(), append)),
        Box::new(cas::Cas(store.clone())),
        Box::new(cas_post::CasPost(store.clone())),
        Box::new(cat::Cat(store.clone())),
        Box::new(get::Get(store.clone())),
        Box::new(groups::Settle::ack(store.clone())),
        Box::new(groups::Settle::nack(store.clone())),
        Box::new(id::IdNew),
        Box::new(id::IdUnpack),
        Box::new(id::IdPack),
        Box::new(import::Import(store.clone())),
        Box::new(kv::KvGet(store.clone())),
        Box::new(kv::KvSet(store.clone())),
        Box::new(kv::KvDel(store.clone())),
        Box::new(kv::KvLs(store.clone())),
        Box::new(last::Last(store.clone())),
        Box::new(print::Print),
        Box::new(remove::Remove::named(store.clone(), ".remove")),
        Box::new(remove::Remove::named(store.clone(), ".rm")),
        Box::new(sleep::Sleep),
    ]
}

/// Nushell's own commands that xs wraps: the format conversions under the
/// memory cap, `par-each` run in order (`guard.rs`), and the piecewise
/// readers of a stream, for which a program's ending is the stream's end
/// (`program_end.rs`).
pub fn guarded(state: &nu_protocol::engine::EngineState) -> Vec<Box<dyn Command>> {
    let mut wrapped: Vec<Box<dyn Command>> = Vec::new();
    let found = |name: &str| {
        state
            .find_decl(name.as_bytes(), &[])
            .map(|id| state.get_decl(id).clone_box())
    };
    for name in guard::CONVERSIONS {
        if let Some(inner) = found(name) {
            wrapped.push(Box::new(guard::Guarded::new(inner)));
        }
    }
    if let Some(inner) = found("par-each") {
        wrapped.push(Box::new(guard::ParEach::new(inner)));
    }
    for name in program_end::PIECEWISE {
        if let Some(inner) = found(name) {
            wrapped.push(Box::new(program_end::EndsWithProgram::new(inner)));
        }
    }
    wrapped
}

/// A store failure as a Nushell error at `span`.
pub fn store_error(error: StoreError, span: Span) -> ShellError {
    generic("xs store error", error.to_string(), span)
}

/// A value as JSON to keep, or a Nushell error at `span` when the script
/// went over its memory cap building it.
pub fn json_of(value: &nu_protocol::Value, span: Span) -> Result<serde_json::Value, ShellError> {
    crate::nu::value::to_json_checked(value).map_err(|e| generic("memory cap", e, span))
}

/// A plain Nushell error.
pub fn generic(title: &str, message: impl Into<String>, span: Span) -> ShellError {
    ShellError::Generic(nu_protocol::shell_error::generic::GenericError::new(
        title.to_string(),
        message.into(),
        span,
    ))
}
