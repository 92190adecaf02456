//! Nushell plugins: `xs serve --plugin <path>`, in a build with the
//! `nushell-plugins` feature, with a real plugin (nu_plugin_inc at the
//! version of xs's Nushell crates, which scripts/install-nu-plugin.sh
//! builds into .tools/bin on first use). The default build refuses the
//! flag and says why.

mod common;

use std::path::Path;
use std::process::Command;

use common::XS;

#[cfg(feature = "nushell-plugins")]
mod with_plugins {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use super::common::waits::{wait_count, wait_topic};
    use super::common::Server;

    /// A copy of nu_plugin_inc in `folder`, so each test can tell its own
    /// plugin process from another test's.
    fn plugin_in(folder: &Path) -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let built = root.join(".tools/bin/nu_plugin_inc");
        if !built.is_file() {
            let status = std::process::Command::new("bash")
                .arg(root.join("scripts/install-nu-plugin.sh"))
                .status();
            eprintln!("building nu_plugin_inc for the plugin tests: {status:?}");
        }
        assert!(built.is_file(), "no {}", built.display());
        let copy = folder.join("nu_plugin_inc");
        std::fs::copy(&built, &copy).expect("copy the plugin");
        copy
    }

    /// The pids of processes running `program`.
    fn running(program: &Path) -> Vec<u32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if std::fs::read_link(entry.path().join("exe")).is_ok_and(|exe| exe == program) {
                pids.push(pid);
            }
        }
        pids
    }

    fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_plugins_commands_run_in_eval_and_in_an_actor() {
        let folder = tempfile::tempdir().expect("tempdir");
        let plugin = plugin_in(folder.path());
        let server = Server::start(&["--plugin", plugin.to_str().expect("utf-8")]);
        let r = server.post("/eval", b"3 | inc");
        assert_eq!((r.status, r.text()), (200, "4".to_string()));
        let r = server.post("/eval", b"'1.2.3' | inc --minor");
        assert_eq!(r.text(), "1.3.0");
        let r = server.post(
            "/eval",
            b"help commands | where name == inc | get command_type | first",
        );
        assert_eq!(r.text(), "plugin");

        server.append(
            "xs.actor.next.create",
            br#"{run: {|frame, state = null|
                if $frame.topic != "n" { return {next: $state} }
                {out: {n: (.cas $frame.hash | into int | inc)}, next: $state}
            }}"#,
        );
        wait_topic(&server, "xs.actor.next.active");
        server.append("n", b"41");
        let out = wait_count(&server, "next.out", 1);
        assert_eq!(out[0]["meta"]["n"], 42);
    }

    #[test]
    fn a_crashed_plugin_starts_again_and_none_outlives_the_server() {
        let folder = tempfile::tempdir().expect("tempdir");
        let plugin = plugin_in(folder.path());
        let mut server = Server::start(&["--plugin", plugin.to_str().expect("utf-8")]);
        assert_eq!(server.post("/eval", b"1 | inc").text(), "2");
        let pids = running(&plugin);
        assert_eq!(pids.len(), 1, "{pids:?}");
        // SAFETY: signalling a process of this test's own plugin copy.
        unsafe {
            libc::kill(pids[0] as libc::pid_t, libc::SIGKILL);
        }
        eventually("the plugin to die", || running(&plugin).is_empty());
        // The first call after the crash may fail, naming the plugin; the
        // plugin is started again for the next.
        let first = server.post("/eval", b"1 | inc");
        if first.status != 200 {
            assert!(first.text().contains("inc"), "{}", first.text());
        }
        let again = server.post("/eval", b"1 | inc");
        assert_eq!((again.status, again.text()), (200, "2".to_string()));
        assert_eq!(running(&plugin).len(), 1);

        server.stop();
        eventually("the plugin to stop with the server", || {
            running(&plugin).is_empty()
        });
    }

    #[test]
    fn a_missing_or_broken_plugin_stops_the_server_naming_it() {
        let folder = tempfile::tempdir().expect("tempdir");
        let missing = folder.path().join("nu_plugin_missing");
        let broken = folder.path().join("nu_plugin_broken");
        // A program that is no plugin: it speaks no plugin protocol.
        std::fs::copy("/bin/true", &broken).expect("copy /bin/true");
        for plugin in [&missing, &broken] {
            let out = super::serve_with_plugin(&folder.path().join("store"), plugin);
            assert!(!out.status.success(), "{plugin:?} was accepted");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(&plugin.display().to_string()), "{stderr}");
        }
    }
}

/// `xs serve <store> --plugin <plugin>`, run to its end (it stops at
/// once when the plugin cannot be loaded).
fn serve_with_plugin(store: &Path, plugin: &Path) -> std::process::Output {
    Command::new(XS)
        .arg("serve")
        .arg(store)
        .arg("--plugin")
        .arg(plugin)
        .output()
        .expect("run xs serve")
}

#[cfg(not(feature = "nushell-plugins"))]
#[test]
fn the_build_without_plugins_refuses_the_flag_and_says_why() {
    let folder = tempfile::tempdir().expect("tempdir");
    let out = serve_with_plugin(&folder.path().join("store"), Path::new("/bin/nu_plugin_x"));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nushell-plugins"), "{stderr}");
    assert!(!folder.path().join("store").exists(), "the store was made");
}
