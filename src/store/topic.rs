//! Topic names and topic filters.
//!
//! A topic is the name a frame is filed under (`user.alice.login`). A topic
//! *filter* is what a reader asks for: a comma-separated list of exact topics,
//! `prefix.*` wildcards (every topic below `prefix.`, at any depth, but not
//! `prefix` itself) and `*` (everything). The rules and error texts are
//! cross.stream's, so clients see the same messages.

/// The longest topic, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;

/// Checks a topic against cross.stream's rules, returning its error text.
///
/// The checks run in the reference's order so the first failing rule is the
/// one reported, exactly as cross.stream reports it.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("Topic cannot be empty".into());
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(format!("Topic exceeds max length of {MAX_TOPIC_LEN} bytes"));
    }
    if topic.ends_with('.') {
        return Err("Topic cannot end with '.'".into());
    }
    if topic.contains("..") {
        return Err("Topic cannot contain consecutive dots".into());
    }
    let first = topic.as_bytes()[0];
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return Err("Topic must start with a-z, A-Z, or _".into());
    }
    if let Some(bad) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "Topic contains invalid character: '{bad}'. Allowed: a-z A-Z 0-9 _ - ."
        ));
    }
    Ok(())
}

/// One element of a topic filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicPattern {
    /// Exactly this topic.
    Exact(String),
    /// Every topic that starts with this prefix; the prefix keeps its
    /// trailing dot (`user.`), which is also its key prefix in the index.
    Prefix(String),
}

impl TopicPattern {
    /// The index key prefix that lists this pattern's frames:
    /// `topic 0x00` for an exact topic, `prefix. 0x00` for a wildcard.
    pub fn index_prefix(&self) -> Vec<u8> {
        let name = match self {
            TopicPattern::Exact(t) | TopicPattern::Prefix(t) => t,
        };
        let mut key = Vec::with_capacity(name.len() + 1);
        key.extend_from_slice(name.as_bytes());
        key.push(0);
        key
    }

    /// Whether a frame's topic matches this pattern.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicPattern::Exact(t) => t == topic,
            TopicPattern::Prefix(p) => topic.starts_with(p.as_str()),
        }
    }
}

/// What a reader selects: everything, or the union of some patterns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TopicFilter {
    /// Every topic.
    #[default]
    All,
    /// Any frame matching at least one pattern.
    Patterns(Vec<TopicPattern>),
}

impl TopicFilter {
    /// Parses a filter the way the server does: no validation, empty
    /// elements dropped, any `*` makes it "all", an empty spec is "all".
    /// A pattern that cannot name any topic simply matches nothing.
    pub fn parse(spec: &str) -> TopicFilter {
        let mut patterns = Vec::new();
        for element in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if element == "*" {
                return TopicFilter::All;
            }
            let pattern = match element.strip_suffix('*') {
                Some(prefix) if prefix.ends_with('.') => TopicPattern::Prefix(prefix.to_string()),
                _ => TopicPattern::Exact(element.to_string()),
            };
            if !patterns.contains(&pattern) {
                patterns.push(pattern);
            }
        }
        if patterns.is_empty() {
            TopicFilter::All
        } else {
            TopicFilter::Patterns(patterns)
        }
    }

    /// Parses an optional spec; `None` means "all".
    pub fn from_option(spec: Option<&str>) -> TopicFilter {
        spec.map(TopicFilter::parse).unwrap_or_default()
    }

    /// Whether a frame's topic passes this filter.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicFilter::All => true,
            TopicFilter::Patterns(patterns) => patterns.iter().any(|p| p.matches(topic)),
        }
    }

    /// True when the filter selects everything.
    pub fn is_all(&self) -> bool {
        matches!(self, TopicFilter::All)
    }
}

