//! Actors, services and actions as a user runs them (reference 7, 10.4):
//! each is registered by appending its Nushell script as the payload of
//! `xs.<kind>.<name>.create`, and observed only through the frames it
//! writes. Scripts use the Nushell language core plus the xs builtins.

mod common;

use std::time::{Duration, Instant};

use common::waits::*;
use common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Helpers

/// Appends `script` as `xs.<kind>.<name>.create`; the create frame.
fn create(server: &Server, kind: &str, name: &str, script: &str) -> Value {
    server.append(&format!("xs.{kind}.{name}.create"), script.as_bytes())
}

/// Appends a frame with meta.
fn append_meta(server: &Server, topic: &str, meta: Value, body: &[u8]) -> Value {
    let r = request(
        &server.sock(),
        "POST",
        &format!("/append/{topic}"),
        &[("xs-meta", &b64(meta.to_string().as_bytes()))],
        body,
    );
    assert_eq!(r.status, 200, "append {topic}: {}", r.text());
    r.json()
}

/// A payload's bytes.
fn payload(server: &Server, frame: &Value) -> Vec<u8> {
    let hash = frame["hash"]
        .as_str()
        .unwrap_or_else(|| panic!("no hash: {frame}"));
    let r = server.get(&format!("/cas/{hash}"));
    assert_eq!(r.status, 200);
    r.body
}

fn payload_text(server: &Server, frame: &Value) -> String {
    String::from_utf8(payload(server, frame)).expect("UTF-8 payload")
}

/// A registered processor's `active` frame (for the given create).
fn wait_active(server: &Server, kind: &str, name: &str, create: &Value) -> Value {
    let key = id_key(kind);
    let t = format!("xs.{kind}.{name}.active");
    wait_for(server, &t, |frames| {
        of(frames, &t)
            .into_iter()
            .find(|f| f["meta"][key] == create["id"])
            .cloned()
    })
}

fn id_key(kind: &str) -> &'static str {
    match kind {
        "actor" => "actor_id",
        "service" => "source_id",
        _ => "action_id",
    }
}

/// Creates and waits for `active`.
fn start(server: &Server, kind: &str, name: &str, script: &str) -> Value {
    let create = create(server, kind, name, script);
    wait_active(server, kind, name, &create);
    create
}

fn pause(d: Duration) {
    std::thread::sleep(d);
}

/// An actor that reports the topic of every frame matching `cond`.
fn reporter(cond: &str, extra: &str) -> String {
    format!(
        r#"{{
          run: {{|frame, state = null|
            if {cond} {{ {{out: {{seen: $frame.topic}}, next: $state}} }} else {{ {{next: $state}} }}
          }}
          {extra}
        }}"#
    )
}

