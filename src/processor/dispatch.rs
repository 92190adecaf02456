//! The dispatcher thread and the handles of running processors (see the
//! module's top, `processor/mod.rs`).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde_json::Value as Json;

use super::action::Action;
use super::actor::Actor;
use super::lease::Leases;
use super::lifecycle::{Event, Kind, LifecycleTopic, Slots};
use super::ps::{ProcessTable, State};
use super::service::Service;
use super::view::View;
use super::{lifecycle, supervise};
use crate::nu::engine::{Interrupt, StopReason};
use crate::sys::process::ChildGroups;

use crate::store::{Follow, ReadEvent, ReadOptions, Reader};
use crate::store::{Frame, Id, Store, TopicFilter};

/// How long a stopping processor's programs get between SIGTERM and
/// SIGKILL: every actor and view, and a service without `grace_ms`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// A processor's running thread and how to stop it.
pub struct Running {
    stop: Arc<AtomicBool>,
    interrupt: Interrupt,
    /// Process groups its runs started: SIGTERM on stop, SIGKILL after
    /// `grace`.
    groups: ChildGroups,
    grace: Duration,
    handle: JoinHandle<()>,
}

impl Running {
    /// Runs `body` on a thread named `<kind> <name>`, handing it the flag
    /// `stop` raises; `interrupt` and `groups` are how a stop reaches its
    /// script and its programs.
    pub fn spawn(
        kind: Kind,
        name: &str,
        interrupt: Interrupt,
        groups: ChildGroups,
        grace: Duration,
        body: impl FnOnce(&AtomicBool) + Send + 'static,
    ) -> Result<Running, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("{} {name}", kind.word()))
            .spawn(move || body(&thread_stop))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        Ok(Running {
            stop,
            interrupt,
            groups,
            grace,
            handle,
        })
    }

    /// Asks the thread to stop: its script is interrupted and its programs
    /// get SIGTERM.
    fn signal_stop(&self) {
        self.stop_handle().signal_stop();
    }

    /// How to stop it from another thread (the lease renewer).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            stop: self.stop.clone(),
            interrupt: self.interrupt.clone(),
            groups: self.groups.clone(),
        }
    }

    /// Waits until `deadline` for the thread, SIGKILLs what is left, joins.
    fn finish_stop(self, deadline: Instant) {
        if !supervise::wait_until(deadline, || self.handle.is_finished()) {
            self.groups.kill();
        }
        let _ = self.handle.join();
    }

    /// Stops the processor within its grace period and waits for it.
    pub fn stop(self) {
        self.signal_stop();
        let deadline = Instant::now() + self.grace;
        self.finish_stop(deadline);
    }

    fn finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// Stops a processor from outside its dispatcher: the flags its thread
/// watches, and its programs' process groups.
#[derive(Clone)]
pub struct StopHandle {
    stop: Arc<AtomicBool>,
    interrupt: Interrupt,
    groups: ChildGroups,
}

impl StopHandle {
    pub fn signal_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        // With a reason, the stop stays in force even if the script
        // catches it (`nu::memory`).
        self.interrupt.stop(StopReason::Stopped);
        self.groups.terminate();
    }

    pub fn kill(&self) {
        self.groups.kill();
    }
}

/// The dispatcher, as seen from the server.
pub struct Processors {
    shutdown: Sender<()>,
    stopped: Receiver<()>,
}

impl Processors {
    /// Stops every service (all at once, each within its grace) and waits
    /// for that, at most `timeout`. Asked directly rather than through the
    /// `xs.stopping` frame, which a dispatcher still booting would count as
    /// history.
    pub fn shut_down(&self, timeout: Duration) {
        let _ = self.shutdown.send(());
        let _ = self.stopped.recv_timeout(timeout);
    }
}

