//! `xs.nu` in the real Nushell: the client module that `xs nu` prints,
//! loaded into the official `nu` binary (scripts/install-nushell.sh puts
//! it in .tools/bin), its commands run against a live server. Also
//! `xs nu --install` / `--clean`.
//!
//! Without a `nu` these tests fail, on purpose: the module is only ever
//! checked here.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{nu_binary, Server, XS};
use serde_json::Value;

/// How long one nu script may run.
const NU_TIMEOUT: Duration = Duration::from_secs(120);

/// PATH with the `xs` under test first, so the module's `^xs` runs it.
fn path_with_xs() -> std::ffi::OsString {
    let xs_dir = Path::new(XS).parent().expect("xs dir").to_path_buf();
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(xs_dir).chain(std::env::split_paths(&rest))).expect("PATH")
}

/// A Nushell single-quoted string literal (the test paths have no quote).
fn nu_quote(path: &Path) -> String {
    let text = path.to_str().expect("utf-8 path");
    assert!(!text.contains('\''), "{text}");
    format!("'{text}'")
}

/// Runs `cmd`, killing it after `timeout`; stdout and stderr are read as
/// it goes so a chatty child never blocks.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// A copy of the module (as `xs nu` prints it) in a temp folder, and the
/// `nu` that loads it.
struct Nu {
    tmp: tempfile::TempDir,
    bin: PathBuf,
    module: PathBuf,
}

impl Nu {
    fn new() -> Nu {
        let bin = nu_binary();
        let tmp = tempfile::tempdir().expect("tempdir");
        let printed = Command::new(XS).arg("nu").output().expect("xs nu");
        assert!(printed.status.success(), "xs nu failed: {printed:?}");
        let module = tmp.path().join("xs.nu");
        fs::write(&module, &printed.stdout).expect("write module");
        Nu { tmp, bin, module }
    }

    /// A scratch folder that lives as long as this `Nu`.
    fn scratch(&self) -> &Path {
        self.tmp.path()
    }

    /// Runs `body` with the module loaded and XS_ADDR at `addr`.
    fn run(&self, addr: &Path, body: &str) -> Output {
        let script = format!(
            "use {} *\n$env.XS_ADDR = {}\n{body}\n",
            nu_quote(&self.module),
            nu_quote(addr)
        );
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-n", "-c", &script])
            .env("PATH", path_with_xs())
            .current_dir(self.scratch());
        run_with_timeout(cmd, NU_TIMEOUT)
    }

    /// Runs `body` and returns its value (as JSON); the script must succeed.
    fn eval(&self, addr: &Path, body: &str) -> Value {
        let output = self.run(addr, &format!("do {{\n{body}\n}} | to json --raw"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "nu script failed ({}):\n{body}\nstdout: {stdout}\nstderr: {stderr}",
            output.status
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout:?}\nstderr: {stderr}"))
    }
}

/// `xs <args>` on the binary under test.
fn xs(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(XS)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xs");
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    child.wait_with_output().expect("xs")
}

/// Every stored frame, by `xs cat`.
fn frames(server: &Server) -> Vec<Value> {
    let sock = server.sock();
    let out = xs(&["cat", sock.to_str().unwrap()], None);
    assert!(out.status.success(), "xs cat: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).expect("frame JSON"))
        .collect()
}

/// A payload's bytes, by `xs cas`.
fn content(server: &Server, hash: &str) -> Vec<u8> {
    let sock = server.sock();
    let out = xs(&["cas", sock.to_str().unwrap(), hash], None);
    assert!(out.status.success(), "xs cas {hash}: {out:?}");
    out.stdout
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect()
}

#[test]
fn xs_nu_prints_the_module() {
    let out = xs(&["nu"], None);
    assert!(out.status.success());
    let source =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/nu/xs.nu")).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), source);
    let help = xs(&["nu", "--help"], None);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).starts_with("usage: xs nu"));
}