fn seen(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["meta"]["seen"].as_str().unwrap_or("?").to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Actors

#[test]
fn actor_scripts_that_cannot_run_are_invalid() {
    let server = Server::start(&[]);
    let cases = [
        ("zero", "{run: {|| 42}}"),
        ("one", "{run: {|frame| $frame}}"),
        (
            "parse",
            "{\n  run: {|frame, state = null|\n    .last index.html | .cas\n  }\n",
        ),
        ("norun", r#"{start: "first"}"#),
        ("notclosure", "{run: 42}"),
        (
            "badstart",
            r#"{run: {|frame, state| null}, start: "not-an-id"}"#,
        ),
        ("notarecord", r#""just a string""#),
    ];
    let creates: Vec<Value> = cases
        .iter()
        .map(|(name, script)| create(&server, "actor", name, script))
        .collect();
    for ((name, _), create) in cases.iter().zip(&creates) {
        let t = format!("xs.actor.{name}.invalid");
        let invalid = wait_topic(&server, &t);
        assert_eq!(invalid["meta"]["actor_id"], create["id"], "{name}");
        let error = invalid["meta"]["error"].as_str().unwrap_or("");
        assert!(!error.is_empty(), "{name}: no error text: {invalid}");
    }
    let frames = all(&server);
    let errors: Vec<String> = cases
        .iter()
        .map(|(name, _)| {
            of(&frames, &format!("xs.actor.{name}.invalid"))[0]["meta"]["error"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(errors[0].contains('2'), "zero params: {}", errors[0]);
    assert!(errors[1].contains('2'), "one param: {}", errors[1]);
    assert!(errors[3].contains("run"), "no run: {}", errors[3]);
    assert!(
        errors[4].contains("run"),
        "run not a closure: {}",
        errors[4]
    );
    for (name, _) in cases {
        assert!(
            of(&frames, &format!("xs.actor.{name}.active")).is_empty(),
            "{name} must not become active"
        );
    }
}

#[test]
fn actor_does_not_react_to_its_own_output() {
    let server = Server::start(&[]);
    start(
        &server,
        "actor",
        "echo",
        "{run: {|frame, state = null| {out: {seen: $frame.topic}, next: $state}}}",
    );
    let trigger = server.append("a-frame", b"");
    let outs = wait_count(&server, "echo.out", 1);
    assert_eq!(outs[0]["meta"]["seen"], "a-frame");
    assert_eq!(outs[0]["meta"]["frame_id"], trigger["id"]);
    pause(QUIET);
    assert_eq!(now_of(&server, "echo.out").len(), 1, "reacted to itself");
    server.append("b-frame", b"");
    wait_count(&server, "echo.out", 2);
    pause(QUIET);
    assert_eq!(
        seen(&now_of(&server, "echo.out")),
        ["a-frame", "b-frame"],
        "reacted to itself"
    );
}

#[test]
fn actor_start_first_sees_history_new_does_not() {
    let server = Server::start(&[]);
    server.append("hist.1", b"");
    server.append("hist.2", b"");
    let cond = r#"($frame.topic starts-with "hist") or $frame.topic == "xs.threshold""#;
    let first = create(
        &server,
        "actor",
        "first",
        &reporter(cond, r#"start: "first""#),
    );
    let fresh = create(&server, "actor", "fresh", &reporter(cond, ""));
    let a = wait_active(&server, "actor", "first", &first);
    let b = wait_active(&server, "actor", "fresh", &fresh);
    assert_eq!(a["meta"]["start"], "first");
    assert_eq!(b["meta"]["start"], "new");
    server.append("hist.3", b"");
    let outs = wait_count(&server, "first.out", 4);
    assert_eq!(seen(&outs), ["hist.1", "hist.2", "xs.threshold", "hist.3"]);
    let outs = wait_count(&server, "fresh.out", 1);
    assert_eq!(seen(&outs), ["hist.3"]);
    pause(QUIET);
    assert_eq!(now_of(&server, "first.out").len(), 4);
    assert_eq!(now_of(&server, "fresh.out").len(), 1);
}

#[test]
fn actor_start_after_an_id_from_a_pointer_frame() {
    let server = Server::start(&[]);
    let s1 = server.append("s.1", b"");
    let s2 = server.append("s.2", b"");
    let s3 = server.append("s.3", b"");
    append_meta(&server, "pointer.t", json!({"frame_id": id(&s1)}), b"");
    let create = create(
        &server,
        "actor",
        "resume",
        &reporter(
            r#"$frame.topic starts-with "s.""#,
            "start: (.last pointer.t).meta.frame_id",
        ),
    );
    let active = wait_active(&server, "actor", "resume", &create);
    assert_eq!(active["meta"]["start"], json!({"after": id(&s1)}));
    let outs = wait_count(&server, "resume.out", 2);
    assert_eq!(seen(&outs), ["s.2", "s.3"]);
    assert_eq!(outs[0]["meta"]["frame_id"], s2["id"]);
    assert_eq!(outs[1]["meta"]["frame_id"], s3["id"]);
    server.append("s.4", b"");
    let outs = wait_count(&server, "resume.out", 3);
    assert_eq!(outs[2]["meta"]["seen"], "s.4");
}

#[test]
fn actor_threads_its_state_from_initial_default_or_null() {
    let server = Server::start(&[]);
    let counter = |name: &str, params: &str, extra: &str| {
        let script = format!(
            r#"{{
              run: {{|{params}|
                if $frame.topic == "tick" {{
                  {{out: {{n: $state}}, next: ($state + 1)}}
                }} else {{
                  {{next: $state}}
                }}
              }}
              {extra}
            }}"#
        );
        start(&server, "actor", name, &script)
    };
    let initial = counter("initial", "frame, state", "initial: 10");
    counter("default", "frame, state = 42", "");
    counter("both", "frame, state = 0", "initial: 7");
    start(
        &server,
        "actor",
        "isnull",
        r#"{run: {|frame, state|
            if $frame.topic == "tick" { {out: {is_null: ($state == null)}, next: 1} } else { {next: $state} }
        }}"#,
    );
    server.append("tick", b"");
    server.append("noise", b"");
    server.append("tick", b"");
    server.append("tick", b"");

    let outs = wait_count(&server, "initial.out", 3);
    let ns: Vec<&Value> = outs.iter().map(|f| &f["meta"]["n"]).collect();
    assert_eq!(ns, [10, 11, 12]);
    assert_eq!(outs[2]["meta"]["actor_id"], initial["id"]);
    let outs = wait_count(&server, "both.out", 3);
    let ns: Vec<&Value> = outs.iter().map(|f| &f["meta"]["n"]).collect();
    assert_eq!(ns, [7, 8, 9], "initial wins over the parameter's default");
    let outs = wait_count(&server, "isnull.out", 2);
    assert_eq!(outs[0]["meta"]["is_null"], true);
    assert_eq!(outs[1]["meta"]["is_null"], false);
    // Without `initial`, the state parameter's default is the first state.
    let outs = wait_for(&server, "default.out ×3 or its fin", |frames| {
        let outs = of(frames, "default.out");
        if outs.len() >= 3 {
            return Some(outs.into_iter().cloned().collect::<Vec<_>>());
        }
        if let Some(fin) = of(frames, "xs.actor.default.fin.error").first() {
            panic!(
                "the actor with `state = 42` failed: {}",
                fin["meta"]["error"]
            );
        }
        None
    });
    let ns: Vec<&Value> = outs.iter().map(|f| &f["meta"]["n"]).collect();
    assert_eq!(ns, [42, 43, 44]);
}

#[test]
fn actor_out_alone_or_null_stops_with_fin_ok() {
    let server = Server::start(&[]);
    let stopper = start(
        &server,
        "actor",
        "stopper",
        r#"{run: {|frame, state = null|
            if $frame.topic == "go" { {out: {msg: "goodbye"}} } else { {next: $state} }
        }}"#,
    );
    let quitter = start(
        &server,
        "actor",
        "quitter",
        r#"{run: {|frame, state = null|
            if $frame.topic == "go" { null } else { {next: $state} }
        }}"#,
    );
    let go = server.append("go", b"");
    let fin = wait_topic(&server, "xs.actor.stopper.fin.ok");
    assert_eq!(
        fin["meta"],
        json!({"actor_id": id(&stopper), "frame_id": id(&go)})
    );
    let out = wait_topic(&server, "stopper.out");
    assert_eq!(out["meta"]["msg"], "goodbye");
    assert!(id(&out) < id(&fin), "out comes before fin.ok");

    let fin = wait_topic(&server, "xs.actor.quitter.fin.ok");
    assert_eq!(
        fin["meta"],
        json!({"actor_id": id(&quitter), "frame_id": id(&go)})
    );

    // Stopped means stopped.
    server.append("go", b"");
    pause(QUIET);
    let frames = all(&server);
    assert_eq!(of(&frames, "stopper.out").len(), 1);
    assert!(of(&frames, "quitter.out").is_empty());
    assert_eq!(of(&frames, "xs.actor.stopper.fin.ok").len(), 1);
    assert_eq!(of(&frames, "xs.actor.quitter.fin.ok").len(), 1);
}