/// Starts the spawner and the dispatcher thread, which reports into
/// `table`.
pub fn start(store: Store, table: ProcessTable) -> Result<Processors, String> {
    crate::sys::process::start(store.dir())?;
    let (stopped_tx, stopped_rx) = crossbeam_channel::bounded(1);
    let (shutdown_tx, shutdown_rx) = crossbeam_channel::bounded(1);
    let mut dispatcher = Dispatcher {
        store: store.clone(),
        running: HashMap::new(),
        actions: HashMap::new(),
        stopped: Some(stopped_tx),
        shutdown: shutdown_rx,
        table: table.clone(),
        leases: Leases::new(store.clone()),
        seen: None,
    };
    std::thread::Builder::new()
        .name("processors".into())
        .spawn(move || dispatcher.run())
        .map_err(|e| format!("cannot start the processor dispatcher: {e}"))?;
    Ok(Processors {
        shutdown: shutdown_tx,
        stopped: stopped_rx,
    })
}

struct Dispatcher {
    store: Store,
    /// Running actors and services by kind and name, with their create id.
    running: HashMap<(Kind, String), (Id, Running)>,
    actions: HashMap<String, Action>,
    stopped: Option<Sender<()>>,
    shutdown: Receiver<()>,
    table: ProcessTable,
    leases: Leases,
    /// The newest frame the dispatcher has acted on (or booted up to).
    seen: Option<Id>,
}

/// How far back a node that takes an action over looks for calls nobody
/// answered (its previous node died with them).
const ORPHAN_CALLS_WINDOW_MS: u64 = 30_000;

