//! `--since` / `--until`: a point in time, written as RFC 3339 or as a
//! duration back from now (`90s`, `10m`, `2h`, `3d`).
//!
//! Ids carry their millisecond time, so a time bound is just an id bound:
//! the server needs no time-based query, the client seeks.

use crate::store::id::{days_from_civil, min_id_at, Id};

/// What `<when>` looks like, for error messages.
const EXPECTED: &str = "expected an RFC 3339 time (2025-03-01T12:00:00Z) \
                        or a duration back from now (90s, 10m, 2h, 3d)";

/// The id bound for `--since`: the smallest id of that millisecond, used
/// as an inclusive `from`.
pub fn since_id(text: &str, now_ms: u64) -> Result<Id, String> {
    Ok(min_id_at(parse_when(text, now_ms)?))
}

/// The id bound for `--until`: the smallest id *after* that millisecond,
/// used as an exclusive `before`, so frames of the named millisecond stay
/// in.
pub fn until_id(text: &str, now_ms: u64) -> Result<Id, String> {
    Ok(min_id_at(parse_when(text, now_ms)?.saturating_add(1)))
}

/// Milliseconds since the Unix epoch named by `text`.
pub fn parse_when(text: &str, now_ms: u64) -> Result<u64, String> {
    if let Some(back) = parse_duration(text) {
        return Ok(now_ms.saturating_sub(back?));
    }
    parse_rfc3339(text).ok_or_else(|| format!("'{text}': {EXPECTED}"))?
}

/// A duration in milliseconds, `None` when `text` is not shaped like one.
pub fn parse_duration(text: &str) -> Option<Result<u64, String>> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(unit_at);
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    if digits.is_empty() {
        return None;
    }
    Some(
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_ms))
            .ok_or_else(|| format!("'{text}': duration too large")),
    )
}

/// A cursor over the text of a timestamp.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    /// Exactly `width` decimal digits.
    fn number(&mut self, width: usize) -> Option<i64> {
        let digits = self.bytes.get(self.at..self.at + width)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.at += width;
        Some(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    }

    /// One of the `allowed` bytes, returned.
    fn one_of(&mut self, allowed: &[u8]) -> Option<u8> {
        let byte = *self.bytes.get(self.at)?;
        if !allowed.contains(&byte) {
            return None;
        }
        self.at += 1;
        Some(byte)
    }

    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }
}

/// Parses `YYYY-MM-DD` (midnight UTC) or
/// `YYYY-MM-DD(T|t| )HH:MM:SS[.fraction](Z|z|±HH:MM)`; `None` when the text is
/// not a timestamp, `Some(Err)` when it is one before 1970.
fn parse_rfc3339(text: &str) -> Option<Result<u64, String>> {
    let mut c = Cursor {
        bytes: text.as_bytes(),
        at: 0,
    };
    let year = c.number(4)?;
    c.one_of(b"-")?;
    let month = u32::try_from(c.number(2)?).ok()?;
    c.one_of(b"-")?;
    let day = u32::try_from(c.number(2)?).ok()?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut seconds = days_from_civil(year, month, day) * 86_400;
    let mut millis = 0;
    if !c.done() {
        c.one_of(b"Tt ")?;
        let hour = c.number(2)?;
        c.one_of(b":")?;
        let minute = c.number(2)?;
        c.one_of(b":")?;
        let second = c.number(2)?;
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        seconds += hour * 3600 + minute * 60 + second;
        if c.one_of(b".").is_some() {
            let start = c.at;
            while c.one_of(b"0123456789").is_some() {}
            let fraction = &text[start..c.at];
            if fraction.is_empty() {
                return None;
            }
            millis = format!("{fraction:0<3}")[..3].parse::<i64>().ok()?;
        }
        seconds -= match c.one_of(b"Zz+-")? {
            b'Z' | b'z' => 0,
            sign => {
                let hours = c.number(2)?;
                c.one_of(b":")?;
                let minutes = c.number(2)?;
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let offset = hours * 3600 + minutes * 60;
                if sign == b'+' {
                    offset
                } else {
                    -offset
                }
            }
        };
    }
    if !c.done() {
        return None;
    }
    let ms = seconds * 1000 + millis;
    Some(u64::try_from(ms).map_err(|_| format!("'{text}' is before 1970")))
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_740_830_400_123; // 2025-03-01T12:00:00.123Z

    #[test]
    fn durations_count_back_from_now() {
        assert_eq!(parse_when("90s", NOW), Ok(NOW - 90_000));
        assert_eq!(parse_when("10m", NOW), Ok(NOW - 600_000));
        assert_eq!(parse_when("2h", NOW), Ok(NOW - 7_200_000));
        assert_eq!(parse_when("3d", NOW), Ok(NOW - 259_200_000));
        assert_eq!(parse_when("250ms", NOW), Ok(NOW - 250));
        assert_eq!(parse_when("100000d", NOW), Ok(0));
        assert!(parse_when("99999999999999999999d", NOW).is_err());
        for bad in ["", "s", "10", "10y", "-5s", "1.5h", "10 m"] {
            assert!(parse_when(bad, NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_in_its_forms() {
        assert_eq!(
            parse_when("2025-03-01T12:00:00Z", NOW),
            Ok(1_740_830_400_000)
        );
        assert_eq!(
            parse_when("2025-03-01T12:00:00.123Z", NOW),
            Ok(1_740_830_400_123)
        );
        assert_eq!(
            parse_when("2025-03-01t12:00:00.1z", NOW),
            Ok(1_740_830_400_100)
        );
        assert_eq!(
            parse_when("2025-03-01T12:00:00.123456789Z", NOW),
            Ok(1_740_830_400_123)
        );
        assert_eq!(
            parse_when("2025-03-01T13:30:00+01:30", NOW),
            Ok(1_740_830_400_000)
        );
        assert_eq!(
            parse_when("2025-03-01 07:00:00-05:00", NOW),
            Ok(1_740_830_400_000)
        );
        assert_eq!(parse_when("2025-03-01", NOW), Ok(1_740_787_200_000));
        assert_eq!(parse_when("1970-01-01T00:00:00+00:00", NOW), Ok(0));
        assert_eq!(
            parse_when("2024-02-29T00:00:00Z", NOW),
            Ok(1_709_164_800_000)
        );
    }

    #[test]
    fn bad_timestamps_are_refused() {
        for bad in [
            "2025-02-29T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-03-01T24:00:00Z",
            "2025-03-01T12:00:00",
            "2025-03-01T12:00Z",
            "2025-03-01T12:00:00.Z",
            "2025-03-01T12:00:00+0100",
            "2025-3-1",
            "2025-03-01T12:00:00Zjunk",
        ] {
            assert!(parse_when(bad, NOW).is_err(), "{bad}");
        }
        assert_eq!(
            parse_when("1969-12-31T23:59:59Z", NOW),
            Err("'1969-12-31T23:59:59Z' is before 1970".into())
        );
    }

    #[test]
    fn bounds_become_ids() {
        let since = since_id("2025-03-01T12:00:00Z", NOW).unwrap();
        assert_eq!(since.timestamp(), 1_740_830_400_000);
        assert_eq!(since.to_u128() & ((1 << 80) - 1), 0);
        let until = until_id("2025-03-01T12:00:00Z", NOW).unwrap();
        assert_eq!(until.timestamp(), 1_740_830_400_001);
        assert_eq!(until.to_u128() & ((1 << 80) - 1), 0);
    }
}