/// Client-side validation of a filter spec (the CLI's `-T`): at least one
/// non-empty element, no `.*` without a prefix, every element a valid topic
/// or `prefix.*` with a valid prefix.
pub fn validate_topic_query(spec: &str) -> Result<(), String> {
    let elements: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if elements.is_empty() {
        return Err("Topic query cannot be empty".into());
    }
    for element in elements {
        if element == "*" {
            continue;
        }
        match element.strip_suffix(".*") {
            Some("") => return Err("Wildcard '.*' requires a prefix".into()),
            Some(prefix) => validate_topic(prefix)?,
            None => validate_topic(element)?,
        }
    }
    Ok(())
}

/// The index keys a frame of this topic is filed under, without the id:
/// `topic 0x00`, plus `prefix. 0x00` for every dot in the topic.
pub fn index_prefixes(topic: &str) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    for (at, byte) in topic.bytes().enumerate() {
        if byte == b'.' {
            let mut key = topic.as_bytes()[..=at].to_vec();
            key.push(0);
            keys.push(key);
        }
    }
    let mut exact = topic.as_bytes().to_vec();
    exact.push(0);
    keys.push(exact);
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_rules_in_reference_order() {
        assert!(validate_topic("a").is_ok());
        assert!(validate_topic("_a.b-c.D9").is_ok());
        assert_eq!(validate_topic("").unwrap_err(), "Topic cannot be empty");
        assert!(validate_topic(&"a".repeat(255)).is_ok());
        assert_eq!(
            validate_topic(&"a".repeat(256)).unwrap_err(),
            "Topic exceeds max length of 255 bytes"
        );
        assert!(validate_topic("a.").unwrap_err().contains("end with '.'"));
        assert_eq!(
            validate_topic("a..b").unwrap_err(),
            "Topic cannot contain consecutive dots"
        );
        assert_eq!(
            validate_topic("123").unwrap_err(),
            "Topic must start with a-z, A-Z, or _"
        );
        assert_eq!(
            validate_topic("a,b").unwrap_err(),
            "Topic contains invalid character: ','. Allowed: a-z A-Z 0-9 _ - ."
        );
        assert!(validate_topic("a b").is_err());
        assert!(validate_topic("a*").is_err());
    }

    #[test]
    fn filter_parse() {
        assert_eq!(TopicFilter::parse("a,*"), TopicFilter::All);
        assert_eq!(TopicFilter::parse(""), TopicFilter::All);
        assert_eq!(TopicFilter::parse(",,"), TopicFilter::All);
        assert_eq!(
            TopicFilter::parse("a,,b"),
            TopicFilter::Patterns(vec![
                TopicPattern::Exact("a".into()),
                TopicPattern::Exact("b".into())
            ])
        );
        let f = TopicFilter::parse("game.move.*");
        assert!(!f.matches("game.move"));
        assert!(f.matches("game.move.x"));
        assert!(f.matches("game.move.x.y"));
        let user = TopicFilter::parse("user.*");
        assert!(!user.matches("user"));
        assert!(user.matches("user.a.msg"));
    }

    #[test]
    fn query_validation() {
        assert!(validate_topic_query("a,").is_ok());
        assert!(validate_topic_query("user.*,b").is_ok());
        assert!(validate_topic_query("*").is_ok());
        assert!(validate_topic_query("").is_err());
        assert!(validate_topic_query(",").is_err());
        assert!(validate_topic_query("a,1bad").is_err());
        assert!(validate_topic_query(".*").is_err());
    }

    #[test]
    fn index_keys_sort_exact_before_longer_names() {
        // `ab\0` must sort before `abc\0` so an exact scan never strays.
        let ab = index_prefixes("ab").pop().unwrap();
        let abc = index_prefixes("abc").pop().unwrap();
        assert!(ab < abc);
        assert_eq!(
            index_prefixes("user.a.msg"),
            vec![
                b"user.\0".to_vec(),
                b"user.a.\0".to_vec(),
                b"user.a.msg\0".to_vec()
            ]
        );
    }
}