impl Dispatcher {
    fn run(&mut self) {
        let head = self.store.head().view().last_id;
        self.seen = head;
        self.boot(head, None);
        let options = ReadOptions {
            follow: Follow::On,
            after: head,
            // Woken only by batches with lifecycle frames or calls.
            wake_on_control: true,
            ..ReadOptions::default()
        };
        let mut reader = Reader::new(self.store.clone(), options);
        loop {
            if self.shutdown.try_recv().is_ok() {
                self.stop_services();
                break;
            }
            if self.leases.due() {
                self.tend_leases();
            }
            let frames = match reader.next_event(Duration::from_millis(200)) {
                Ok(ReadEvent::History(frames)) => frames,
                Ok(ReadEvent::Live(frame)) => vec![frame],
                Ok(ReadEvent::Idle) => {
                    self.reap();
                    continue;
                }
                // The store is out of reach for now (Redis away): wait.
                Err(crate::store::StoreError::Unavailable(_)) => {
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                Ok(ReadEvent::End) | Err(_) => break,
            };
            for raw in frames {
                self.seen = Some(raw.id);
                if raw.quick_topic().is_some_and(|t| !self.concerns(t)) {
                    continue;
                }
                if let Ok(frame) = raw.parse() {
                    self.live(frame);
                }
            }
        }
        self.stop_all();
    }

    /// Boot compaction over the lifecycle history up to `head`: of every
    /// processor, or only of `only` (one taken over from another node).
    fn boot(&mut self, head: Option<Id>, only: Option<(Kind, &str)>) {
        let Some(head) = head else { return };
        let mut slots: BTreeMap<(Kind, String), Slots> = BTreeMap::new();
        let mut invalid: std::collections::HashSet<Id> = Default::default();
        let filter = match only {
            Some((kind, name)) => TopicFilter::parse(&format!("xs.{}.{name}.*", kind.word())),
            None => TopicFilter::parse("xs.*"),
        };
        for raw in self
            .store
            .scan(&filter, Bound::Unbounded, Bound::Included(head), false)
            .flatten()
        {
            let Ok(frame) = raw.parse() else { continue };
            let Some(topic) = lifecycle::parse_topic(&frame.topic) else {
                continue;
            };
            let source = lifecycle::source_id(topic.kind, &frame);
            if topic.event == Event::Invalid {
                invalid.extend(source);
            }
            slots
                .entry((topic.kind, topic.name))
                .or_default()
                .apply(topic.event, frame.id, source);
        }
        let mut picks: Vec<(Id, Kind, String, Option<Id>)> = slots
            .into_iter()
            .filter_map(|((kind, name), slots)| {
                let fallback = slots.confirmed.filter(|c| Some(*c) != slots.pending);
                slots.pick().map(|id| (id, kind, name, fallback))
            })
            .collect();
        picks.sort();
        for (id, kind, name, fallback) in picks {
            if !self.leases.acquire(kind, &name) {
                if let Ok(Some(create)) = self.store.get(id).map(|r| r.and_then(|r| r.parse().ok()))
                {
                    self.run_as_member(kind, &name, &create);
                }
                continue;
            }
            let Ok(Some(raw)) = self.store.get(id) else {
                self.leases.release(kind, &name);
                continue;
            };
            let Ok(create) = raw.parse() else {
                self.leases.release(kind, &name);
                continue;
            };
            let started = self.start(kind, &name, &create);
            // An actor whose pending script fails falls back to the one
            // that last ran.
            if !started && kind == Kind::Actor {
                if let Some(fallback) = fallback.filter(|f| !invalid.contains(f)) {
                    if let Ok(Some(raw)) = self.store.get(fallback) {
                        if let Ok(create) = raw.parse() {
                            self.start(kind, &name, &create);
                        }
                    }
                }
            }
            if !self.is_running(kind, &name) {
                self.leases.release(kind, &name);
            }
        }
    }

    /// Whether this node runs the processor (an action: has it registered).
    fn is_running(&self, kind: Kind, name: &str) -> bool {
        match kind {
            Kind::Action => self.actions.contains_key(name),
            _ => self.running.contains_key(&(kind, name.to_string())),
        }
    }

    /// Renews this node's leases, stops what it lost, and takes over
    /// processors whose node went away.
    fn tend_leases(&mut self) {
        // The renewer has stopped these already: forget them here.
        for (kind, name) in self.leases.take_lost() {
            if let Some((_, running)) = self.running.remove(&(kind, name.clone())) {
                running.stop();
            }
            if kind == Kind::Action {
                self.actions.remove(&name);
            }
            self.table.set_state(kind, &name, State::Stopped);
        }
        for (kind, name) in self.leases.adoptable() {
            self.boot(self.seen, Some((kind, &name)));
            if !self.is_running(kind, &name) {
                self.leases.release(kind, &name);
            } else if kind == Kind::Action {
                self.answer_orphaned_calls(&name);
            }
        }
    }

    /// A node taking an action over answers the recent calls that have no
    /// answer yet (its previous node died before answering), as a consumer
    /// group hands a dead consumer's pending entries to another: each call
    /// is answered once. Later calls reach it live.
    fn answer_orphaned_calls(&self, name: &str) {
        let (Some(action), Some(seen)) = (self.actions.get(name), self.seen) else {
            return;
        };
        let since = crate::store::id::min_id_at(
            crate::store::id::now_ms().saturating_sub(ORPHAN_CALLS_WINDOW_MS),
        );
        let call_topic = format!("{name}.call");
        let answers = action.answer_topics();
        let mut calls = Vec::new();
        let mut answered = std::collections::HashSet::new();
        let filter = TopicFilter::parse(&format!("{name}.*"));
        // Answers are looked for up to the newest frame, calls only up to
        // what the dispatcher has passed (later ones reach it live).
        for raw in self
            .store
            .scan(&filter, Bound::Included(since), Bound::Unbounded, false)
            .flatten()
        {
            let Ok(frame) = raw.parse() else { continue };
            if frame.topic == call_topic {
                if frame.id <= seen {
                    calls.push(frame);
                }
            } else if answers.contains(&frame.topic) {
                // A response names its call `frame_id`, some errors `call_id`.
                let meta = frame.meta.as_ref();
                for key in ["frame_id", "call_id"] {
                    if let Some(call) = meta.and_then(|m| m.get(key)).and_then(|c| c.as_str()) {
                        answered.insert(call.to_string());
                    }
                }
            }
        }
        for call in calls {
            if !answered.contains(&call.id.to_string()) {
                action.call(&self.store, call);
            }
        }
    }

    /// Whether a frame on `topic` may matter to `live`: the dispatcher
    /// sees every frame and parses only these (a narrower test than the
    /// `wakes_dispatcher`, which decides when it wakes).
    fn concerns(&self, topic: &str) -> bool {
        topic.starts_with("xs.")
            || topic
                .strip_suffix(".call")
                .is_some_and(|name| self.actions.contains_key(name))
    }

    fn live(&mut self, frame: Frame) {
        if let Some(topic) = lifecycle::parse_topic(&frame.topic) {
            match topic.event {
                Event::Create => self.create(topic, &frame),
                Event::Term => self.term(topic, &frame),
                _ => {}
            }
            return;
        }
        if let Some(name) = frame.topic.strip_suffix(".call") {
            if let Some(action) = self.actions.get(name) {
                action.call(&self.store, frame);
            }
        }
    }

    /// Loads and starts a processor; emits `invalid` when its script
    /// fails. Returns whether it started.
    fn start(&mut self, kind: Kind, name: &str, create: &Frame) -> bool {
        match self.load(kind, name, create) {
            Ok(loaded) => {
                self.launch(kind, name, create.id, loaded, false);
                true
            }
            Err(error) => {
                self.invalid(kind, name, create.id, error);
                false
            }
        }
    }

    /// A script that failed to load: `invalid`, with its error under the
    /// key cross.stream uses for the kind.
    fn invalid(&self, kind: Kind, name: &str, create_id: Id, error: String) {
        let key = match kind {
            Kind::Service => "reason",
            _ => "error",
        };
        self.table.failed(kind, name, error.clone());
        let meta = lifecycle::meta(kind, create_id, &[(key, Json::String(error))]);
        let _ = lifecycle::emit(&self.store, kind, name, Event::Invalid, meta);
    }

    fn load(&self, kind: Kind, name: &str, create: &Frame) -> Result<Processor, String> {
        Ok(match kind {
            Kind::Actor => Processor::Actor(Actor::load(&self.store, name, create)?),
            Kind::Service => {
                Processor::Service(Service::load(&self.store, name, create, &self.table)?)
            }
            Kind::Action => Processor::Action(Action::load(&self.store, name, create)?),
            Kind::View => Processor::View(View::load(&self.store, name, create)?),
        })
    }

    /// Runs a loaded processor. `fresh`: started by a live create (a view
    /// then folds from the start), not resumed at boot.
    fn launch(&mut self, kind: Kind, name: &str, create_id: Id, loaded: Processor, fresh: bool) {
        self.table.registered(kind, name);
        let running = match loaded {
            Processor::Actor(actor) => actor.spawn(self.store.clone(), self.table.clone()),
            Processor::Service(service) => service.spawn(self.store.clone()),
            Processor::View(view) => view.spawn(self.store.clone(), self.table.clone(), fresh),
            Processor::Action(action) => {
                let meta = lifecycle::meta(Kind::Action, create_id, &[]);
                let _ = lifecycle::emit(&self.store, Kind::Action, name, Event::Active, meta);
                self.actions.insert(name.to_string(), action);
                return;
            }
        };
        match running {
            Ok(running) => {
                let key = (kind, name.to_string());
                self.leases.attach(kind, name, running.stop_handle());
                // Never two of one processor on this node either.
                if let Some((_, old)) = self.running.insert(key, (create_id, running)) {
                    old.stop();
                }
            }
            Err(e) => eprintln!("xs: cannot start {} {name}: {e}", kind.word()),
        }
    }

    /// A live `create`: start, or replace what runs under that name. A
    /// script that fails leaves the running one alone.
    fn create(&mut self, topic: LifecycleTopic, create: &Frame) {
        let LifecycleTopic { kind, name, .. } = topic;
        // Another node runs it: that node replaces it.
        if !self.leases.acquire(kind, &name) {
            self.run_as_member(kind, &name, create);
            return;
        }
        let loaded = match self.load(kind, &name, create) {
            Ok(loaded) => loaded,
            Err(error) => {
                self.invalid(kind, &name, create.id, error);
                if kind == Kind::Actor {
                    self.respawn(&name);
                }
                if !self.is_running(kind, &name) {
                    self.leases.release(kind, &name);
                }
                return;
            }
        };
        if let Some((old_id, running)) = self.running.remove(&(kind, name.clone())) {
            running.stop();
            let more = match kind {
                Kind::Service => ("update_id", Json::String(create.id.to_string())),
                _ => ("frame_id", Json::String(create.id.to_string())),
            };
            let meta = lifecycle::meta(kind, old_id, &[more]);
            let _ = lifecycle::emit(&self.store, kind, &name, Event::Replaced, meta);
        }
        self.launch(kind, &name, create.id, loaded, true);
    }

    /// An actor whose lease another node holds still runs here when it is
    /// a consumer group member (`group:` in its options): each node's
    /// member takes its share of the group's frames, and the group hands
    /// each frame to one of them. Anything else is left to the holder,
    /// which also reports a script that fails.
    fn run_as_member(&mut self, kind: Kind, name: &str, create: &Frame) {
        if kind != Kind::Actor {
            return;
        }
        let Ok(Processor::Actor(actor)) = self.load(kind, name, create) else {
            return;
        };
        if !actor.is_group_member() {
            return;
        }
        if let Some((_, running)) = self.running.remove(&(kind, name.to_string())) {
            running.stop();
        }
        self.launch(kind, name, create.id, Processor::Actor(actor), true);
    }

    /// After a failed replacement the running actor carries on, and, as in
    /// cross.stream, says so with a new `active` (same actor id, same
    /// meta). It is not restarted, so no frame is missed in between.
    fn respawn(&mut self, name: &str) {
        if !self.running.contains_key(&(Kind::Actor, name.to_string())) {
            return;
        }
        let filter = TopicFilter::parse(&lifecycle::topic(Kind::Actor, name, Event::Active));
        let last_active = self
            .store
            .last_n(&filter, 1, std::ops::Bound::Unbounded)
            .ok()
            .and_then(|frames| frames.into_iter().next())
            .and_then(|raw| raw.parse().ok());
        if let Some(Json::Object(meta)) = last_active.and_then(|f| f.meta) {
            let _ = lifecycle::emit(&self.store, Kind::Actor, name, Event::Active, meta);
        }
    }

    /// A live `term`: stop it (where it runs) and say so; every node
    /// forgets it.
    fn term(&mut self, topic: LifecycleTopic, term: &Frame) {
        let (kind, name) = (topic.kind, topic.name.clone());
        self.stop_termed(topic, term);
        self.leases.release(kind, &name);
    }

    fn stop_termed(&mut self, topic: LifecycleTopic, term: &Frame) {
        self.reap();
        let LifecycleTopic { kind, name, .. } = topic;
        self.table.set_state(kind, &name, State::Stopped);
        let term_id = Json::String(term.id.to_string());
        let meta = match kind {
            Kind::Action => {
                if self.actions.remove(&name).is_none() {
                    return;
                }
                let mut meta = serde_json::Map::new();
                meta.insert("frame_id".into(), term_id);
                meta
            }
            Kind::Actor | Kind::Service | Kind::View => {
                let Some((create_id, running)) = self.running.remove(&(kind, name.clone())) else {
                    return;
                };
                running.stop();
                if kind != Kind::Service {
                    lifecycle::meta(kind, create_id, &[("frame_id", term_id)])
                } else {
                    lifecycle::meta(kind, create_id, &[])
                }
            }
        };
        let _ = lifecycle::emit(&self.store, kind, &name, Event::FinTerm, meta);
    }

    /// Shutdown: every service stops (all at once, each within its grace)
    /// and says `stopped`; actors, actions and views stop quietly.
    fn stop_services(&mut self) {
        self.reap();
        let running: Vec<((Kind, String), (Id, Running))> = self.running.drain().collect();
        for (_, (_, processor)) in &running {
            processor.signal_stop();
        }
        let now = Instant::now();
        for ((kind, name), (create_id, processor)) in running {
            let deadline = now + processor.grace;
            processor.finish_stop(deadline);
            if kind == Kind::Service {
                let meta = lifecycle::meta(kind, create_id, &[]);
                let _ = lifecycle::emit(&self.store, kind, &name, Event::Stopped, meta);
            }
            self.table.set_state(kind, &name, State::Stopped);
        }
        // What this node ran, another may run now.
        self.leases.release_all();
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.send(());
        }
    }

    /// Forgets processors whose threads ended on their own (fin.*).
    fn reap(&mut self) {
        let ended: Vec<(Kind, String)> = self
            .running
            .iter()
            .filter(|(_, (_, running))| running.finished())
            .map(|(key, _)| key.clone())
            .collect();
        for (kind, name) in ended {
            self.running.remove(&(kind, name.clone()));
            self.leases.release(kind, &name);
        }
    }

    fn stop_all(&mut self) {
        for (_, (_, running)) in self.running.drain() {
            running.stop();
        }
    }
}

/// A processor whose script loaded.
enum Processor {
    Actor(Actor),
    Service(Service),
    Action(Action),
    View(View),
}
