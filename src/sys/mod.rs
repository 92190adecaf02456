//! The operating system, behind safe functions: every libc call of the
//! crate lives here and nowhere else.
//!
//! Why a folder of its own: an `unsafe` block is a promise someone has to
//! check, and the checking is easier when the promises sit together, each
//! with its `// SAFETY:` note, each wrapped in a small function named for
//! what it does and returning `io::Result` (or a plain value when the call
//! cannot fail). The rest of the crate then reads as plain Rust: `store`
//! asks for free space, `processor` and `nu` spawn children in process
//! groups, `cli` and `api` watch descriptors, without a raw pointer in
//! sight. Nothing here imports another part of the crate: `sys` is the
//! bottom layer.
//!
//! - `fs`: the store folder lock, the owner check, free space, the
//!   content folder's directory-relative calls and `syncfs`, the open-file
//!   limit.
//! - `process`: the spawner, process groups, the parent-death signal, the
//!   record of live groups.
//! - `signals`: SIGINT/SIGTERM taken synchronously (sigmask, sigwait).
//! - `fd`: descriptor helpers: poll for readable or hung up, duplicate,
//!   close-on-exec, shut a socket down, a regular file's remaining bytes.
//! - `net`: a TCP socket's addresses and state (the gateway's peer check).

pub mod fd;
pub mod fs;
pub mod net;
#[cfg(feature = "nushell")]
pub mod process;
pub mod signals;
