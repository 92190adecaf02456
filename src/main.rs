//! The `xs` binary: arguments to a command, nothing else.

fn main() {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let code = if args.first().is_some_and(|a| a == "serve") {
        args.remove(0);
        xs::serve::main(args)
    } else if args.first().is_some_and(|a| a == "check") {
        args.remove(0);
        xs::check::main(args)
    } else {
        xs::cli::run(args)
    };
    std::process::exit(code);
}