#[test]
fn actor_bad_results_and_runtime_errors_end_with_fin_error() {
    let mut server = Server::start(&[]);
    let on_go = |name: &str, result: &str| {
        let script = format!(
            r#"{{run: {{|frame, state = null|
                if $frame.topic == "go" {{ {result} }} else {{ {{next: $state}} }}
            }}}}"#
        );
        start(&server, "actor", name, &script)
    };
    let extra = on_go("extra", "{out: {a: 1}, next: 2, bad: 3}");
    on_go("boom", r#"error make {msg: "kaboom happened"}"#);
    on_go("nullpath", "let x = {foo: null}; $x.foo.bar");
    on_go("bare", r#""bare string""#);
    on_go("strout", r#"{out: "a plain string", next: $state}"#);
    let go = server.append("go", b"");

    let fin = wait_topic(&server, "xs.actor.extra.fin.error");
    assert_eq!(fin["meta"]["actor_id"], extra["id"]);
    assert_eq!(fin["meta"]["frame_id"], go["id"]);
    let error = fin["meta"]["error"].as_str().unwrap();
    assert!(error.contains("bad"), "{error}");

    let fin = wait_topic(&server, "xs.actor.boom.fin.error");
    assert_eq!(fin["meta"]["frame_id"], go["id"]);
    assert!(
        fin["meta"]["error"]
            .as_str()
            .unwrap()
            .contains("kaboom happened"),
        "{fin}"
    );
    let fin = wait_topic(&server, "xs.actor.nullpath.fin.error");
    assert!(!fin["meta"]["error"].as_str().unwrap().is_empty());
    let fin = wait_topic(&server, "xs.actor.bare.fin.error");
    assert!(!fin["meta"]["error"].as_str().unwrap().is_empty());
    let fin = wait_topic(&server, "xs.actor.strout.fin.error");
    let error = fin["meta"]["error"].as_str().unwrap();
    assert!(
        error.contains("record") || error.contains("target"),
        "{error}"
    );

    server.append("go", b"");
    pause(QUIET);
    let frames = all(&server);
    for name in ["extra", "boom", "nullpath", "bare", "strout"] {
        assert!(of(&frames, &format!("{name}.out")).is_empty(), "{name}");
        assert_eq!(
            of(&frames, &format!("xs.actor.{name}.fin.error")).len(),
            1,
            "{name}"
        );
    }
    assert!(server.is_running());
}

#[test]
fn actor_return_options_suffix_and_ttl() {
    let server = Server::start(&[]);
    let actor = start(
        &server,
        "actor",
        "echo",
        r#"{
          return_options: {suffix: ".warble", ttl: "last:1"}
          run: {|frame, state = null|
            if $frame.topic == "ping" { {out: {reply: "pong"}, next: $state} } else { {next: $state} }
          }
        }"#,
    );
    server.append("ping", b"");
    wait_count(&server, "echo.warble", 1);
    let second = server.append("ping", b"");
    let last = wait_for(&server, "the second echo.warble", |frames| {
        of(frames, "echo.warble")
            .into_iter()
            .find(|f| f["meta"]["frame_id"] == second["id"])
            .cloned()
    });
    assert_eq!(last["ttl"], "last:1");
    assert_eq!(last["meta"]["reply"], "pong");
    assert_eq!(last["meta"]["actor_id"], actor["id"]);
    assert!(last.get("hash").is_none() || last["hash"].is_null());
    // `last:` pruning runs off the append path: it lands shortly after.
    let kept = wait_for(&server, "last:1 to keep one echo.warble", |frames| {
        let kept = of(frames, "echo.warble");
        (kept.len() == 1).then(|| kept.into_iter().cloned().collect::<Vec<_>>())
    });
    assert_eq!(
        kept[0]["meta"]["frame_id"], second["id"],
        "the newest is kept"
    );
    assert!(now_of(&server, "echo.out").is_empty());
}

#[test]
fn actor_cas_target_stores_the_output_as_payload() {
    let server = Server::start(&[]);
    let actor = start(
        &server,
        "actor",
        "cascfg",
        r#"{
          return_options: {target: "cas"}
          run: {|frame, state = null|
            match $frame.topic {
              "go.str" => {out: "stored in cas", next: $state}
              "go.rec" => {out: {a: 1, b: [true]}, next: $state}
              "go.bin" => {out: 0x[de ad be ef 00 ff], next: $state}
              _ => {next: $state}
            }
          }
        }"#,
    );
    let go = server.append("go.bin", b"");
    let out = wait_count(&server, "cascfg.out", 1).remove(0);
    assert_eq!(payload(&server, &out), [0xde, 0xad, 0xbe, 0xef, 0x00, 0xff]);
    assert_eq!(
        out["meta"],
        json!({"actor_id": id(&actor), "frame_id": id(&go)})
    );
    server.append("go.rec", b"");
    let out = wait_count(&server, "cascfg.out", 2).remove(1);
    assert_eq!(payload_text(&server, &out), r#"{"a":1,"b":[true]}"#);
    assert!(out["meta"].get("a").is_none(), "a cas output is not meta");
    server.append("go.str", b"");
    let out = wait_count(&server, "cascfg.out", 3).remove(2);
    // Anything but binary is stored as JSON text (reference 7.3).
    assert_eq!(payload_text(&server, &out), r#""stored in cas""#);
}

#[test]
fn actor_buffered_appends_land_before_the_out_frame_tagged() {
    let server = Server::start(&[]);
    let actor = start(
        &server,
        "actor",
        "action",
        r#"{run: {|frame, state = null|
            if $frame.topic != "trigger" { {next: $state} } else {
              let r = ("1" | .append topic1 --meta {t: "1"})
              "2" | .append topic2 --meta {t: "2", frame_id: "overwritten"} --ttl last:3
              sleep 150ms
              {out: {value: "out", append_returned_null: ($r == null)}, next: $state}
            }
        }}"#,
    );
    let trigger = server.append("trigger", b"");
    let out = wait_topic(&server, "action.out");
    let frames = all(&server);
    let emitted = after(&frames, &trigger);
    assert_eq!(
        topics(&emitted.iter().map(|f| (*f).clone()).collect::<Vec<_>>()),
        ["topic1", "topic2", "action.out"]
    );
    for f in &emitted {
        assert_eq!(f["meta"]["actor_id"], actor["id"], "{f}");
        assert_eq!(f["meta"]["frame_id"], trigger["id"], "{f}");
        // Buffered: written once the closure returned, not before.
        assert!(
            id_ms(id(f)) >= id_ms(id(&trigger)) + 150,
            "{} was written while the closure ran",
            topic(f)
        );
    }
    assert_eq!(emitted[0]["meta"]["t"], "1");
    assert_eq!(emitted[1]["meta"]["t"], "2");
    assert_eq!(emitted[1]["ttl"], "last:3");
    assert_eq!(payload_text(&server, emitted[0]), "1");
    assert_eq!(payload_text(&server, emitted[1]), "2");
    assert_eq!(out["meta"]["value"], "out");
    assert_eq!(out["meta"]["append_returned_null"], true);
    // Its own appends do not trigger it again.
    pause(QUIET);
    assert_eq!(now_of(&server, "action.out").len(), 1);
}