#[test]
fn append_cat_cas_get_and_last() {
    let server = Server::start(&[]);
    let nu = Nu::new();
    let got = nu.eval(
        &server.sock(),
        r#"
        let first = "the content" | .append test-topic
        let cat_cas = .cat --last 1 | first | .cas
        let get_topic = .get $first.id | get topic
        let last_kind = .last | describe
        let last_cas = .last test-topic | .cas
        "two" | .append test-topic
        "three" | .append test-topic
        {
          first: $first
          cat_cas: $cat_cas
          get_topic: $get_topic
          last_kind: $last_kind
          last_cas: $last_cas
          last3_kind: (.last 3 | describe)
          last3_len: (.last 3 | length)
          topic3_kind: (.last test-topic 3 | describe)
          topic3_len: (.last test-topic 3 | length)
          topic3_topics: (.last test-topic 3 | get topic)
          count_first_len: (.last 3 test-topic | length)
          missing_last: (.last no.such.topic)
          missing_get: (.get 0000000000000000000000000)
          no_payload: (.append empty.topic | get hash)
          no_payload_cas: (.last empty.topic | .cas)
          record_payload: ({a: 1} | .append rec.topic | .cas | from json)
          binary_kind: (0x[ff fe 00 01] | .append bin.topic | .cas | describe)
          stamp_kind: (.cat --with-timestamp --last 1 | first | get timestamp | describe)
          append_stamp_kind: ("x" | .append stamp.topic --with-timestamp | get timestamp | describe)
          cat_columns: (.cat --last 1 | first | columns)
          detail_columns: (.cat --detail --last 1 | first | columns)
          ttl: ("e" | .append ttl.topic --ttl "last:3" | get ttl)
        }
        "#,
    );
    assert_eq!(got["cat_cas"], "the content");
    assert_eq!(got["get_topic"], "test-topic");
    assert!(
        got["last_kind"].as_str().unwrap().starts_with("record"),
        "{got}"
    );
    assert_eq!(got["last_cas"], "the content");
    assert!(got["last3_kind"].as_str().unwrap().starts_with("table"));
    assert_eq!(got["last3_len"], 3);
    assert!(got["topic3_kind"].as_str().unwrap().starts_with("table"));
    assert_eq!(got["topic3_len"], 3);
    assert_eq!(
        strings(&got["topic3_topics"]),
        ["test-topic", "test-topic", "test-topic"]
    );
    assert_eq!(got["count_first_len"], 3);
    assert_eq!(got["missing_last"], Value::Null);
    assert_eq!(got["missing_get"], Value::Null);
    assert_eq!(got["no_payload"], Value::Null);
    assert_eq!(got["no_payload_cas"], Value::Null);
    assert_eq!(got["record_payload"], serde_json::json!({"a": 1}));
    assert_eq!(got["binary_kind"], "binary");
    assert_eq!(got["stamp_kind"], "datetime");
    assert_eq!(got["append_stamp_kind"], "datetime");
    assert_eq!(
        strings(&got["cat_columns"]),
        ["topic", "id", "hash", "meta"]
    );
    assert_eq!(
        strings(&got["detail_columns"]),
        ["topic", "id", "hash", "meta", "ttl"]
    );
    assert_eq!(got["ttl"], "last:3");

    // What the module wrote is what the server holds.
    let id = got["first"]["id"].as_str().unwrap();
    let stored = frames(&server);
    let frame = stored.iter().find(|f| f["id"] == id).expect("stored");
    assert_eq!(frame["topic"], "test-topic");
    assert_eq!(
        content(&server, frame["hash"].as_str().unwrap()),
        b"the content"
    );
}

