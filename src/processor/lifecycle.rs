//! The lifecycle rules every processor kind shares: its topics
//! (`xs.<kind>.<name>.<event>`), the two-slot boot compaction that decides
//! which processors come back after a restart, and emitting lifecycle
//! frames; and the `view.` keys, where views keep their state and nobody
//! else may write.

use serde_json::{Map, Value};

use crate::store::{Draft, Frame, Id, Store};

/// The kinds of processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Actor,
    Service,
    Action,
    View,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Actor => "actor",
            Kind::Service => "service",
            Kind::Action => "action",
            Kind::View => "view",
        }
    }

    /// The meta key naming the originating create frame.
    pub fn id_key(self) -> &'static str {
        match self {
            Kind::Actor => "actor_id",
            Kind::Service => "source_id",
            Kind::Action => "action_id",
            Kind::View => "view_id",
        }
    }

    fn from_word(word: &str) -> Option<Kind> {
        match word {
            "actor" => Some(Kind::Actor),
            "service" => Some(Kind::Service),
            "action" => Some(Kind::Action),
            "view" => Some(Kind::View),
            _ => None,
        }
    }
}

/// The events of a processor's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Create,
    Term,
    Active,
    Invalid,
    FinOk,
    FinError,
    FinTerm,
    Replaced,
    Stopped,
    Exited,
}

/// Event suffixes, longest first where one ends another.
const EVENTS: &[(&str, Event)] = &[
    ("fin.ok", Event::FinOk),
    ("fin.error", Event::FinError),
    ("fin.term", Event::FinTerm),
    ("create", Event::Create),
    ("term", Event::Term),
    ("active", Event::Active),
    ("invalid", Event::Invalid),
    ("replaced", Event::Replaced),
    ("stopped", Event::Stopped),
    ("exited", Event::Exited),
];

impl Event {
    pub fn word(self) -> &'static str {
        EVENTS
            .iter()
            .find(|(_, e)| *e == self)
            .map(|(w, _)| *w)
            .unwrap_or("?")
    }
}

/// A lifecycle topic taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleTopic {
    pub kind: Kind,
    pub name: String,
    pub event: Event,
}

/// Parses `xs.<kind>.<name>.<event>`; the name may itself hold dots.
pub fn parse_topic(topic: &str) -> Option<LifecycleTopic> {
    let rest = topic.strip_prefix("xs.")?;
    let (kind, rest) = rest.split_once('.')?;
    let kind = Kind::from_word(kind)?;
    for (word, event) in EVENTS {
        if let Some(name) = rest.strip_suffix(word).and_then(|r| r.strip_suffix('.')) {
            if !name.is_empty() {
                return Some(LifecycleTopic {
                    kind,
                    name: name.to_string(),
                    event: *event,
                });
            }
        }
    }
    None
}

/// The topic of a lifecycle event.
pub fn topic(kind: Kind, name: &str, event: Event) -> String {
    format!("xs.{}.{name}.{}", kind.word(), event.word())
}

/// The create frame a lifecycle frame refers to (its `*_id` meta).
pub fn source_id(kind: Kind, frame: &Frame) -> Option<Id> {
    let id = frame.meta.as_ref()?.get(kind.id_key())?.as_str()?;
    crate::store::id::parse_id(id).ok()
}

/// Boot compaction: per processor, the create that last became active
/// (`confirmed`) and the create not yet answered (`pending`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slots {
    pub confirmed: Option<Id>,
    pub pending: Option<Id>,
}

impl Slots {
    /// Folds one historical lifecycle frame in.
    pub fn apply(&mut self, event: Event, frame_id: Id, source: Option<Id>) {
        match event {
            Event::Create => self.pending = Some(frame_id),
            Event::Active => {
                self.confirmed = source;
                if self.pending == source {
                    self.pending = None;
                }
            }
            Event::Invalid => {
                if self.pending == source {
                    self.pending = None;
                }
            }
            Event::Term | Event::FinOk | Event::FinError | Event::FinTerm => {
                *self = Slots::default();
            }
            Event::Replaced | Event::Stopped | Event::Exited => {}
        }
    }

    /// The create to start at the threshold, pending first.
    pub fn pick(&self) -> Option<Id> {
        self.pending.or(self.confirmed)
    }
}

/// Appends a lifecycle frame (ttl unset, as cross.stream's are) and waits
/// for it to be stored.
pub fn emit(
    store: &Store,
    kind: Kind,
    name: &str,
    event: Event,
    meta: Map<String, Value>,
) -> Result<Frame, crate::store::StoreError> {
    store.append(Draft::new(topic(kind, name, event)).meta(Some(Value::Object(meta))))
}

/// `{<kind id key>: <create id>}` plus more fields.
pub fn meta(kind: Kind, create_id: Id, more: &[(&str, Value)]) -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert(kind.id_key().into(), Value::String(create_id.to_string()));
    for (key, value) in more {
        meta.insert((*key).into(), value.clone());
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Id {
        Id::from_u128(n)
    }

    #[test]
    fn topics_parse_with_dotted_names() {
        let t = parse_topic("xs.actor.my.counter.fin.error").unwrap();
        assert_eq!(
            (t.kind, t.name.as_str(), t.event),
            (Kind::Actor, "my.counter", Event::FinError)
        );
        let t = parse_topic("xs.service.tail.create").unwrap();
        assert_eq!((t.kind, t.event), (Kind::Service, Event::Create));
        assert!(parse_topic("xs.actor.create").is_none());
        assert_eq!(parse_topic("xs.view.x.create").unwrap().kind, Kind::View);
        assert!(parse_topic("xs.module.x").is_none());
        assert!(parse_topic("note").is_none());
        assert_eq!(
            topic(Kind::Action, "a.b", Event::FinTerm),
            "xs.action.a.b.fin.term"
        );
    }

    #[test]
    fn create_sets_pending_and_active_confirms_it() {
        let mut slots = Slots::default();
        slots.apply(Event::Create, id(1), None);
        assert_eq!(slots.pick(), Some(id(1)));
        slots.apply(Event::Active, id(2), Some(id(1)));
        assert_eq!(
            slots,
            Slots {
                confirmed: Some(id(1)),
                pending: None
            }
        );
    }

    #[test]
    fn invalid_clears_only_its_own_pending() {
        let mut slots = Slots::default();
        slots.apply(Event::Create, id(1), None);
        slots.apply(Event::Active, id(2), Some(id(1)));
        slots.apply(Event::Create, id(3), None);
        slots.apply(Event::Invalid, id(4), Some(id(3)));
        assert_eq!(slots.pick(), Some(id(1)));
        slots.apply(Event::Create, id(5), None);
        slots.apply(Event::Invalid, id(6), Some(id(3)));
        assert_eq!(slots.pick(), Some(id(5)));
    }

    #[test]
    fn term_and_fin_clear_both_replaced_and_stopped_do_not() {
        let mut slots = Slots::default();
        slots.apply(Event::Create, id(1), None);
        slots.apply(Event::Active, id(2), Some(id(1)));
        slots.apply(Event::Stopped, id(3), Some(id(1)));
        slots.apply(Event::Replaced, id(4), Some(id(1)));
        assert_eq!(slots.pick(), Some(id(1)));
        slots.apply(Event::Term, id(5), None);
        assert_eq!(slots.pick(), None);
        slots.apply(Event::Create, id(6), None);
        slots.apply(Event::FinError, id(7), Some(id(6)));
        assert_eq!(slots.pick(), None);
    }
}