#[test]
fn actor_topics_filter_exact_and_prefix_and_term_still_works() {
    let server = Server::start(&[]);
    let all_frames = "true";
    let as_list = start(
        &server,
        "actor",
        "flt",
        &reporter(all_frames, r#"topics: ["flt.exact", "pre.*"]"#),
    );
    start(
        &server,
        "actor",
        "fltstr",
        &reporter(all_frames, r#"topics: "flt.exact,pre.*""#),
    );
    for t in ["flt.exact", "flt.other", "pre.a", "pre", "pre.b.c", "other"] {
        server.append(t, b"");
    }
    let expected = ["flt.exact", "pre.a", "pre.b.c"];
    assert_eq!(seen(&wait_count(&server, "flt.out", 3)), expected);
    assert_eq!(seen(&wait_count(&server, "fltstr.out", 3)), expected);

    let term = server.append("xs.actor.flt.term", b"");
    let fin = wait_topic(&server, "xs.actor.flt.fin.term");
    assert_eq!(
        fin["meta"],
        json!({"actor_id": id(&as_list), "frame_id": id(&term)})
    );
    server.append("pre.after", b"");
    wait_count(&server, "fltstr.out", 4);
    pause(QUIET);
    assert_eq!(
        now_of(&server, "flt.out").len(),
        3,
        "a termed actor is gone"
    );
}

#[test]
fn actor_pulse_delivers_xs_pulse_frames_through_a_filter() {
    let server = Server::start(&[]);
    let actor = create(
        &server,
        "actor",
        "p",
        r#"{
          pulse: 50
          topics: ["nothing.here"]
          initial: 0
          run: {|frame, state|
            if $frame.topic == "xs.pulse" {
              if $state >= 1 { {out: {pulses: ($state + 1)}} } else { {next: ($state + 1)} }
            } else {
              {next: $state}
            }
          }
        }"#,
    );
    let started = Instant::now();
    let out = wait_topic(&server, "p.out");
    assert_eq!(out["meta"]["pulses"], 2);
    assert_eq!(out["meta"]["actor_id"], actor["id"]);
    assert!(started.elapsed() < Duration::from_secs(3));
    wait_topic(&server, "xs.actor.p.fin.ok");
    // Pulses are synthetic: never stored.
    assert!(now_of(&server, "xs.pulse").is_empty());
}

#[test]
fn actor_hot_replacement_hands_over_to_the_new_script() {
    let server = Server::start(&[]);
    let script = |who: &str| {
        format!(
            r#"{{run: {{|frame, state = null|
                if $frame.topic == "trigger" {{ {{out: {{who: "{who}"}}, next: $state}} }} else {{ {{next: $state}} }}
            }}}}"#
        )
    };
    let first = start(&server, "actor", "h", &script("first"));
    let second = create(&server, "actor", "h", &script("second"));
    let replaced = wait_topic(&server, "xs.actor.h.replaced");
    assert_eq!(
        replaced["meta"],
        json!({"actor_id": id(&first), "frame_id": id(&second)})
    );
    let active = wait_active(&server, "actor", "h", &second);
    assert!(id(&replaced) < id(&active), "replaced, then the new active");

    let trigger = server.append("trigger", b"");
    let out = wait_topic(&server, "h.out");
    assert_eq!(out["meta"]["who"], "second");
    assert_eq!(out["meta"]["actor_id"], second["id"]);
    assert_eq!(out["meta"]["frame_id"], trigger["id"]);
    pause(QUIET);
    assert_eq!(now_of(&server, "h.out").len(), 1, "only one instance runs");

    // A broken replacement is invalid; the running script keeps going.
    let broken = create(&server, "actor", "h", "{run: {|| 42}}");
    let invalid = wait_topic(&server, "xs.actor.h.invalid");
    assert_eq!(invalid["meta"]["actor_id"], broken["id"]);
    server.append("trigger", b"");
    let outs = wait_count(&server, "h.out", 2);
    assert_eq!(outs[1]["meta"]["who"], "second");
    pause(QUIET);
    assert_eq!(now_of(&server, "h.out").len(), 2);
}

