//! Read routes: `GET /` (cat, follow, rev), `/last`, `/first`, `/<id>`,
//! `/<id>/next`, `/<id>/prev`.

use std::ops::Bound;
use std::time::Duration;

use tiny_http::Request;

use super::query;
use super::respond::{Answer, ChunkedStream, Handled, Reply};
use crate::store::id::parse_id;
use crate::store::FollowerGuard;
use crate::store::{Follow, ReadEvent, ReadOptions, Reader};
use crate::store::{Id, RawFrame, Store, TopicFilter};

/// How long a follow stream stays silent before it checks, with a lone
/// newline, that its client is still there.
const IDLE_PROBE: Duration = Duration::from_secs(20);

/// How a stream frames each record.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Sse,
}

fn wants_sse(request: &Request) -> bool {
    request
        .headers()
        .iter()
        .any(|h| h.field.equiv("Accept") && h.value.as_str() == "text/event-stream")
}

/// `GET /`: history, then live frames when following.
pub fn cat(store: &Store, request: &Request, pairs: &[(String, String)]) -> Handled {
    let options = read_options(pairs).map_err(|e| Reply::error(400, e))?;
    Ok(stream(store, request, options))
}

/// `GET /`'s query as what to read; unknown keys are ignored.
fn read_options(pairs: &[(String, String)]) -> Result<ReadOptions, String> {
    let mut options = ReadOptions::default();
    for (key, value) in pairs {
        match key.as_str() {
            "follow" => options.follow = parse_follow(value)?,
            "new" => options.new = !matches!(value.as_str(), "false" | "no" | "0"),
            "after" => options.after = Some(parse_query_id("after", value)?),
            "from" => options.from = Some(parse_query_id("from", value)?),
            "before" => options.before = Some(parse_query_id("before", value)?),
            "limit" => options.limit = Some(parse_count("limit", value)?),
            "last" => options.last = Some(parse_count("last", value)?),
            "topic" => options.topic = TopicFilter::parse(value),
            "with-timestamp" => options.with_timestamp = true,
            "rev" => options.rev = !matches!(value.as_str(), "false" | "no" | "0"),
            _ => {}
        }
    }
    if options.rev && options.follow.is_on() {
        return Err("rev cannot be combined with follow".into());
    }
    Ok(options)
}

/// cross.stream's `follow` query value: empty/`yes`/`true` on, an integer
/// is a pulse interval (so `1` is a 1 ms pulse), `false`/`no` off.
fn parse_follow(value: &str) -> Result<Follow, String> {
    match value {
        "" | "yes" | "true" => Ok(Follow::On),
        "false" | "no" => Ok(Follow::Off),
        _ => value
            .parse::<u64>()
            .map(Follow::Pulse)
            .map_err(|_| format!("Invalid follow value: {value}")),
    }
}

fn parse_query_id(key: &str, value: &str) -> Result<Id, String> {
    parse_id(value).map_err(|e| format!("Invalid {key}: {e}"))
}

fn parse_count(key: &str, value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .map_err(|_| format!("Invalid {key}: expected a non-negative integer, got '{value}'"))
}

/// A read streamed as NDJSON or SSE (as the request accepts).
fn stream(store: &Store, request: &Request, options: ReadOptions) -> Answer {
    let format = if wants_sse(request) {
        Format::Sse
    } else {
        Format::Ndjson
    };
    let store = store.clone();
    Answer::stream(move |request| write_stream(&store, request, options, format))
}

/// Writes a read until it ends or the client leaves.
fn write_stream(store: &Store, request: Request, options: ReadOptions, format: Format) {
    let content_type = match format {
        Format::Sse => "text/event-stream",
        Format::Ndjson => "application/x-ndjson",
    };
    let with_timestamp = options.with_timestamp;
    let _follower = options
        .follow
        .is_on()
        .then(|| FollowerGuard::new(store.metrics()));
    let mut reader = Reader::new(store.clone(), options);
    // The first step notes where the read starts (the head) before the
    // client sees the response head: a client that appends as soon as the
    // stream opens never misses its own frame under `new`.
    let mut first = Some(reader.next_event(std::time::Duration::ZERO));
    let Ok(mut out) = ChunkedStream::start(request, content_type) else {
        return;
    };
    let mut buf = Vec::with_capacity(256 * 1024);
    loop {
        let (next, waited) = match first.take() {
            Some(event) => (event, false),
            None => (reader.next_event(IDLE_PROBE), true),
        };
        let event = match next {
            Ok(event) => event,
            Err(e) => {
                // Headers are gone already: end the stream, say why on stderr.
                eprintln!("xs: read failed: {e}");
                break;
            }
        };
        let written = match event {
            ReadEvent::History(frames) => {
                buf.clear();
                for frame in &frames {
                    encode(&mut buf, frame, format, with_timestamp);
                }
                out.chunk(&buf).and_then(|_| out.flush())
            }
            ReadEvent::Live(frame) => {
                buf.clear();
                encode(&mut buf, &frame, format, with_timestamp);
                out.chunk(&buf).and_then(|_| out.flush())
            }
            ReadEvent::Idle => {
                // Only a real quiet spell is worth a probe.
                if !waited || !reader.options().follow.is_on() {
                    continue;
                }
                let probe: &[u8] = match format {
                    Format::Ndjson => b"\n",
                    Format::Sse => b":\n",
                };
                out.chunk(probe).and_then(|_| out.flush())
            }
            ReadEvent::End => break,
        };
        if written.is_err() {
            return;
        }
    }
    let _ = out.finish();
}