#[test]
fn id_unpack_then_pack_round_trips() {
    let server = Server::start(&[]);
    let nu = Nu::new();
    let got = nu.eval(
        &server.sock(),
        r#"
        let pinned = ["03gmmrhqljv8bnulus79wipck" "0000000000000000000000000" "f5lxx1zz5pnorynqglhzmsp33"]
        let fresh = 1..200 | each { .id }
        let all = $pinned | append $fresh
        let unpacked = "03gmmrhqljv8bnulus79wipck" | .id unpack
        {
          count: ($all | length)
          distinct: ($fresh | uniq | length)
          bad: ($all | where {|id| ($id | .id unpack | .id pack) != $id })
          by_arg: (.id pack (.id unpack "03gmmrhqljv8bnulus79wipck"))
          columns: ($unpacked | columns)
          when_kind: ($unpacked.when | describe)
          when_ms: (($unpacked.when | into int) // 1_000_000)
          ts_ms: $unpacked.ts_ms
        }
        "#,
    );
    assert_eq!(got["count"], 203);
    assert_eq!(got["distinct"], 200);
    assert_eq!(
        got["bad"],
        serde_json::json!([]),
        "ids that did not round-trip"
    );
    assert_eq!(got["by_arg"], "03gmmrhqljv8bnulus79wipck");
    assert_eq!(
        strings(&got["columns"]),
        ["ts_ms", "when", "counter_hi", "counter_lo", "node"]
    );
    assert_eq!(got["when_kind"], "datetime");
    assert_eq!(got["when_ms"], got["ts_ms"]);
}

#[test]
fn meta_topics_and_remove() {
    let server = Server::start(&[]);
    let nu = Nu::new();
    let got = nu.eval(
        &server.sock(),
        r#"
        "m" | .append meta.topic --meta {key: value}
        "1" | .append filt.one
        "2" | .append filt.two
        "3" | .append filt.three
        "4" | .append other
        let gone = "bye" | .append gone.topic
        let gone_too = "bye" | .append gone.topic
        .remove $gone.id
        .rm $gone_too.id
        {
          meta_key: (.last meta.topic | get meta.key)
          cat_meta_key: (.cat -T meta.topic | first | get meta.key)
          by_text: (.cat -T "filt.one,filt.two" | get topic)
          by_list: (.cat -T [filt.one filt.two] | get topic)
          by_long: (.cat --topic [filt.two] | get topic)
          wildcard: (.cat -T "filt.*" | get topic)
          limit: (.cat -T "filt.*" --limit 2 | length)
          removed: (.get $gone.id)
          removed_too: (.get $gone_too.id)
          left: (.cat -T gone.topic | length)
        }
        "#,
    );
    assert_eq!(got["meta_key"], "value");
    assert_eq!(got["cat_meta_key"], "value");
    assert_eq!(strings(&got["by_text"]), ["filt.one", "filt.two"]);
    assert_eq!(strings(&got["by_list"]), ["filt.one", "filt.two"]);
    assert_eq!(strings(&got["by_long"]), ["filt.two"]);
    assert_eq!(
        strings(&got["wildcard"]),
        ["filt.one", "filt.two", "filt.three"]
    );
    assert_eq!(got["limit"], 2);
    assert_eq!(got["removed"], Value::Null);
    assert_eq!(got["removed_too"], Value::Null);
    assert_eq!(got["left"], 0);
}

#[test]
fn ack_nack_and_groups_settle_a_consumer_groups_frames() {
    use std::io::BufRead;
    let server = Server::start(&[]);
    let sock = server.sock();
    let sock = sock.to_str().expect("utf-8 path");
    for job in ["one", "two"] {
        assert!(xs(&["append", sock, "job"], Some(job.as_bytes()))
            .status
            .success());
    }
    // A consumer takes both, then goes away holding them.
    let mut consumer = Command::new(XS)
        .args(["consume", sock, "workers", "-T", "job", "--start", "first"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn xs consume");
    let mut lines = std::io::BufReader::new(consumer.stdout.take().expect("stdout")).lines();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let line = lines.next().expect("a frame").expect("read");
        let frame: Value = serde_json::from_str(&line).expect("frame JSON");
        ids.push(frame["id"].as_str().expect("id").to_string());
    }
    consumer.kill().expect("kill");
    let _ = consumer.wait();
    let got = Nu::new().eval(
        &server.sock(),
        &format!(
            r#"{{
              acked: (.ack workers {a})
              again: (.ack workers {a})
              nacked: (.nack workers {b} | get nacked)
              groups: (.groups | select group topics)
              deleted: (.groups --delete workers; .groups | length)
              redelete: (try {{ .groups --delete workers; "deleted" }} catch {{|e| $e.msg }})
            }}"#,
            a = ids[0],
            b = ids[1]
        ),
    );
    assert_eq!(strings(&got["acked"]["acked"]), [ids[0].as_str()]);
    assert_eq!(strings(&got["again"]["unknown"]), [ids[0].as_str()]);
    assert_eq!(strings(&got["nacked"]), [ids[1].as_str()]);
    assert_eq!(
        got["groups"],
        serde_json::json!([{"group": "workers", "topics": "job"}])
    );
    assert_eq!(got["deleted"], 0);
    assert_eq!(
        got["redelete"],
        "xs groups: command error: no consumer group workers"
    );
}

#[test]
fn follows_stream_and_last_follows() {
    let server = Server::start(&[]);
    let nu = Nu::new();
    let got = nu.eval(
        &server.sock(),
        r#"
        "a" | .append follow.topic
        {
          follow: (.cat -f --last 1 | first 2 | get topic)
          pulse: (.cat -n --pulse 20 | first 2 | get topic)
          last_follow: (.last follow.topic -f | first 2 | get topic)
        }
        "#,
    );
    assert_eq!(strings(&got["follow"]), ["follow.topic", "xs.threshold"]);
    assert_eq!(strings(&got["pulse"]), ["xs.pulse", "xs.pulse"]);
    assert_eq!(
        strings(&got["last_follow"]),
        ["follow.topic", "xs.threshold"]
    );
}