#[test]
fn actor_term_emits_fin_term_and_stops() {
    let server = Server::start(&[]);
    let actor = start(&server, "actor", "t", &reporter("true", ""));
    server.append("one", b"");
    wait_count(&server, "t.out", 1);
    let term = server.append("xs.actor.t.term", b"");
    let fin = wait_topic(&server, "xs.actor.t.fin.term");
    assert_eq!(
        fin["meta"],
        json!({"actor_id": id(&actor), "frame_id": id(&term)})
    );
    server.append("two", b"");
    pause(QUIET);
    assert_eq!(now_of(&server, "t.out").len(), 1);
    // A term for something not running changes nothing.
    server.append("xs.actor.t.term", b"");
    pause(Duration::from_millis(100));
    assert_eq!(now_of(&server, "xs.actor.t.fin.term").len(), 1);
}

#[test]
fn modules_are_usable_from_actors_actions_and_services() {
    let server = Server::start(&[]);
    server.append("xs.module.mymod", br#"export def hi [] { "hi" }"#);
    server.append("xs.module.my.tools", b"export def twice [x] { $x * 2 }");
    let actor = start(
        &server,
        "actor",
        "greeter",
        r#"{run: {|frame, state = null|
            if $frame.topic == "trigger" {
              use mymod
              use my/tools
              {out: {r: (mymod hi), n: (tools twice 21)}, next: $state}
            } else { {next: $state} }
        }}"#,
    );
    start(
        &server,
        "action",
        "modact",
        "use mymod\n{run: {|frame| {r: (mymod hi)}}}",
    );
    start(
        &server,
        "service",
        "modsvc",
        "use mymod\n{run: {|| {r: (mymod hi)}}}",
    );
    // A newer version of the module: processors keep the one as of their
    // create frame.
    server.append("xs.module.mymod", br#"export def hi [] { "hi v2" }"#);

    let trigger = server.append("trigger", b"");
    let out = wait_topic(&server, "greeter.out");
    assert_eq!(out["meta"]["r"], "hi");
    assert_eq!(out["meta"]["n"], 42);
    assert_eq!(out["meta"]["actor_id"], actor["id"]);
    assert_eq!(out["meta"]["frame_id"], trigger["id"]);

    let call = server.append("modact.call", b"");
    let response = wait_topic(&server, "modact.response");
    assert_eq!(response["meta"]["r"], "hi");
    assert_eq!(response["meta"]["frame_id"], call["id"]);

    let recv = wait_topic(&server, "modsvc.recv");
    assert_eq!(recv["meta"]["r"], "hi");
    server.append("xs.service.modsvc.term", b"");

    // A processor created now sees the new version.
    start(
        &server,
        "action",
        "modact2",
        "use mymod\n{run: {|frame| {r: (mymod hi)}}}",
    );
    server.append("modact2.call", b"");
    assert_eq!(
        wait_topic(&server, "modact2.response")["meta"]["r"],
        "hi v2"
    );
}

// ---------------------------------------------------------------------------
// Services

#[test]
fn service_cas_output_then_reruns_a_second_after_a_clean_finish() {
    let server = Server::start(&[]);
    let svc = create(
        &server,
        "service",
        "rep",
        r#"{run: {|| "x"}, return_options: {target: "cas"}}"#,
    );
    let recvs = wait_count(&server, "rep.recv", 2);
    for recv in &recvs {
        assert_eq!(payload_text(&server, recv), "x");
        assert_eq!(recv["meta"], json!({"source_id": id(&svc)}));
    }
    let frames = all(&server);
    let actives = of(&frames, "xs.service.rep.active");
    assert!(actives.len() >= 2, "a new active for each run");
    for active in &actives {
        assert_eq!(active["meta"], json!({"source_id": id(&svc)}));
    }
    // active, recv, (1 s), active, recv
    assert!(id(actives[0]) < id(&recvs[0]));
    assert!(id(&recvs[0]) < id(actives[1]));
    assert!(id(actives[1]) < id(&recvs[1]));
    let gap = id_ms(id(actives[1])) - id_ms(id(&recvs[0]));
    assert!(
        (900..3000).contains(&gap),
        "rerun about a second after finishing: {gap} ms"
    );
    assert!(of(&frames, "xs.service.rep.fin.ok").is_empty());
    assert!(of(&frames, "xs.service.rep.fin.error").is_empty());

    let term = server.append("xs.service.rep.term", b"");
    let fin = wait_topic(&server, "xs.service.rep.fin.term");
    assert_eq!(fin["meta"], json!({"source_id": id(&svc)}));
    pause(Duration::from_millis(1300));
    let frames = all(&server);
    let late: Vec<&Value> = after(&frames, &term)
        .into_iter()
        .filter(|f| topic(f) == "rep.recv" || topic(f) == "xs.service.rep.active")
        .collect();
    assert!(late.is_empty(), "ran again after term: {late:?}");
}

#[test]
fn service_record_output_becomes_meta_and_appends_carry_service_id() {
    let server = Server::start(&[]);
    let svc = create(
        &server,
        "service",
        "rec",
        r#"{run: {||
            "side payload" | .append side.t --meta {k: 1} | ignore
            {a: 1, b: "two"}
        }}"#,
    );
    let recv = wait_topic(&server, "rec.recv");
    assert_eq!(
        recv["meta"],
        json!({"a": 1, "b": "two", "source_id": id(&svc)})
    );
    assert!(recv.get("hash").is_none() || recv["hash"].is_null());
    let side = wait_topic(&server, "side.t");
    assert_eq!(side["meta"], json!({"service_id": id(&svc), "k": 1}));
    assert_eq!(payload_text(&server, &side), "side payload");
    server.append("xs.service.rec.term", b"");
    wait_topic(&server, "xs.service.rec.fin.term");
}

