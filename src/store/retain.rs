//! Retention rules: `xs serve --retain '<pattern>=<rule>[,<rule>]'`.
//!
//! A rule names a topic pattern (`log.*`, `metrics`, `*`) and limits on
//! what it holds: an age (`7d`), a size (`1GiB`: the bytes of its frames'
//! JSON plus their payloads) and a frame count (`100000`). A frame goes
//! when any limit says so, oldest first.
//!
//! How it works: one `retain` thread per server, on both backends, wakes
//! every `--ttl-sweep` ms. Per rule it keeps running totals (frames,
//! bytes, the newest id counted): made by one scan of the pattern at the
//! first sweep, then brought up to date each sweep by scanning only the
//! frames newer than the last one counted. Removals it makes itself are
//! subtracted as it makes them. A removal it did not make (`xs remove`,
//! `time:`/`last:` ttls, another node's sweeper on Redis) shows as a
//! change in the store's count of removals under the rule's pattern
//! (`Store::removal_count`: `P.removed` on Redis, kept by the remove
//! script; locally the writer's, `Metrics::removed_under`) and makes that
//! rule count again from a scan, so the totals
//! never overstate what is held and nothing goes early. A scan also runs
//! every `RESCAN_EVERY` sweeps, to catch what an import of older ids
//! brought.
//!
//! Removals go the normal remove path (the writer's `WriteOp::Remove`
//! locally, the scripts' `remove` on Redis), so payload collection and
//! followers see them as they see `xs remove`: at most `BATCH` at a time,
//! each batch done before the next, so appends interleave. Each batch is
//! conditional (`Store::remove_if_unchanged`): if anyone removed frames
//! under the pattern since the rule was counted, nothing is removed and
//! the rule counts again next sweep. The check and the removal are one
//! step: one request to the local writer, which counts what its batch
//! removed before it; one script on Redis, so two nodes sweeping at once
//! never both remove "the oldest" frames.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Mutex;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::id::{now_ms, rfc3339_from_ms, Id};
use super::topic::{validate_topic_query, TopicFilter, TopicPattern};
use super::{RawFrame, Store, StoreError};

/// The most removals sent to the writer before waiting for them.
pub const BATCH: usize = 1000;

/// Sweeps between full recounts of every rule.
const RESCAN_EVERY: u64 = 600;

/// Payload sizes remembered between sweeps (content never changes size).
const SIZE_CACHE_MAX: usize = 100_000;

/// One `--retain` flag, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainRule {
    /// The pattern as given (`log.*`).
    pub pattern: String,
    /// The rules as given (`7d,1GiB`).
    pub rules: String,
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
    pub max_frames: Option<u64>,
    filter: TopicFilter,
}

impl RetainRule {
    /// Parses `<pattern>=<rule>[,<rule>]`; the error names what is wrong.
    pub fn parse(spec: &str) -> Result<RetainRule, String> {
        let bad = |why: String| format!("invalid --retain '{spec}': {why}");
        let (pattern, rules) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected <pattern>=<rule>[,<rule>]".into()))?;
        let pattern = pattern.trim();
        if pattern.contains(',') {
            return Err(bad("one pattern per --retain".into()));
        }
        validate_topic_query(pattern).map_err(bad)?;
        let mut rule = RetainRule {
            pattern: pattern.to_string(),
            rules: rules.trim().to_string(),
            max_age: None,
            max_bytes: None,
            max_frames: None,
            filter: TopicFilter::parse(pattern),
        };
        let mut any = false;
        for part in rules.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(bad("an empty rule".into()));
            }
            any = true;
            let (slot, value) = match parse_limit(part).map_err(bad)? {
                Limit::Age(age) => ("age", rule.max_age.replace(age).is_some()),
                Limit::Bytes(bytes) => ("size", rule.max_bytes.replace(bytes).is_some()),
                Limit::Frames(n) => ("count", rule.max_frames.replace(n).is_some()),
            };
            if value {
                return Err(bad(format!("two {slot} rules")));
            }
        }
        if !any {
            return Err(bad("no rule".into()));
        }
        Ok(rule)
    }
}

enum Limit {
    Age(Duration),
    Bytes(u64),
    Frames(u64),
}

