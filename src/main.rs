//! The `xs` binary: arguments to a command, nothing else.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(xs::run(args));
}