#[test]
fn service_list_stream_output_is_one_frame_per_item() {
    let server = Server::start(&[]);
    for n in 1..=3 {
        append_meta(&server, "src.t", json!({ "n": n }), b"");
    }
    let svc = create(
        &server,
        "service",
        "lst",
        r#"{run: {|| .cat --topic src.t }, return_options: {suffix: ".item", ttl: "last:10"}}"#,
    );
    let items = wait_count(&server, "lst.item", 3);
    for (n, item) in items.iter().enumerate() {
        assert_eq!(item["meta"]["topic"], "src.t");
        assert_eq!(item["meta"]["meta"]["n"], n + 1);
        assert_eq!(item["meta"]["source_id"], svc["id"]);
        assert_eq!(item["ttl"], "last:10");
    }
    server.append("xs.service.lst.term", b"");
    wait_topic(&server, "xs.service.lst.fin.term");
}

/// A closure with an empty body passes its input through: the byte stream
/// of `<name>.send` payloads comes back out as `<name>.recv` chunks. (A
/// body of `$in` would not do: Nushell collects `$in` into one value.)
#[test]
fn service_duplex_passes_send_payloads_to_its_input() {
    let server = Server::start(&[]);
    let svc = start(&server, "service", "dup", "{run: {|| }, duplex: true}");
    server.append("dup.send", b"hello");
    let recv = wait_count(&server, "dup.recv", 1).remove(0);
    assert_eq!(payload_text(&server, &recv), "hello");
    assert_eq!(recv["meta"]["source_id"], svc["id"]);
    server.append("dup.send", b"world");
    let recvs = wait_count(&server, "dup.recv", 2);
    assert_eq!(payload_text(&server, &recvs[1]), "world");
    server.append("xs.service.dup.term", b"");
    wait_topic(&server, "xs.service.dup.fin.term");
}

/// `lines` fed by the duplex input (implicitly, as Nushell's `lines`
/// would be) yields each line as it arrives, one frame per line.
#[test]
fn service_duplex_lines_are_emitted_as_they_arrive() {
    let server = Server::start(&[]);
    let svc = start(
        &server,
        "service",
        "liner",
        r#"{run: {|| lines }, duplex: true, return_options: {target: "cas"}}"#,
    );
    server.append("liner.send", b"one\ntwo\n");
    let recvs = wait_count(&server, "liner.recv", 2);
    assert_eq!(payload_text(&server, &recvs[0]), "one");
    assert_eq!(payload_text(&server, &recvs[1]), "two");
    assert_eq!(recvs[0]["meta"]["source_id"], svc["id"]);
    server.append("liner.send", b"three\n");
    let recvs = wait_count(&server, "liner.recv", 3);
    assert_eq!(payload_text(&server, &recvs[2]), "three");
    server.append("xs.service.liner.term", b"");
    wait_topic(&server, "xs.service.liner.fin.term");
}

/// A service that appends a `<topic>` frame every 30 ms, forever.
fn ticker(topic: &str) -> String {
    format!(r#"{{run: {{|| loop {{ .append {topic} | ignore; sleep 30ms }} }}}}"#)
}

#[test]
fn service_term_stops_it_for_good() {
    let server = Server::start(&[]);
    let svc = start(&server, "service", "tick", &ticker("tick.t"));
    wait_count(&server, "tick.t", 3);
    let term = server.append("xs.service.tick.term", b"");
    let fin = wait_topic(&server, "xs.service.tick.fin.term");
    assert_eq!(fin["meta"], json!({"source_id": id(&svc)}));
    let count = now_of(&server, "tick.t").len();
    pause(QUIET);
    assert_eq!(
        now_of(&server, "tick.t").len(),
        count,
        "ticks after fin.term"
    );
    let frames = all(&server);
    for f in after(&frames, &term) {
        assert!(
            !topic(f).starts_with("xs.service.tick.") || topic(f).ends_with("fin.term"),
            "unexpected {f}"
        );
    }
}

#[test]
fn service_errors_end_with_fin_error_and_a_message() {
    let mut server = Server::start(&[]);
    let boom = create(
        &server,
        "service",
        "boom",
        r#"{run: {|| error make {msg: "service kaboom"}}}"#,
    );
    let fin = wait_topic(&server, "xs.service.boom.fin.error");
    assert_eq!(fin["meta"]["source_id"], boom["id"]);
    let message = fin["meta"]["message"].as_str().unwrap();
    assert!(message.contains("service kaboom"), "{message}");

    create(&server, "service", "plain", r#"{run: {|| "not a record"}}"#);
    let fin = wait_topic(&server, "xs.service.plain.fin.error");
    assert!(!fin["meta"]["message"].as_str().unwrap().is_empty());

    pause(Duration::from_millis(1200));
    let frames = all(&server);
    assert_eq!(of(&frames, "xs.service.boom.active").len(), 1, "no rerun");
    assert!(of(&frames, "plain.recv").is_empty());
    assert!(server.is_running());
}

#[test]
fn service_bad_replacement_is_invalid_and_the_old_one_keeps_running() {
    let server = Server::start(&[]);
    let old = start(&server, "service", "svc", &ticker("old.t"));
    wait_count(&server, "old.t", 1);
    let bad = create(&server, "service", "svc", "{run: {|| ");
    let invalid = wait_topic(&server, "xs.service.svc.invalid");
    assert_eq!(invalid["meta"]["source_id"], bad["id"]);
    assert!(!invalid["meta"]["reason"].as_str().unwrap_or("").is_empty());
    // The old one still ticks.
    let n = now_of(&server, "old.t").len();
    wait_count(&server, "old.t", n + 3);
    let frames = all(&server);
    assert!(of(&frames, "xs.service.svc.replaced").is_empty());
    assert!(of(&frames, "xs.service.svc.fin.error").is_empty());
    let ticks = of(&frames, "old.t");
    assert_eq!(ticks.last().unwrap()["meta"]["service_id"], old["id"]);

    // A good replacement takes over.
    let new = create(&server, "service", "svc", &ticker("new.t"));
    let replaced = wait_topic(&server, "xs.service.svc.replaced");
    assert_eq!(
        replaced["meta"],
        json!({"source_id": id(&old), "update_id": id(&new)})
    );
    let active = wait_active(&server, "service", "svc", &new);
    assert!(id(&replaced) < id(&active));
    wait_count(&server, "new.t", 2);
    let n = now_of(&server, "old.t").len();
    pause(QUIET);
    assert_eq!(now_of(&server, "old.t").len(), n, "the old one stopped");
}

#[test]
fn service_stopped_on_shutdown_and_back_after_restart() {
    let mut server = Server::start(&[]);
    let svc = start(&server, "service", "svc", &ticker("svc.t"));
    wait_count(&server, "svc.t", 1);
    server.stop();
    server.restart();
    let frames = all(&server);
    let stopping = of(&frames, "xs.stopping")
        .first()
        .map(|f| (*f).clone())
        .expect("xs.stopping stored");
    let stopped = of(&frames, "xs.service.svc.stopped");
    assert_eq!(stopped.len(), 1, "one stopped frame");
    assert_eq!(stopped[0]["meta"], json!({"source_id": id(&svc)}));
    assert!(id(stopped[0]) > id(&stopping));
    // It runs again.
    let active = wait_for(&server, "svc active after the restart", |frames| {
        after(frames, &stopping)
            .into_iter()
            .find(|f| topic(f) == "xs.service.svc.active")
            .cloned()
    });
    assert_eq!(active["meta"]["source_id"], svc["id"]);
    let started = wait_topic_after(&server, "xs.start", &stopping);
    wait_topic_after(&server, "svc.t", &started);
}

// ---------------------------------------------------------------------------
// Actions

#[test]
fn action_call_gets_a_response_with_ids_and_record_fields() {
    let server = Server::start(&[]);
    let action = create(
        &server,
        "action",
        "act",
        r#"{run: {|frame|
            "note" | .append act.note --meta {extra: true} | ignore
            {echo: $frame.meta.q, topic: $frame.topic}
        }}"#,
    );
    let active = wait_topic(&server, "xs.action.act.active");
    assert_eq!(active["meta"], json!({"action_id": id(&action)}));
    let call = append_meta(&server, "act.call", json!({"q": "hi"}), b"");
    let response = wait_topic(&server, "act.response");
    assert_eq!(
        response["meta"],
        json!({
            "action_id": id(&action),
            "frame_id": id(&call),
            "echo": "hi",
            "topic": "act.call",
        })
    );
    let note = wait_topic(&server, "act.note");
    assert_eq!(
        note["meta"],
        json!({"action_id": id(&action), "frame_id": id(&call), "extra": true})
    );
    // A call to something not registered is just a frame.
    server.append("nobody.call", b"");
    pause(Duration::from_millis(150));
    let frames = all(&server);
    assert!(of(&frames, "nobody.response").is_empty());
    assert!(of(&frames, "nobody.error").is_empty());
}

