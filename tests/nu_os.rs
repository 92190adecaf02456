//! The filesystem commands a build with `--features nushell-os` adds:
//! `save`, `open` and `ls` inside `xs eval`. The default build has none of
//! them (tests/nu_standard.rs checks the error that says so).

#![cfg(feature = "nushell-os")]

mod common;

use common::Server;

#[test]
fn save_open_and_ls_work_in_scripts() {
    let server = Server::start(&[]);
    let folder = tempfile::tempdir().expect("tempdir");
    let file = folder.path().join("config.json");
    let script = format!(
        "{{name: 'ann', n: 3}} | save '{}'; open '{}' | get n",
        file.display(),
        file.display()
    );
    let r = server.post("/eval", script.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "3");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("saved file")).expect("JSON");
    assert_eq!(saved, serde_json::json!({"name": "ann", "n": 3}));

    let script = format!(
        "ls '{}' | get name | path basename | to json -r",
        folder.path().display()
    );
    let r = server.post("/eval", script.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), r#"["config.json"]"#);
}