#[test]
fn cas_post_and_eval() {
    let server = Server::start(&[]);
    let nu = Nu::new();
    let got = nu.eval(
        &server.sock(),
        r#"
        let hash = "posted" | .cas-post
        {
          hash: $hash
          back: (.cas $hash)
          eval_c: (.eval -c "1 + 2" | str trim)
          eval_piped: ("'piped'" | .eval | str trim)
        }
        "#,
    );
    let hash = got["hash"].as_str().unwrap();
    assert!(hash.starts_with("sha256-"), "{got}");
    assert_eq!(got["back"], "posted");
    assert_eq!(content(&server, hash), b"posted");
    assert_eq!(got["eval_c"], "3");
    assert_eq!(got["eval_piped"], "piped");
}

/// Appends a mix of frames through the module: text, binary, a record,
/// no payload, meta, two frames sharing one payload.
const MIXED_FRAMES: &str = r#"
    "hello" | .append note --meta {author: ann}
    "hello" | .append note
    0x[00 ff 10 80] | .append blob
    {k: [1 2 3]} | .append doc
    .append marker
    "bye" | .append note --ttl "last:5"
"#;

/// Every frame of `from` is in `to`, byte for byte, with its content.
fn assert_copied(from: &Server, to: &Server) {
    let source = frames(from);
    let target: BTreeMap<String, Value> = frames(to)
        .into_iter()
        .map(|f| (f["id"].as_str().unwrap().to_string(), f))
        .collect();
    assert!(source.len() >= 7, "{source:?}");
    for frame in &source {
        let id = frame["id"].as_str().unwrap();
        assert_eq!(target.get(id), Some(frame), "frame {id} not copied as is");
        if let Some(hash) = frame["hash"].as_str() {
            assert_eq!(content(from, hash), content(to, hash), "content {hash}");
        }
    }
}

#[test]
fn export_then_import_round_trips() {
    let source = Server::start(&[]);
    let nu = Nu::new();
    nu.eval(&source.sock(), &format!("{MIXED_FRAMES}\nnull"));
    let dump = nu.scratch().join("dump");
    nu.eval(
        &source.sock(),
        &format!(".export {}\nnull", nu_quote(&dump)),
    );

    // The layout: frames.jsonl as xs cat prints it, cas/<base64 of hash>.
    let listed = fs::read_to_string(dump.join("frames.jsonl")).unwrap();
    let stored = frames(&source);
    let listed: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed, stored);
    let mut hashes: Vec<String> = stored
        .iter()
        .filter_map(|f| f["hash"].as_str().map(String::from))
        .collect();
    hashes.sort();
    hashes.dedup();
    let mut names: Vec<String> = fs::read_dir(dump.join("cas"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut decoded: Vec<String> = names
        .iter()
        .map(|n| {
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(n).unwrap()).unwrap()
        })
        .collect();
    decoded.sort();
    assert_eq!(decoded, hashes);
    for hash in &hashes {
        let name = base64::engine::general_purpose::STANDARD.encode(hash);
        assert_eq!(
            fs::read(dump.join("cas").join(name)).unwrap(),
            content(&source, hash)
        );
    }

    // It refuses a folder that exists.
    let again = nu.run(&source.sock(), &format!(".export {}", nu_quote(&dump)));
    assert!(!again.status.success(), "a second export must refuse");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{again:?}"
    );

    let target = Server::start(&[]);
    nu.eval(
        &target.sock(),
        &format!(".import {}\nnull", nu_quote(&dump)),
    );
    assert_copied(&source, &target);
}

#[test]
fn import_checks_content_against_its_name() {
    let server = Server::start(&[]);
    let nu = Nu::new();
    let dump = nu.scratch().join("forged");
    fs::create_dir_all(dump.join("cas")).unwrap();
    fs::write(dump.join("frames.jsonl"), "").unwrap();
    let real = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    let name = base64::engine::general_purpose::STANDARD.encode(real);
    fs::write(dump.join("cas").join(name), "not the empty string").unwrap();
    let out = nu.run(&server.sock(), &format!(".import {}", nu_quote(&dump)));
    assert!(!out.status.success(), "a forged payload must fail: {out:?}");
    // Nushell wraps long error lines (at `/` too): join them back.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let joined: String = stderr
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '|')
        .collect();
    assert!(
        joined.contains("hashesto") && joined.contains(&format!("not{real}")),
        "{stderr}"
    );
}