/// One rule: `7d`/`12h`/`30m`/`45s`/`500ms`/`2w`, `1GiB`/`500MB`/`64KB`/
/// `100B`, or a bare count of frames.
fn parse_limit(text: &str) -> Result<Limit, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let expected = "expected an age (7d, 12h, 30m, 45s, 500ms), a size (1GiB, 500MB, 64KB, 100B) \
                    or a frame count (100000)";
    let n: u64 = number
        .parse()
        .map_err(|_| format!("unknown rule '{text}': {expected}"))?;
    if n == 0 {
        return Err(format!("rule '{text}' must be at least 1"));
    }
    let too_large = || format!("rule '{text}' is too large");
    let times = |k: u64| n.checked_mul(k).ok_or_else(too_large);
    let age = |ms: u64| times(ms).map(|ms| Limit::Age(Duration::from_millis(ms)));
    match unit {
        "" => Ok(Limit::Frames(n)),
        "ms" => age(1),
        "s" => age(1000),
        "m" => age(60_000),
        "h" => age(3_600_000),
        "d" => age(86_400_000),
        "w" => age(7 * 86_400_000),
        _ => {
            let k: u64 = match unit.to_ascii_lowercase().as_str() {
                "b" => 1,
                "kb" => 1000,
                "mb" => 1000_u64.pow(2),
                "gb" => 1000_u64.pow(3),
                "tb" => 1000_u64.pow(4),
                "kib" => 1 << 10,
                "mib" => 1 << 20,
                "gib" => 1 << 30,
                "tib" => 1 << 40,
                _ => return Err(format!("unknown rule '{text}': {expected}")),
            };
            times(k).map(Limit::Bytes)
        }
    }
}

/// What a rule's pattern holds, as the sweeper last counted it.
#[derive(Debug, Clone, Default)]
struct Held {
    /// False until the first scan.
    counted: bool,
    frames: u64,
    bytes: u64,
    /// The newest frame counted.
    last_seen: Option<Id>,
    oldest: Option<Id>,
    /// The last sweep: when (ms), frames and bytes it removed.
    swept_at: Option<u64>,
    removed_frames: u64,
    removed_bytes: u64,
    /// Since the server started.
    total_frames: u64,
    total_bytes: u64,
}

/// What one rule's enforcement removed in a sweep.
#[derive(Default)]
struct Enforced {
    frames: u64,
    bytes: u64,
    /// Frames were removed by someone else: stopped, counts again.
    stale: bool,
}

/// The rules and what the sweeper knows of them; `GET /retain` reads it.
pub struct Retention {
    rules: Vec<RetainRule>,
    held: Mutex<Vec<Held>>,
    /// Dropped by `stop`: the sweeper then ends.
    stop: Mutex<Option<Sender<()>>>,
}

impl Retention {
    pub fn new(rules: Vec<RetainRule>) -> Retention {
        let held = vec![Held::default(); rules.len()];
        Retention {
            rules,
            held: Mutex::new(held),
            stop: Mutex::new(None),
        }
    }

    pub fn stop(&self) {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// One JSON object per rule: the rule, what its pattern holds at the
    /// last sweep, and what that sweep removed.
    pub fn status(&self) -> Vec<serde_json::Value> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        self.rules
            .iter()
            .zip(held.iter())
            .map(|(rule, held)| {
                let counted = |n: u64| held.counted.then_some(n);
                serde_json::json!({
                    "pattern": rule.pattern,
                    "rules": rule.rules,
                    "max_age_ms": rule.max_age.map(|d| d.as_millis() as u64),
                    "max_bytes": rule.max_bytes,
                    "max_frames": rule.max_frames,
                    "frames": counted(held.frames),
                    "bytes": counted(held.bytes),
                    "oldest": held.oldest.map(|id| id.to_string()),
                    "oldest_age_ms": held.oldest.map(|id| now.saturating_sub(id.timestamp())),
                    "swept_at": held.swept_at.map(rfc3339_from_ms),
                    "removed_frames": held.swept_at.map(|_| held.removed_frames),
                    "removed_bytes": held.swept_at.map(|_| held.removed_bytes),
                    "removed_total_frames": held.total_frames,
                    "removed_total_bytes": held.total_bytes,
                })
            })
            .collect()
    }
}

