//! Time-to-live: how long a frame is kept.

use std::fmt;

/// A frame's retention policy, written on the wire as `forever`,
/// `ephemeral`, `time:<ms>` or `last:<n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// Kept until removed.
    Forever,
    /// Delivered to live followers, never stored.
    Ephemeral,
    /// Expires this many milliseconds after the frame's id time.
    Time(u64),
    /// Only the newest `n` frames of the exact topic are kept.
    Last(u32),
}

impl Ttl {
    /// Parses the wire form, with cross.stream's error texts.
    pub fn parse(text: &str) -> Result<Ttl, String> {
        match text {
            "forever" => Ok(Ttl::Forever),
            "ephemeral" => Ok(Ttl::Ephemeral),
            _ => {
                if let Some(ms) = text.strip_prefix("time:") {
                    ms.parse::<u64>()
                        .map(Ttl::Time)
                        .map_err(|_| "Invalid duration for 'time' TTL".to_string())
                } else if let Some(n) = text.strip_prefix("last:") {
                    let n = n
                        .parse::<u32>()
                        .map_err(|_| "Invalid 'n' value for 'last' TTL".to_string())?;
                    if n == 0 {
                        return Err("'n' must be >= 1 for 'last' TTL".into());
                    }
                    Ok(Ttl::Last(n))
                } else {
                    Err("Invalid TTL format".into())
                }
            }
        }
    }

    /// Whether a frame with this ttl, created at `created_ms`, has expired
    /// at `now_ms`.
    pub fn is_expired(&self, created_ms: u64, now_ms: u64) -> bool {
        match self {
            Ttl::Time(ms) => now_ms >= created_ms.saturating_add(*ms),
            _ => false,
        }
    }
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ttl::Forever => f.write_str("forever"),
            Ttl::Ephemeral => f.write_str("ephemeral"),
            Ttl::Time(ms) => write!(f, "time:{ms}"),
            Ttl::Last(n) => write!(f, "last:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for text in ["forever", "ephemeral", "time:1000", "last:3"] {
            assert_eq!(Ttl::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn parse_errors_match_reference() {
        assert_eq!(
            Ttl::parse("time:abc").unwrap_err(),
            "Invalid duration for 'time' TTL"
        );
        assert_eq!(
            Ttl::parse("last:x").unwrap_err(),
            "Invalid 'n' value for 'last' TTL"
        );
        assert_eq!(
            Ttl::parse("last:0").unwrap_err(),
            "'n' must be >= 1 for 'last' TTL"
        );
        assert_eq!(Ttl::parse("unknown").unwrap_err(), "Invalid TTL format");
        assert_eq!(Ttl::parse("head:1").unwrap_err(), "Invalid TTL format");
        assert_eq!(Ttl::parse("time").unwrap_err(), "Invalid TTL format");
    }

    #[test]
    fn expiry() {
        assert!(!Ttl::Time(100).is_expired(1000, 1099));
        assert!(Ttl::Time(100).is_expired(1000, 1100));
        assert!(!Ttl::Forever.is_expired(0, u64::MAX));
    }
}