fn encode(buf: &mut Vec<u8>, frame: &RawFrame, format: Format, with_timestamp: bool) {
    match format {
        Format::Ndjson => {
            frame.render_into(buf, with_timestamp);
            buf.push(b'\n');
        }
        Format::Sse => {
            buf.extend_from_slice(b"id: ");
            buf.extend_from_slice(frame.id.to_string().as_bytes());
            buf.extend_from_slice(b"\ndata: ");
            frame.render_into(buf, with_timestamp);
            buf.extend_from_slice(b"\n\n");
        }
    }
}

/// Which end `/last` and `/first` read from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum End {
    Last,
    First,
}

/// `GET /last[/<topics>]` and `GET /first[/<topics>]`.
pub fn ends(
    store: &Store,
    request: &Request,
    spec: &str,
    pairs: &[(String, String)],
    end: End,
) -> Handled {
    let count_key = match end {
        End::Last => "last",
        End::First => "first",
    };
    // cross.stream falls back to 1 when the count does not parse.
    let count = query::get(pairs, count_key)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1);
    let with_timestamp = query::get(pairs, "with-timestamp").is_some();
    let filter = TopicFilter::parse(spec);
    if end == End::Last && query::flag(pairs, "follow") {
        let options = ReadOptions {
            follow: Follow::On,
            last: Some(count),
            topic: filter,
            with_timestamp,
            ..ReadOptions::default()
        };
        return Ok(stream(store, request, options));
    }
    let frames = match end {
        End::Last => store.last_n(&filter, count as usize, Bound::Unbounded),
        End::First => store.first_n(&filter, count as usize),
    };
    let frames = frames?;
    if frames.is_empty() {
        return Err(Reply::not_found());
    }
    // The requested count picks the shape, even when fewer frames exist.
    if count == 1 {
        return Ok(Reply::json(frames[0].render(with_timestamp)).into());
    }
    let mut body = Vec::new();
    for frame in &frames {
        body.extend_from_slice(&frame.render(with_timestamp));
        body.push(b'\n');
    }
    Ok(Reply::with_type(200, "application/x-ndjson", body).into())
}

/// A frame id from the path.
pub fn path_id(id: &str) -> Result<Id, Reply> {
    parse_id(id).map_err(|e| Reply::error(400, format!("Invalid frame ID: {e}")))
}

/// `GET /<id>`.
pub fn get(store: &Store, id: &str, pairs: &[(String, String)]) -> Handled<Reply> {
    let frame = store.get(path_id(id)?)?.ok_or_else(Reply::not_found)?;
    let with_timestamp = query::get(pairs, "with-timestamp").is_some();
    Ok(Reply::json(frame.render(with_timestamp)))
}

/// `GET /<id>/next` and `GET /<id>/prev`: the neighbour, optionally within
/// a topic filter.
pub fn neighbour(
    store: &Store,
    id: &str,
    pairs: &[(String, String)],
    forward: bool,
) -> Handled<Reply> {
    let id = path_id(id)?;
    let filter = TopicFilter::from_option(query::get(pairs, "topic"));
    let found = if forward {
        store
            .scan(&filter, Bound::Excluded(id), Bound::Unbounded, false)
            .next()
    } else {
        store
            .scan(&filter, Bound::Unbounded, Bound::Excluded(id), true)
            .next()
    };
    let frame = found.ok_or_else(Reply::not_found)??;
    let with_timestamp = query::get(pairs, "with-timestamp").is_some();
    Ok(Reply::json(frame.render(with_timestamp)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn follow_values() {
        assert_eq!(parse_follow("").unwrap(), Follow::On);
        assert_eq!(parse_follow("true").unwrap(), Follow::On);
        assert_eq!(parse_follow("yes").unwrap(), Follow::On);
        assert_eq!(parse_follow("1").unwrap(), Follow::Pulse(1));
        assert_eq!(parse_follow("no").unwrap(), Follow::Off);
        assert_eq!(
            parse_follow("maybe").unwrap_err(),
            "Invalid follow value: maybe"
        );
    }

    #[test]
    fn query_parsing() {
        let o = read_options(&pairs(&[("follow", ""), ("unknown", "x")])).unwrap();
        assert_eq!(o.follow, Follow::On);
        assert!(read_options(&pairs(&[("after", "123")]))
            .unwrap_err()
            .starts_with("Invalid after: "));
        assert_eq!(
            read_options(&pairs(&[("limit", "-1")])).unwrap_err(),
            "Invalid limit: expected a non-negative integer, got '-1'"
        );
        assert_eq!(
            read_options(&pairs(&[("rev", ""), ("follow", "")])).unwrap_err(),
            "rev cannot be combined with follow"
        );
        let o = read_options(&pairs(&[("new", "false")])).unwrap();
        assert!(!o.new);
    }
}
