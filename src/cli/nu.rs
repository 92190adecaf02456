//! `xs nu`: the `xs.nu` client module for the user's own Nushell. Prints
//! it, or installs it where Nushell finds it (and removes it again).
//!
//! Install writes two files: the module into a lib dir (on Nushell's
//! `use` search path), and a one-line stub `xs-use.nu` into a vendor
//! autoload dir, which Nushell sources at startup, so the commands are
//! there in every new shell.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::args::{parser, usage, Stop};
use super::output::to_stdout;

/// The module itself.
pub const MODULE: &str = include_str!("../nu/xs.nu");

/// The module's file name in the lib dir.
const MODULE_FILE: &str = "xs.nu";

/// The autoload stub's file name.
const STUB_FILE: &str = "xs-use.nu";

/// What `xs nu` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NuTask {
    Print,
    Install,
    Clean,
}

/// `xs nu`'s command line.
#[derive(Debug, PartialEq, Eq)]
struct NuOptions {
    action: NuTask,
    /// `--lib-path` and `--autoload-path`, always both or neither.
    paths: Option<(PathBuf, PathBuf)>,
    yes: bool,
}

impl NuOptions {
    fn parse(args: Vec<OsString>) -> Result<NuOptions, Stop> {
        use lexopt::prelude::*;
        let mut install = false;
        let mut clean = false;
        let mut yes = false;
        let mut lib = None;
        let mut autoload = None;
        let mut p = parser(args);
        while let Some(arg) = p.next()? {
            match arg {
                Short('h') | Long("help") => return Err(Stop::Help),
                Long("install") => install = true,
                Long("clean") => clean = true,
                Short('y') | Long("yes") => yes = true,
                Long("lib-path") => lib = Some(path_value(&mut p, "--lib-path")?),
                Long("autoload-path") => autoload = Some(path_value(&mut p, "--autoload-path")?),
                _ => return Err(arg.unexpected().into()),
            }
        }
        let action = match (install, clean) {
            (true, true) => return Err(usage("--install and --clean cannot be combined")),
            (true, false) => NuTask::Install,
            (false, true) => NuTask::Clean,
            (false, false) => NuTask::Print,
        };
        let paths = match (lib, autoload) {
            (Some(lib), Some(autoload)) => Some((lib, autoload)),
            (None, None) => None,
            (Some(_), None) => return Err(usage("--lib-path needs --autoload-path too")),
            (None, Some(_)) => return Err(usage("--autoload-path needs --lib-path too")),
        };
        if action == NuTask::Print && paths.is_some() {
            return Err(usage(
                "--lib-path and --autoload-path go with --install or --clean",
            ));
        }
        if action == NuTask::Print && yes {
            return Err(usage("--yes goes with --install or --clean"));
        }
        Ok(NuOptions { action, paths, yes })
    }
}

/// An option's value as a non-empty path.
fn path_value(parser: &mut lexopt::Parser, option: &str) -> Result<PathBuf, Stop> {
    let value = parser.value()?;
    if value.is_empty() {
        return Err(usage(format!("{option} needs a path")));
    }
    Ok(PathBuf::from(value))
}

/// `xs nu [--install | --clean] [--lib-path P --autoload-path P] [--yes]`
pub fn nu(args: Vec<OsString>) -> Result<(), Stop> {
    let options = NuOptions::parse(args)?;
    if options.action == NuTask::Print {
        return to_stdout(MODULE.as_bytes());
    }
    let targets = match options.paths {
        Some((lib, autoload)) => Targets::explicit(lib, autoload),
        None => Targets::found()?,
    };
    let plan = match options.action {
        NuTask::Install => targets.install_plan(),
        _ => targets.clean_plan(),
    };
    if !confirmed(&plan, options.yes)? {
        return Err(Stop::Failed("not confirmed: nothing changed".to_string()));
    }
    match options.action {
        NuTask::Install => targets.install(),
        _ => targets.clean(),
    }
}

/// Where the two files go, and what the stub says.
#[derive(Debug, PartialEq, Eq)]
struct Targets {
    module: PathBuf,
    stub: PathBuf,
    stub_text: String,
}