/// The index whose removals a rule's totals depend on: `t:<topic>`,
/// `p:<prefix.>` or `*` (how both backends count removals: `P.removed` on
/// Redis, `Metrics::removed_under` locally).
pub fn removal_index(filter: &TopicFilter) -> String {
    match filter {
        TopicFilter::Patterns(patterns) => match patterns.first() {
            Some(TopicPattern::Exact(topic)) => format!("t:{topic}"),
            Some(TopicPattern::Prefix(prefix)) => format!("p:{prefix}"),
            None => "*".into(),
        },
        TopicFilter::All => "*".into(),
    }
}

/// Starts the sweeper when there are rules and sweeping is on.
pub fn start(store: &Store) -> Result<(), StoreError> {
    let retention = store.retention();
    let Some(every) = store.options().ttl_sweep else {
        return Ok(());
    };
    if retention.rules.is_empty() {
        return Ok(());
    }
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    *retention.stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(stop_tx);
    let store = store.clone();
    std::thread::Builder::new()
        .name("retain".into())
        .spawn(move || Sweeper::new(store).run(every, stop_rx))
        .map(|_| ())
        .map_err(|e| StoreError::io("starting the retention sweeper", e))
}

struct Sweeper {
    store: Store,
    sizes: HashMap<String, u64>,
    /// Per rule: the count of removals under its pattern (`removal_count`)
    /// its totals agree with; anything else moving it means they may
    /// overstate, and the rule counts again.
    removals_seen: Vec<Option<u64>>,
    sweeps: u64,
}

impl Sweeper {
    fn new(store: Store) -> Sweeper {
        let rules = store.retention().rules.len();
        Sweeper {
            store,
            sizes: HashMap::new(),
            removals_seen: vec![None; rules],
            sweeps: 0,
        }
    }

    fn run(mut self, every: Duration, stop: Receiver<()>) {
        let ticks = crossbeam_channel::tick(every);
        loop {
            crossbeam_channel::select! {
                recv(stop) -> _ => return,
                recv(ticks) -> _ => {
                    if let Err(e) = self.sweep() {
                        if !matches!(e, StoreError::Closed) {
                            eprintln!("xs: retention sweep: {e}");
                        }
                    }
                }
            }
        }
    }

    fn sweep(&mut self) -> Result<(), StoreError> {
        let store = self.store.clone();
        let retention = store.retention();
        let rescan = self.sweeps.is_multiple_of(RESCAN_EVERY);
        self.sweeps += 1;
        for (index, rule) in retention.rules.iter().enumerate() {
            // Read before any counting: a removal after it shows when we
            // remove (see `remove_if_unchanged`).
            let mut seen = store.removal_count(&rule.filter)?;
            let recount = rescan || self.removals_seen[index] != Some(seen);
            self.removals_seen[index] = None;
            let mut held = retention.held.lock().unwrap_or_else(|e| e.into_inner())[index].clone();
            if recount || !held.counted {
                held = Held {
                    swept_at: held.swept_at,
                    total_frames: held.total_frames,
                    total_bytes: held.total_bytes,
                    ..Held::default()
                };
            }
            self.count_new(rule, &mut held)?;
            let outcome = self.enforce(rule, &mut held, &mut seen)?;
            held.oldest = store
                .scan(&rule.filter, Bound::Unbounded, Bound::Unbounded, false)
                .next()
                .transpose()?
                .map(|frame| frame.id);
            held.swept_at = Some(now_ms());
            held.removed_frames = outcome.frames;
            held.removed_bytes = outcome.bytes;
            held.total_frames += outcome.frames;
            held.total_bytes += outcome.bytes;
            retention.held.lock().unwrap_or_else(|e| e.into_inner())[index] = held;
            if !outcome.stale {
                self.removals_seen[index] = Some(seen);
            }
        }
        Ok(())
    }

    /// Adds the frames newer than the last one counted.
    fn count_new(&mut self, rule: &RetainRule, held: &mut Held) -> Result<(), StoreError> {
        let lower = match held.last_seen {
            Some(id) => Bound::Excluded(id),
            None => Bound::Unbounded,
        };
        for frame in self
            .store
            .scan(&rule.filter, lower, Bound::Unbounded, false)
        {
            let frame = frame?;
            held.frames += 1;
            held.bytes += self.size_of(&frame);
            held.last_seen = Some(frame.id);
        }
        held.counted = true;
        Ok(())
    }

