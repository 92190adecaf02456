//! Links the `xs` binary as a position-dependent executable.
//!
//! Every `xs append`, `xs cat`, … is a fresh process, so start-up is part
//! of every command's latency. A position-independent `xs` carries about
//! 28,000 relative relocations (Nushell's tables and vtables) that the
//! dynamic loader applies at each start, writing to ~100 pages that must
//! then be copied: a fifth of a one-shot command's time. Linked at a fixed
//! address the linker resolves them once. Only the binary: libraries and
//! proc-macros stay position-independent. The price: the binary's own code
//! is not placed at a random address (ASLR); its libraries still are.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    // glibc Linux only: musl targets link static-pie their own way.
    if var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
