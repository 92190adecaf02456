//! Frame ids: SCRU128, and the time they carry.

use std::time::{SystemTime, UNIX_EPOCH};

pub use scru128::Scru128Id as Id;

use super::StoreError;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Parses an id's text form (case-insensitive), with the reason on failure.
pub fn parse_id(text: &str) -> Result<Id, String> {
    text.parse::<Id>().map_err(|e| e.to_string())
}

/// A fresh id that is not stored anywhere (thresholds, pulses).
pub fn fresh_id() -> Id {
    scru128::new()
}

/// The next id to assign after `last`: a fresh time-based id, unless the
/// clock stepped back or an imported id lies in the future, in which case
/// `last + 1` keeps the order strict. Refused (never wrapped) when `last`
/// is the largest id there is, which only a store that took an import
/// `check_room_after` now refuses can hold.
pub fn next_id_after(last: Option<Id>) -> Result<Id, StoreError> {
    let fresh = scru128::new();
    match last {
        Some(last) if fresh <= last => {
            last.to_u128()
                .checked_add(1)
                .map(Id::from_u128)
                .ok_or_else(|| {
                    StoreError::Conflict(format!(
                        "no id is left above the newest stored id {last}: nothing can be appended"
                    ))
                })
        }
        _ => Ok(fresh),
    }
}

/// The largest time a SCRU128 id holds, in ms (the year 10889).
const MAX_TIMESTAMP: u64 = (1 << 48) - 1;

/// Whether ids appended after `id` still have room above it: an imported
/// id at the largest time SCRU128 holds would leave the ids after it no
/// time of their own, and `last + 1` would run out.
pub fn check_room_after(id: Id) -> Result<(), String> {
    if id.timestamp() >= MAX_TIMESTAMP {
        return Err(format!(
            "cannot import {id}: its time is the largest a SCRU128 id holds, \
             so ids appended after it would have no room to sort above it"
        ));
    }
    Ok(())
}

/// The smallest id whose time is `ms`: a seek key for time-based reads.
pub fn min_id_at(ms: u64) -> Id {
    Id::from_u128((ms.min((1 << 48) - 1) as u128) << 80)
}

/// RFC 3339 in UTC, chrono style: milliseconds only when non-zero, `+00:00`.
pub fn rfc3339_from_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let millis = ms % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let base = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    if millis == 0 {
        format!("{base}+00:00")
    } else {
        format!("{base}.{millis:03}+00:00")
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_chrono_style() {
        assert_eq!(rfc3339_from_ms(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(
            rfc3339_from_ms(1_740_830_400_123),
            "2025-03-01T12:00:00.123+00:00"
        );
        assert_eq!(days_from_civil(2025, 3, 1), 1_740_787_200 / 86_400);
    }

    #[test]
    fn next_id_stays_above_a_future_id_and_never_wraps() {
        let future = Id::from_u128(u128::MAX - 5);
        assert_eq!(
            next_id_after(Some(future)).unwrap().to_u128(),
            u128::MAX - 4
        );
        let past = min_id_at(1);
        assert!(next_id_after(Some(past)).unwrap() > past);
        assert!(next_id_after(Some(Id::from_u128(u128::MAX))).is_err());
    }

    #[test]
    fn an_id_at_the_largest_time_leaves_no_room() {
        let largest = parse_id("f5lxx1zz5pnorynqglhzmsp33").unwrap();
        assert_eq!(largest.to_u128(), u128::MAX);
        assert!(check_room_after(largest).is_err());
        assert!(check_room_after(min_id_at(MAX_TIMESTAMP)).is_err());
        assert!(check_room_after(min_id_at(MAX_TIMESTAMP - 1)).is_ok());
    }
}