/// An empty payload (cross.stream's Nushell `.append ""` makes one) has
/// a hash but nothing the server would store: its frame still imports,
/// and `.cas` gives the empty string.
#[test]
fn empty_payloads_survive_import() {
    let server = Server::start(&[]);
    let nu = Nu::new();
    let dump = nu.scratch().join("with-empty");
    fs::create_dir_all(dump.join("cas")).unwrap();
    let empty = "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    let name = base64::engine::general_purpose::STANDARD.encode(empty);
    fs::write(dump.join("cas").join(&name), "").unwrap();
    let frame = serde_json::json!({
        "topic": "empty.payload",
        "id": "03hb89ae4v4cb8qif76irham8",
        "hash": empty,
        "meta": null,
        "ttl": "forever",
    });
    fs::write(dump.join("frames.jsonl"), format!("{frame}\n")).unwrap();
    let got = nu.eval(
        &server.sock(),
        &format!(
            ".import {}\n{{frame: (.get 03hb89ae4v4cb8qif76irham8), content: (.last empty.payload | .cas)}}",
            nu_quote(&dump)
        ),
    );
    assert_eq!(got["frame"]["hash"], empty);
    assert_eq!(got["content"], "");

    // And it exports again, as an empty file.
    let again = nu.scratch().join("again");
    nu.eval(
        &server.sock(),
        &format!(".export {}\nnull", nu_quote(&again)),
    );
    assert_eq!(fs::read(again.join("cas").join(name)).unwrap(), b"");
}