impl Targets {
    /// The user's own dirs. A lib dir the user named need not be on
    /// Nushell's search path, so the stub names the module by its full
    /// path: a stub that cannot find its module breaks every new shell.
    fn explicit(lib: PathBuf, autoload: PathBuf) -> Targets {
        let lib = absolute(lib);
        let module = lib.join(MODULE_FILE);
        Targets {
            stub_text: stub_by_path(&module),
            module,
            stub: absolute(autoload).join(STUB_FILE),
        }
    }

    /// The dirs Nushell itself looks in: the first of `$NU_LIB_DIRS` or
    /// `<config dir>/nushell/scripts`, and the last vendor autoload dir
    /// that `nu` reports.
    fn found() -> Result<Targets, Stop> {
        let lib = lib_dir(
            std::env::var_os("NU_LIB_DIRS").as_deref(),
            config_dir(
                std::env::var_os("XDG_CONFIG_HOME"),
                std::env::var_os("HOME"),
                cfg!(target_os = "macos"),
            ),
        )
        .ok_or_else(|| {
            Stop::Failed(
                "no Nushell lib dir: set NU_LIB_DIRS or HOME, or give --lib-path and --autoload-path"
                    .to_string(),
            )
        })?;
        let autoload = autoload_dir(&ask_nu_for_autoload_dirs()?).map_err(Stop::Failed)?;
        Ok(Targets {
            module: lib.join(MODULE_FILE),
            stub: autoload.join(STUB_FILE),
            stub_text: STUB.to_string(),
        })
    }

    fn install_plan(&self) -> String {
        format!(
            "This writes\n  {}  (the xs.nu module)\n  {}  (loads it in every new nu)\n",
            self.module.display(),
            self.stub.display()
        )
    }

    fn clean_plan(&self) -> String {
        format!(
            "This removes\n  {}\n  {}\n",
            self.module.display(),
            self.stub.display()
        )
    }

    fn install(&self) -> Result<(), Stop> {
        write_file(&self.module, MODULE)?;
        write_file(&self.stub, &self.stub_text)?;
        let line = format!(
            "installed {}\ninstalled {}\nnew nu shells have the xs commands (.cat, .append, …)\n",
            self.module.display(),
            self.stub.display()
        );
        to_stdout(line.as_bytes())
    }

    fn clean(&self) -> Result<(), Stop> {
        let mut report = String::new();
        for path in [&self.stub, &self.module] {
            match fs::remove_file(path) {
                Ok(()) => report.push_str(&format!("removed {}\n", path.display())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    report.push_str(&format!("not there: {}\n", path.display()))
                }
                Err(e) => return Err(Stop::Failed(format!("removing {}: {e}", path.display()))),
            }
        }
        to_stdout(report.as_bytes())
    }
}

/// The stub for a module in one of Nushell's lib dirs.
const STUB: &str = "# Written by `xs nu --install`; `xs nu --clean` removes it.\nuse xs.nu *\n";

/// The stub for a module at a path of the user's choosing.
fn stub_by_path(module: &Path) -> String {
    format!(
        "# Written by `xs nu --install`; `xs nu --clean` removes it.\nuse {} *\n",
        nu_string(&module.to_string_lossy())
    )
}

/// A Nushell string literal with exactly this text: single quotes, or a
/// raw string when the text has one.
fn nu_string(text: &str) -> String {
    if !text.contains('\'') {
        return format!("'{text}'");
    }
    let mut hashes = "#".to_string();
    while text.contains(&format!("'{hashes}")) {
        hashes.push('#');
    }
    format!("r{hashes}'{text}'{hashes}")
}

/// A relative path made absolute against the current dir.
fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    match std::env::current_dir() {
        Ok(cwd) => cwd.join(path),
        Err(_) => path,
    }
}

/// The lib dir: the first entry of `$NU_LIB_DIRS` (as Nushell hands it
/// to child processes, a `:`-separated list), else
/// `<config dir>/nushell/scripts`.
fn lib_dir(nu_lib_dirs: Option<&OsStr>, config_dir: Option<PathBuf>) -> Option<PathBuf> {
    let listed = nu_lib_dirs
        .and_then(|dirs| std::env::split_paths(dirs).find(|dir| !dir.as_os_str().is_empty()));
    listed.or_else(|| config_dir.map(|dir| dir.join("nushell").join("scripts")))
}

