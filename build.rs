//! Links the `xs` binary as a position-dependent executable.
//!
//! Every `xs append`, `xs cat`, … is a fresh process, so start-up is part
//! of every command's latency. A position-independent `xs` carries about
//! 28,000 relative relocations (Nushell's tables and vtables) that the
//! dynamic loader applies at each start, writing to ~100 pages that must
//! then be copied: a fifth of a one-shot command's time. Linked at a fixed
//! address the linker resolves them once. Only the binary: libraries and
//! proc-macros stay position-independent.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