/// The module and the CLI read each other's dumps.
#[test]
fn module_and_cli_dumps_interchange() {
    let source = Server::start(&[]);
    let nu = Nu::new();
    nu.eval(&source.sock(), &format!("{MIXED_FRAMES}\nnull"));

    let by_cli = nu.scratch().join("by-cli");
    let out = xs(
        &[
            "export",
            source.sock().to_str().unwrap(),
            by_cli.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "xs export: {out:?}");
    let target = Server::start(&[]);
    nu.eval(
        &target.sock(),
        &format!(".import {}\nnull", nu_quote(&by_cli)),
    );
    assert_copied(&source, &target);

    let by_module = nu.scratch().join("by-module");
    nu.eval(
        &source.sock(),
        &format!(".export {}\nnull", nu_quote(&by_module)),
    );
    let target = Server::start(&[]);
    let out = xs(
        &[
            "import",
            target.sock().to_str().unwrap(),
            by_module.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "xs import <folder>: {out:?}");
    assert_copied(&source, &target);
}

#[test]
fn tmp_spawn_runs_a_throwaway_store() {
    let nu = Nu::new();
    // XS_ADDR points at nothing: .tmp-spawn must bring its own store.
    let nowhere = nu.scratch().join("nowhere");
    let got = nu.eval(
        &nowhere,
        r#"
        let inside = .tmp-spawn {
          "tmp" | .append t
          "x" | .append t
          # A follower left behind must not outlive the store.
          .cat -f | first 1 | ignore
          {addr: (xs-addr), content: (.last t | .cas), count: (.cat -T t | length)}
        }
        {inside: $inside, addr_after: (xs-addr), dir_left: ($inside.addr | path dirname | path exists)}
        "#,
    );
    assert_eq!(got["inside"]["content"], "x");
    assert_eq!(got["inside"]["count"], 2);
    assert_ne!(got["inside"]["addr"], got["addr_after"]);
    assert_eq!(got["dir_left"], false);
    let addr = got["inside"]["addr"].as_str().unwrap();
    let still = xs(&["cat", addr], None);
    assert!(!still.status.success(), "the temp server is still up");
}

/// `xs nu` with a HOME, config and data dirs of its own.
fn xs_nu(args: &[&str], home: &Path) -> Output {
    let mut cmd = Command::new(XS);
    cmd.arg("nu")
        .args(args)
        .env("HOME", home)
        .env("PATH", path_with_xs())
        .env_remove("NU_LIB_DIRS")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_DATA_DIRS");
    run_with_timeout(cmd, NU_TIMEOUT)
}

#[test]
fn install_and_clean_with_explicit_paths() {
    let nu = Nu::new();
    let home = nu.scratch().join("home");
    let lib = nu.scratch().join("lib dir");
    let autoload = nu.scratch().join("autoload");
    let (lib_s, auto_s) = (lib.to_str().unwrap(), autoload.to_str().unwrap());

    // Nobody to confirm, and no --yes: nothing is written.
    let refused = xs_nu(
        &["--install", "--lib-path", lib_s, "--autoload-path", auto_s],
        &home,
    );
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(!lib.exists() && !autoload.exists());

    // One path alone is a usage error.
    for args in [
        &["--install", "--yes", "--lib-path", lib_s][..],
        &["--install", "--yes", "--autoload-path", auto_s],
    ] {
        let out = xs_nu(args, &home);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }

    let out = xs_nu(
        &[
            "--install",
            "--lib-path",
            lib_s,
            "--autoload-path",
            auto_s,
            "--yes",
        ],
        &home,
    );
    assert!(out.status.success(), "install: {out:?}");
    let module = lib.join("xs.nu");
    let stub = autoload.join("xs-use.nu");
    assert_eq!(
        fs::read(&module).unwrap(),
        xs(&["nu"], None).stdout,
        "the module as printed"
    );
    let stub_text = fs::read_to_string(&stub).unwrap();
    assert!(stub_text.contains("use "), "{stub_text}");

    // The stub really loads the module in nu.
    let server = Server::start(&[]);
    let mut cmd = Command::new(&nu.bin);
    cmd.args([
        "-n",
        "-c",
        &format!(
            "source {}\n$env.XS_ADDR = {}\n\"via stub\" | .append stub.topic | .cas",
            nu_quote(&stub),
            nu_quote(&server.sock())
        ),
    ])
    .env("PATH", path_with_xs());
    let loaded = run_with_timeout(cmd, NU_TIMEOUT);
    assert!(loaded.status.success(), "{loaded:?}");
    assert_eq!(String::from_utf8_lossy(&loaded.stdout).trim(), "via stub");

    let out = xs_nu(
        &[
            "--clean",
            "--lib-path",
            lib_s,
            "--autoload-path",
            auto_s,
            "--yes",
        ],
        &home,
    );
    assert!(out.status.success(), "clean: {out:?}");
    assert!(!module.exists() && !stub.exists());
    // Only the files: the dirs stay.
    assert!(lib.is_dir() && autoload.is_dir());
}

#[test]
fn install_finds_nushells_own_dirs() {
    let nu = Nu::new();
    let home = nu.scratch().join("home");
    fs::create_dir_all(&home).unwrap();
    // `xs nu --install` asks the nu on PATH for its vendor autoload dirs.
    let nu_dir = nu.bin.parent().unwrap().to_path_buf();
    let mut cmd = Command::new(XS);
    let path = std::env::join_paths(
        [nu_dir, Path::new(XS).parent().unwrap().to_path_buf()]
            .into_iter()
            .chain(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            )),
    )
    .unwrap();
    cmd.args(["nu", "--install", "--yes"])
        .env("HOME", &home)
        .env("PATH", &path)
        .env_remove("NU_LIB_DIRS")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_DATA_DIRS");
    let out = run_with_timeout(cmd, NU_TIMEOUT);
    assert!(out.status.success(), "install: {out:?}");
    let module = home.join(".config/nushell/scripts/xs.nu");
    let stub = home.join(".local/share/nushell/vendor/autoload/xs-use.nu");
    assert!(module.is_file(), "{out:?}");
    assert_eq!(
        fs::read_to_string(&stub).unwrap().lines().last(),
        Some("use xs.nu *")
    );

    // A lib dir named by NU_LIB_DIRS wins over the config dir.
    let listed = nu.scratch().join("listed");
    let mut cmd = Command::new(XS);
    cmd.args(["nu", "--install", "--yes"])
        .env("HOME", &home)
        .env("PATH", &path)
        .env("NU_LIB_DIRS", &listed)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_DATA_DIRS");
    let out = run_with_timeout(cmd, NU_TIMEOUT);
    assert!(out.status.success(), "install: {out:?}");
    assert!(listed.join("xs.nu").is_file());

    let mut cmd = Command::new(XS);
    cmd.args(["nu", "--clean", "--yes"])
        .env("HOME", &home)
        .env("PATH", &path)
        .env_remove("NU_LIB_DIRS")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_DATA_DIRS");
    let out = run_with_timeout(cmd, NU_TIMEOUT);
    assert!(out.status.success(), "clean: {out:?}");
    assert!(!module.exists() && !stub.exists());
}
