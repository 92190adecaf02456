//! Nushell's format conversions (`to json`, `from json`, `to yaml`, …)
//! under the memory cap.
//!
//! The cap (`nu/memory.rs`) interrupts a script at its next check once it
//! has built more than its share, but a conversion is one native step
//! with no check inside: `to json` of a 100 MB binary builds a node of
//! some 40 bytes per byte before anything can stop it, and `from json`
//! of a long string of small numbers some 30 bytes per byte of text. So
//! each conversion is wrapped: its input is weighed first, and one that
//! would build more than the script may still build fails with the
//! memory-cap error instead of taking the server's memory. Without a cap
//! the wrapper only hands the input on.

use nu_engine::command_prelude::*;

use super::generic;
use crate::nu::memory;

/// The conversions guarded, by name.
pub const CONVERSIONS: &[&str] = &[
    "to json",
    "to nuon",
    "to yaml",
    "to yml",
    "to toml",
    "to xml",
    "to csv",
    "to tsv",
    "to md",
    "to text",
    "to html",
    "to msgpack",
    "to msgpackz",
    "from json",
    "from nuon",
    "from yaml",
    "from yml",
    "from toml",
    "from xml",
    "from csv",
    "from tsv",
    "from ssv",
    "from msgpack",
    "from msgpackz",
    "from ods",
    "from xlsx",
    "from url",
    "from ini",
];

/// The parts of a `Command` a wrapper of Nushell's own (a struct with an
/// `inner: Box<dyn Command>`) shows as its inner command's: everything
/// but `run`.
macro_rules! described_as_inner {
    () => {
        fn name(&self) -> &str {
            self.inner.name()
        }

        fn description(&self) -> &str {
            self.inner.description()
        }

        fn extra_description(&self) -> &str {
            self.inner.extra_description()
        }

        fn signature(&self) -> Signature {
            self.inner.signature()
        }

        fn search_terms(&self) -> Vec<&str> {
            self.inner.search_terms()
        }

        fn examples(&self) -> Vec<Example<'_>> {
            self.inner.examples()
        }
    };
}
pub(super) use described_as_inner;

/// A conversion with its input weighed against the memory cap first.
#[derive(Clone)]
pub struct Guarded {
    inner: Box<dyn Command>,
}

impl Guarded {
    pub fn new(inner: Box<dyn Command>) -> Guarded {
        Guarded { inner }
    }
}

impl Command for Guarded {
    described_as_inner!();

    fn run(
        &self,
        engine_state: &EngineState,
        stack: &mut Stack,
        call: &Call,
        input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let Some(headroom) = memory::headroom() else {
            return self.inner.run(engine_state, stack, call, input);
        };
        let value = input.into_value(call.head)?;
        let parsing = self.inner.name().starts_with("from ");
        if weight(&value, parsing, headroom) > headroom {
            return Err(generic(
                "memory cap",
                format!(
                    "`{}` of this input would build more than the script's memory cap \
                     allows (--eval-memory)",
                    self.inner.name()
                ),
                call.head,
            ));
        }
        let metadata = None;
        self.inner.run(
            engine_state,
            stack,
            call,
            PipelineData::value(value, metadata),
        )
    }
}

/// About what converting `value` builds, in bytes; stops counting past
/// `limit`. Text that is parsed (`from …`) is weighed at about half its
/// worst case (a node of some 60 bytes for every two bytes, `1,`), so a
/// script overshoots its cap at most about twice, as one step of any
/// command may; text that is written out (`to …`) at its copies and
/// escapes.
fn weight(value: &Value, parsing: bool, limit: u64) -> u64 {
    // Per byte of binary: a number node and its text.
    const PER_BINARY_BYTE: u64 = 40;
    let per_text_byte: u64 = if parsing { 16 } else { 4 };
    const PER_NODE: u64 = 64;
    let mut total: u64 = 0;
    let mut todo = vec![value];
    while let Some(value) = todo.pop() {
        total = total.saturating_add(match value {
            Value::Binary { val, .. } => (val.len() as u64).saturating_mul(PER_BINARY_BYTE),
            Value::String { val, .. } => (val.len() as u64).saturating_mul(per_text_byte),
            Value::List { vals, .. } => {
                todo.extend(vals.iter());
                PER_NODE
            }
            Value::Record { val, .. } => {
                for (key, field) in val.iter() {
                    total = total.saturating_add((key.len() as u64).saturating_mul(2));
                    todo.push(field);
                }
                PER_NODE
            }
            _ => PER_NODE,
        });
        if total > limit {
            break;
        }
    }
    total
}

/// `par-each`, run as `each`: Nushell's runs its closure on a pool of
/// threads that the memory cap does not see (and a `--threads` of its own
/// makes a pool that is never freed), so here the items are taken one
/// after another, in order. Same signature, same results.
#[derive(Clone)]
pub struct ParEach {
    inner: Box<dyn Command>,
}

impl ParEach {
    pub fn new(inner: Box<dyn Command>) -> ParEach {
        ParEach { inner }
    }
}

impl Command for ParEach {
    fn name(&self) -> &str {
        "par-each"
    }

    fn description(&self) -> &str {
        "Run a closure on each row of the input list; in xs one row after another, in order."
    }

    fn signature(&self) -> Signature {
        self.inner.signature()
    }

    fn run(
        &self,
        engine_state: &EngineState,
        stack: &mut Stack,
        call: &Call,
        input: PipelineData,
    ) -> Result<PipelineData, ShellError> {
        let Some(each) = engine_state.find_decl(b"each", &[]) else {
            return Err(generic("par-each", "`each` is missing", call.head));
        };
        engine_state
            .get_decl(each)
            .run(engine_state, stack, call, input)
    }
}