/// The user's config dir as Nushell finds it: `$XDG_CONFIG_HOME` when it
/// is an absolute path, else `~/.config` (`~/Library/Application Support`
/// on macOS).
fn config_dir(xdg: Option<OsString>, home: Option<OsString>, macos: bool) -> Option<PathBuf> {
    if let Some(xdg) = xdg.map(PathBuf::from).filter(|p| p.is_absolute()) {
        return Some(xdg);
    }
    let home = home.map(PathBuf::from).filter(|p| p.is_absolute())?;
    Some(if macos {
        home.join("Library").join("Application Support")
    } else {
        home.join(".config")
    })
}

/// Runs `nu -n -c '$nu.vendor-autoload-dirs | to json'`.
fn ask_nu_for_autoload_dirs() -> Result<String, Stop> {
    let output = Command::new("nu")
        .args(["-n", "-c", "$nu.vendor-autoload-dirs | to json"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            Stop::Failed(format!(
                "could not run nu to find its vendor autoload dir ({e}); \
                 give --lib-path and --autoload-path instead"
            ))
        })?;
    if !output.status.success() {
        return Err(Stop::Failed(format!(
            "nu failed ({}) listing its vendor autoload dirs; give --lib-path and --autoload-path instead",
            output.status
        )));
    }
    String::from_utf8(output.stdout)
        .map_err(|_| Stop::Failed("nu listed its vendor autoload dirs in invalid UTF-8".into()))
}

/// The last of the vendor autoload dirs (the user's own, after the
/// system-wide ones), from nu's JSON list.
fn autoload_dir(json: &str) -> Result<PathBuf, String> {
    let dirs: Vec<String> = serde_json::from_str(json)
        .map_err(|e| format!("nu's vendor autoload dirs are not a JSON list of paths: {e}"))?;
    dirs.into_iter()
        .rev()
        .find(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| {
            "nu reports no vendor autoload dir; give --lib-path and --autoload-path".into()
        })
}

/// Creates the parent dirs and writes the file.
fn write_file(path: &Path, text: &str) -> Result<(), Stop> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| Stop::Failed(format!("creating {}: {e}", parent.display())))?;
    }
    fs::write(path, text).map_err(|e| Stop::Failed(format!("writing {}: {e}", path.display())))
}

/// Shows the plan, then asks `Proceed? (y/N)` when stdin is a terminal.
/// With `--yes` there is no question; without a terminal and without
/// `--yes` nothing is done.
fn confirmed(plan: &str, yes: bool) -> Result<bool, Stop> {
    if yes {
        return Ok(true);
    }
    if !io::stdin().is_terminal() {
        return Err(usage(
            "stdin is not a terminal, so nobody can confirm: add --yes",
        ));
    }
    let mut out = io::stdout().lock();
    write!(out, "{plan}Proceed? (y/N) ")
        .and_then(|()| out.flush())
        .map_err(|e| Stop::Failed(format!("writing the question: {e}")))?;
    drop(out);
    let mut answer = String::new();
    io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Stop::Failed(format!("reading the answer: {e}")))?;
    Ok(is_yes(&answer))
}