#[test]
fn action_results_nothing_errors_and_cas() {
    let mut server = Server::start(&[]);
    start(&server, "action", "plain", r#"{run: {|frame| "str"}}"#);
    let boom = start(
        &server,
        "action",
        "boom",
        r#"{run: {|frame| error make {msg: "action kaboom"}}}"#,
    );
    let quiet = start(&server, "action", "quiet", "{run: {|frame| null}}");
    start(
        &server,
        "action",
        "cas",
        r#"{
          run: {|frame| if $frame.meta.kind == "list" { [1 "two"] } else { "str" } }
          return_options: {target: "cas", suffix: ".done", ttl: "last:5"}
        }"#,
    );

    let call = server.append("plain.call", b"");
    let error = wait_topic(&server, "plain.error");
    assert!(!error["meta"]["error"].as_str().unwrap_or("").is_empty());
    assert_eq!(error["meta"]["call_id"], call["id"]);
    assert!(now_of(&server, "plain.response").is_empty());

    let call = server.append("boom.call", b"");
    let error = wait_topic(&server, "boom.error");
    assert_eq!(error["meta"]["action_id"], boom["id"]);
    assert_eq!(error["meta"]["frame_id"], call["id"]);
    assert!(error["meta"]["error"]
        .as_str()
        .unwrap()
        .contains("action kaboom"));

    let call = server.append("quiet.call", b"");
    let response = wait_topic(&server, "quiet.response");
    assert_eq!(
        response["meta"],
        json!({"action_id": id(&quiet), "frame_id": id(&call)})
    );
    assert!(response.get("hash").is_none() || response["hash"].is_null());

    append_meta(&server, "cas.call", json!({"kind": "list"}), b"");
    let done = wait_topic(&server, "cas.done");
    assert_eq!(done["ttl"], "last:5");
    assert_eq!(payload_text(&server, &done), r#"[1,"two"]"#);
    append_meta(&server, "cas.call", json!({"kind": "string"}), b"");
    let done = wait_count(&server, "cas.done", 2).remove(1);
    // Strings are stored as JSON text, quoted (reference 7.5).
    assert_eq!(payload_text(&server, &done), r#""str""#);
    assert!(server.is_running());
}

#[test]
fn action_calls_run_concurrently() {
    let server = Server::start(&[]);
    start(
        &server,
        "action",
        "slow",
        "{run: {|frame| sleep 1sec; {n: $frame.meta.n}}}",
    );
    let a = append_meta(&server, "slow.call", json!({"n": 1}), b"");
    let b = append_meta(&server, "slow.call", json!({"n": 2}), b"");
    let responses = wait_count(&server, "slow.response", 2);
    let mut answered: Vec<(Value, Value)> = responses
        .iter()
        .map(|r| (r["meta"]["frame_id"].clone(), r["meta"]["n"].clone()))
        .collect();
    answered.sort_by_key(|(f, _)| f.as_str().unwrap().to_string());
    assert_eq!(
        answered,
        [(a["id"].clone(), json!(1)), (b["id"].clone(), json!(2))]
    );
    let spread = id_ms(id(&responses[1])) - id_ms(id(&responses[0]));
    // One after the other would be a full second apart.
    assert!(
        spread < 800,
        "the second call waited for the first: {spread} ms apart"
    );
}

#[test]
fn action_term_emits_fin_term_and_calls_go_unanswered() {
    let server = Server::start(&[]);
    start(&server, "action", "gone", "{run: {|frame| {ok: true}}}");
    server.append("gone.call", b"");
    wait_topic(&server, "gone.response");
    let term = server.append("xs.action.gone.term", b"");
    let fin = wait_topic(&server, "xs.action.gone.fin.term");
    assert_eq!(fin["meta"]["frame_id"], term["id"]);
    server.append("gone.call", b"");
    pause(QUIET);
    assert_eq!(now_of(&server, "gone.response").len(), 1);
    // Re-creating brings it back.
    let again = start(&server, "action", "gone", "{run: {|frame| {ok: 2}}}");
    server.append("gone.call", b"");
    let responses = wait_count(&server, "gone.response", 2);
    assert_eq!(responses[1]["meta"]["ok"], 2);
    assert_eq!(responses[1]["meta"]["action_id"], again["id"]);
}

// ---------------------------------------------------------------------------
// Boot compaction across a restart (reference 7.2)

#[test]
fn restart_brings_back_exactly_the_processors_that_should_run() {
    let mut server = Server::start(&[]);
    let pinger = r#"{run: {|frame, state = null|
        if $frame.topic == "ping" { {out: {pong: true}, next: $state} } else { {next: $state} }
    }}"#;
    let keep = start(&server, "actor", "keep", pinger);
    start(&server, "actor", "gone", pinger);
    start(
        &server,
        "actor",
        "done",
        r#"{run: {|frame, state = null| if $frame.topic == "finish" { null } else { {next: $state} }}}"#,
    );
    start(&server, "actor", "swap", pinger);
    let swap = start(&server, "actor", "swap", pinger);
    create(&server, "actor", "broken", "{run: {|| 1}}");
    let svc = start(&server, "service", "svc", "{run: {|| sleep 1hr }}");
    start(&server, "service", "svcgone", "{run: {|| sleep 1hr }}");
    let act = start(&server, "action", "act", "{run: {|frame| {ok: true}}}");
    start(&server, "action", "actgone", "{run: {|frame| {ok: true}}}");

    server.append("xs.actor.gone.term", b"");
    server.append("xs.service.svcgone.term", b"");
    server.append("xs.action.actgone.term", b"");
    server.append("finish", b"");
    wait_topic(&server, "xs.actor.gone.fin.term");
    wait_topic(&server, "xs.service.svcgone.fin.term");
    wait_topic(&server, "xs.action.actgone.fin.term");
    wait_topic(&server, "xs.actor.done.fin.ok");
    wait_topic(&server, "xs.actor.broken.invalid");

    server.restart();
    let stopping = wait_topic(&server, "xs.stopping");
    let back = |kind: &str, name: &str, create: &Value| {
        let t = format!("xs.{kind}.{name}.active");
        let key = id_key(kind);
        wait_for(&server, &format!("{t} after the restart"), |frames| {
            after(frames, &stopping)
                .into_iter()
                .find(|f| topic(f) == t)
                .cloned()
        })["meta"][key]
            .clone()
            .eq(&create["id"])
    };
    assert!(back("actor", "keep", &keep));
    assert!(back("actor", "swap", &swap), "the newest create runs");
    assert!(back("service", "svc", &svc));
    assert!(back("action", "act", &act));

    pause(QUIET);
    let frames = all(&server);
    let restarted: Vec<String> = after(&frames, &stopping)
        .into_iter()
        .filter(|f| topic(f).ends_with(".active"))
        .map(|f| topic(f).to_string())
        .collect();
    let mut sorted = restarted.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "xs.action.act.active",
            "xs.actor.keep.active",
            "xs.actor.swap.active",
            "xs.service.svc.active",
        ],
        "exactly these come back"
    );
    assert!(after(&frames, &stopping)
        .iter()
        .all(|f| !topic(f).ends_with(".invalid")));

    // And they work.
    let ping = server.append("ping", b"");
    let out = wait_topic_after(&server, "keep.out", &ping);
    assert_eq!(out["meta"]["actor_id"], keep["id"]);
    wait_topic_after(&server, "swap.out", &ping);
    let call = server.append("act.call", b"");
    wait_topic_after(&server, "act.response", &call);
    pause(Duration::from_millis(100));
    let frames = all(&server);
    assert!(after(&frames, &ping)
        .iter()
        .all(|f| topic(f) != "gone.out" && topic(f) != "actgone.response"));
}