    /// Removes the oldest frames while any limit is exceeded, `BATCH` at a
    /// time, as long as nobody else removes frames (`seen`: the store's
    /// removal count our totals agree with).
    fn enforce(
        &mut self,
        rule: &RetainRule,
        held: &mut Held,
        seen: &mut u64,
    ) -> Result<Enforced, StoreError> {
        let cutoff = rule
            .max_age
            .map(|age| now_ms().saturating_sub(age.as_millis() as u64));
        let over = |frames: u64, bytes: u64, frame: &RawFrame| {
            rule.max_frames.is_some_and(|max| frames > max)
                || rule.max_bytes.is_some_and(|max| bytes > max)
                || cutoff.is_some_and(|cut| frame.id.timestamp() < cut)
        };
        let mut done = Enforced::default();
        let mut after = Bound::Unbounded;
        loop {
            let (mut frames, mut bytes) = (held.frames, held.bytes);
            let mut doomed = Vec::new();
            for frame in self
                .store
                .scan(&rule.filter, after, Bound::Unbounded, false)
            {
                let frame = frame?;
                // Only what was counted: a newer frame waits for the next
                // sweep.
                if held.last_seen.is_none_or(|last| frame.id > last) || !over(frames, bytes, &frame)
                {
                    break;
                }
                let size = self.size_of(&frame);
                frames = frames.saturating_sub(1);
                bytes = bytes.saturating_sub(size);
                doomed.push((frame.id, size));
                if doomed.len() >= BATCH {
                    break;
                }
            }
            let Some(&(last, _)) = doomed.last() else {
                return Ok(done);
            };
            let ids: Vec<Id> = doomed.iter().map(|(id, _)| *id).collect();
            let Some(removed) = self.store.remove_if_unchanged(&rule.filter, &ids, *seen)? else {
                done.stale = true;
                return Ok(done);
            };
            *seen += removed;
            held.frames = frames;
            held.bytes = bytes;
            done.frames += ids.len() as u64;
            done.bytes += doomed.iter().map(|(_, size)| size).sum::<u64>();
            if doomed.len() < BATCH {
                return Ok(done);
            }
            after = Bound::Excluded(last);
        }
    }

    /// A frame's bytes: its JSON and its payload.
    fn size_of(&mut self, frame: &RawFrame) -> u64 {
        let json = frame.json.len() as u64;
        let Some(hash) = frame.parse().ok().and_then(|f| f.hash) else {
            return json;
        };
        if let Some(size) = self.sizes.get(&hash) {
            return json + size;
        }
        let size = self.store.payload_size(&hash).unwrap_or(0);
        if self.sizes.len() >= SIZE_CACHE_MAX {
            self.sizes.clear();
        }
        self.sizes.insert(hash, size);
        json + size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse() {
        let rule = RetainRule::parse("log.*=7d,1GiB,100000").unwrap();
        assert_eq!(rule.pattern, "log.*");
        assert_eq!(rule.rules, "7d,1GiB,100000");
        assert_eq!(rule.max_age, Some(Duration::from_secs(7 * 86400)));
        assert_eq!(rule.max_bytes, Some(1 << 30));
        assert_eq!(rule.max_frames, Some(100_000));
        let rule = RetainRule::parse("metrics=500MB").unwrap();
        assert_eq!(rule.max_bytes, Some(500_000_000));
        assert_eq!(rule.max_age, None);
        assert_eq!(
            RetainRule::parse("a=30m").unwrap().max_age,
            Some(Duration::from_secs(1800))
        );
        assert!(RetainRule::parse("*=12h").is_ok());
    }

    #[test]
    fn bad_rules_name_themselves() {
        for (spec, why) in [
            ("log.*", "expected <pattern>=<rule>[,<rule>]"),
            ("log.*=", "an empty rule"),
            ("log.*=7x", "unknown rule '7x'"),
            ("log.*=0", "rule '0' must be at least 1"),
            ("log.*=1d,2d", "two age rules"),
            ("1bad=1d", "Topic must start with"),
            ("a,b=1d", "one pattern per --retain"),
            ("a=99999999999999999999GiB", "unknown rule"),
            ("a=99999999999TiB", "too large"),
        ] {
            let error = RetainRule::parse(spec).unwrap_err();
            assert!(
                error.starts_with(&format!("invalid --retain '{spec}': ")) && error.contains(why),
                "{spec}: {error}"
            );
            assert!(!error.contains('\n'));
        }
    }
}