/// `y` or `yes`, any case; anything else (an empty line too) is no.
fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> Result<NuOptions, Stop> {
        NuOptions::parse(list.iter().map(OsString::from).collect())
    }

    fn is_usage(result: Result<NuOptions, Stop>) -> bool {
        matches!(result, Err(Stop::Usage(_)))
    }

    #[test]
    fn no_flag_prints() {
        let options = parse(&[]).unwrap();
        assert_eq!(options.action, NuTask::Print);
        assert_eq!(options.paths, None);
        assert!(!options.yes);
    }

    #[test]
    fn install_and_clean_take_both_paths() {
        let options = parse(&["--install", "--lib-path", "a", "--autoload-path", "b"]).unwrap();
        assert_eq!(options.action, NuTask::Install);
        assert_eq!(
            options.paths,
            Some((PathBuf::from("a"), PathBuf::from("b")))
        );
        let options = parse(&["--autoload-path=b", "--clean", "--lib-path=a", "-y"]).unwrap();
        assert_eq!(options.action, NuTask::Clean);
        assert!(options.yes);
        assert_eq!(parse(&["--install", "--yes"]).unwrap().paths, None);
    }

    #[test]
    fn argument_errors_are_usage_errors() {
        for case in [
            &["--install", "--lib-path", "a"][..],
            &["--install", "--autoload-path", "b"],
            &["--clean", "--lib-path", "a"],
            &["--install", "--clean"],
            &["--lib-path", "a", "--autoload-path", "b"],
            &["--yes"],
            &["--install", "--lib-path"],
            &["--install", "--lib-path", "", "--autoload-path", "b"],
            &["--nope"],
            &["extra"],
        ] {
            assert!(is_usage(parse(case)), "{case:?}");
        }
        assert_eq!(parse(&["--help"]), Err(Stop::Help));
    }

    #[test]
    fn lib_dir_prefers_the_first_nu_lib_dir() {
        let config = Some(PathBuf::from("/home/u/.config"));
        assert_eq!(
            lib_dir(Some(OsStr::new("/a/lib:/b/lib")), config.clone()),
            Some(PathBuf::from("/a/lib"))
        );
        assert_eq!(
            lib_dir(Some(OsStr::new(":/b/lib")), config.clone()),
            Some(PathBuf::from("/b/lib"))
        );
        assert_eq!(
            lib_dir(Some(OsStr::new("")), config.clone()),
            Some(PathBuf::from("/home/u/.config/nushell/scripts"))
        );
        assert_eq!(
            lib_dir(None, config),
            Some(PathBuf::from("/home/u/.config/nushell/scripts"))
        );
        assert_eq!(lib_dir(None, None), None);
    }

    #[test]
    fn config_dir_follows_xdg_then_home() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(
            config_dir(os("/xdg"), os("/home/u"), false),
            Some(PathBuf::from("/xdg"))
        );
        assert_eq!(
            config_dir(os("relative"), os("/home/u"), false),
            Some(PathBuf::from("/home/u/.config"))
        );
        assert_eq!(
            config_dir(None, os("/Users/u"), true),
            Some(PathBuf::from("/Users/u/Library/Application Support"))
        );
        assert_eq!(config_dir(None, None, false), None);
        assert_eq!(config_dir(None, os(""), false), None);
    }

    #[test]
    fn autoload_dir_is_the_last_listed() {
        let json = r#"["/usr/share/nushell/vendor/autoload","/usr/local/share/nushell/vendor/autoload","/root/.local/share/nushell/vendor/autoload"]"#;
        assert_eq!(
            autoload_dir(json),
            Ok(PathBuf::from("/root/.local/share/nushell/vendor/autoload"))
        );
        assert_eq!(
            autoload_dir("[\"/only\", \"\"]"),
            Ok(PathBuf::from("/only"))
        );
        assert!(autoload_dir("[]").is_err());
        assert!(autoload_dir("not json").is_err());
        assert!(autoload_dir("{\"a\":1}").is_err());
    }

    #[test]
    fn stubs_name_the_module() {
        assert!(STUB.lines().any(|line| line == "use xs.nu *"));
        let targets = Targets::explicit(PathBuf::from("/lib dir"), PathBuf::from("/auto"));
        assert_eq!(targets.module, PathBuf::from("/lib dir/xs.nu"));
        assert_eq!(targets.stub, PathBuf::from("/auto/xs-use.nu"));
        assert!(targets.stub_text.ends_with("use '/lib dir/xs.nu' *\n"));
        let relative = Targets::explicit(PathBuf::from("lib"), PathBuf::from("auto"));
        assert!(relative.module.is_absolute() && relative.stub.is_absolute());
    }

    #[test]
    fn nu_strings_keep_their_text() {
        assert_eq!(nu_string("/a/b"), "'/a/b'");
        assert_eq!(nu_string("/it's"), "r#'/it's'#");
        assert_eq!(nu_string("/x'#y"), "r##'/x'#y'##");
    }

    #[test]
    fn only_y_or_yes_proceeds() {
        for answer in ["y\n", "Y\n", "yes\n", " YES \n"] {
            assert!(is_yes(answer), "{answer:?}");
        }
        for answer in ["", "\n", "n\n", "no\n", "sure\n", "yy\n"] {
            assert!(!is_yes(answer), "{answer:?}");
        }
    }

    #[test]
    fn the_module_is_embedded() {
        assert!(MODULE.contains("export def .cat"));
        assert!(MODULE.contains("export def .append"));
    }
}