#[test]
fn script_errors_never_take_the_server_down() {
    let mut server = Server::start(&[]);
    create(
        &server,
        "actor",
        "a",
        "{run: {|frame, state| error make {msg: \"x\"}}, start: \"first\"}",
    );
    create(
        &server,
        "service",
        "s",
        "{run: {|| error make {msg: \"x\"}}}",
    );
    start(
        &server,
        "action",
        "c",
        "{run: {|frame| error make {msg: \"x\"}}}",
    );
    create(&server, "service", "p", "{run: ");
    create(&server, "actor", "q", "");
    create(&server, "action", "r", "{run: 42}");
    server.append("c.call", b"");
    wait_topic(&server, "xs.actor.a.fin.error");
    wait_topic(&server, "xs.service.s.fin.error");
    wait_topic(&server, "c.error");
    wait_topic(&server, "xs.service.p.invalid");
    wait_topic(&server, "xs.actor.q.invalid");
    wait_topic(&server, "xs.action.r.invalid");
    let r = server.post("/eval", b"error make {msg: \"eval\"}");
    assert_eq!(r.status, 500);
    assert!(server.is_running());
    let r = server.post("/eval", b"1 + 1");
    assert_eq!(r.text(), "2");
    assert_eq!(server.append("still.here", b"")["topic"], "still.here");
}
