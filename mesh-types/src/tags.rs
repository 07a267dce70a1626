//! Node tags (`key=value` labels per node) and tag selectors (`region=eu,role!=edge`).
//!
//! Pure rules shared by the core (which gossips tags), the agent (config, admin API) and
//! `meshctl` (which shows them): what a valid tag set is, and what a selector matches.
//!
//! # Limits
//!
//! A tag set holds at most [`MAX_TAGS`] tags and [`MAX_TAGS_BYTES`] bytes of keys and
//! values in all. A key is 1 to [`MAX_KEY_LEN`] bytes of `[A-Za-z0-9._/-]`, starting with
//! a letter or digit; a value is 0 to [`MAX_VALUE_LEN`] bytes of printable ASCII other
//! than `,` and `=` (so that `k=v,k2=v2` always splits one way) — no spaces at either end.
//! The limits keep a node's whole tag set inside one SWIM-sized datagram item, so a
//! change travels piggybacked on probes like a membership update.
//!
//! # Selectors
//!
//! A selector is a comma-separated list of terms, all of which must hold:
//!
//! | term      | holds when                                   |
//! |-----------|----------------------------------------------|
//! | `k=v`     | the node has tag `k` with value `v`          |
//! | `k!=v`    | the node has no tag `k`, or another value    |
//! | `k`       | the node has tag `k` (any value)             |
//! | `!k`      | the node has no tag `k`                      |
//!
//! The empty selector matches every node. Terms are parsed with the same key and value
//! rules as tags, so a term that could never match a valid tag is an error, not a
//! silent miss.

use std::collections::BTreeMap;
use std::fmt;

/// Most tags on one node.
pub const MAX_TAGS: usize = 64;
/// Most bytes of keys and values, summed, in one node's tag set.
pub const MAX_TAGS_BYTES: usize = 512;
/// Longest tag key.
pub const MAX_KEY_LEN: usize = 63;
/// Longest tag value.
pub const MAX_VALUE_LEN: usize = 255;

/// One node's tags, ordered by key (so encodings and comparisons are canonical).
pub type Tags = BTreeMap<String, String>;

/// Why a tag, a tag set or a selector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// A key breaks the key rule.
    #[error("bad tag key {0:?}: 1 to 63 bytes of letters, digits, '.', '_', '/', '-', starting with a letter or digit")]
    BadKey(String),
    /// A value breaks the value rule.
    #[error("bad value for tag {key:?}: up to 255 printable ASCII bytes, no ',' or '=', no leading or trailing space")]
    BadValue {
        /// The tag's key.
        key: String,
    },
    /// `k=v` was expected.
    #[error("bad tag {0:?}: expected KEY=VALUE")]
    NotAPair(String),
    /// The same key twice in one input.
    #[error("tag {0:?} given twice")]
    Duplicate(String),
    /// More than [`MAX_TAGS`] tags.
    #[error("{0} tags: at most 64 per node")]
    TooMany(usize),
    /// More than [`MAX_TAGS_BYTES`] bytes of keys and values.
    #[error("tags take {0} bytes: at most 512 per node (keys and values summed)")]
    TooBig(usize),
    /// A selector term that is not `k=v`, `k!=v`, `k` or `!k`.
    #[error("bad selector term {0:?}: expected KEY=VALUE, KEY!=VALUE, KEY or !KEY")]
    BadTerm(String),
}

/// Whether `key` is a valid tag key.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
}

/// Whether `value` is a valid tag value.
pub fn is_valid_value(value: &str) -> bool {
    value.len() <= MAX_VALUE_LEN
        && value
            .chars()
            .all(|c| (c.is_ascii_graphic() || c == ' ') && c != ',' && c != '=')
        && !value.starts_with(' ')
        && !value.ends_with(' ')
}

/// Checks a whole tag set against the rules and limits.
pub fn validate(tags: &Tags) -> Result<(), TagError> {
    for (k, v) in tags {
        if !is_valid_key(k) {
            return Err(TagError::BadKey(k.clone()));
        }
        if !is_valid_value(v) {
            return Err(TagError::BadValue { key: k.clone() });
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(TagError::TooMany(tags.len()));
    }
    let bytes = encoded_size(tags);
    if bytes > MAX_TAGS_BYTES {
        return Err(TagError::TooBig(bytes));
    }
    Ok(())
}

/// Bytes of keys and values, summed (what [`MAX_TAGS_BYTES`] bounds).
pub fn encoded_size(tags: &Tags) -> usize {
    tags.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// Parses one `KEY=VALUE`.
pub fn parse_pair(s: &str) -> Result<(String, String), TagError> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| TagError::NotAPair(s.to_string()))?;
    if !is_valid_key(k) {
        return Err(TagError::BadKey(k.to_string()));
    }
    if !is_valid_value(v) {
        return Err(TagError::BadValue { key: k.to_string() });
    }
    Ok((k.to_string(), v.to_string()))
}

/// Parses `k=v,k2=v2` (the `MESH_TAGS` form; empty gives no tags) into a valid set.
pub fn parse_list(s: &str) -> Result<Tags, TagError> {
    let mut tags = Tags::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = parse_pair(part)?;
        if tags.insert(k.clone(), v).is_some() {
            return Err(TagError::Duplicate(k));
        }
    }
    validate(&tags)?;
    Ok(tags)
}

/// Formats tags as `k=v,k2=v2` (what [`parse_list`] reads back).
pub fn format_list(tags: &Tags) -> String {
    let mut out = String::new();
    for (i, (k, v)) in tags.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// One selector term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// `k=v`.
    Eq(String, String),
    /// `k!=v`.
    Ne(String, String),
    /// `k`.
    Has(String),
    /// `!k`.
    Lacks(String),
}

impl Term {
    /// Whether `tags` satisfy this term.
    pub fn holds(&self, tags: &Tags) -> bool {
        match self {
            Self::Eq(k, v) => tags.get(k) == Some(v),
            Self::Ne(k, v) => tags.get(k) != Some(v),
            Self::Has(k) => tags.contains_key(k),
            Self::Lacks(k) => !tags.contains_key(k),
        }
    }
}

/// A conjunction of [`Term`]s; see the module docs for the syntax.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    terms: Vec<Term>,
}

impl Selector {
    /// The selector that matches every node.
    pub fn all() -> Self {
        Self::default()
    }

    /// Parses `region=eu,role!=edge,gpu,!draining`.
    pub fn parse(s: &str) -> Result<Self, TagError> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || TagError::BadTerm(part.to_string());
            let term = if let Some((k, v)) = part.split_once("!=") {
                Term::Ne(k.to_string(), v.to_string())
            } else if let Some((k, v)) = part.split_once('=') {
                Term::Eq(k.to_string(), v.to_string())
            } else if let Some(k) = part.strip_prefix('!') {
                Term::Lacks(k.to_string())
            } else {
                Term::Has(part.to_string())
            };
            let (Term::Eq(k, _) | Term::Ne(k, _) | Term::Has(k) | Term::Lacks(k)) = &term;
            if !is_valid_key(k) {
                return Err(bad());
            }
            if let Term::Eq(_, v) | Term::Ne(_, v) = &term {
                if !is_valid_value(v) {
                    return Err(bad());
                }
            }
            terms.push(term);
        }
        Ok(Self { terms })
    }

    /// The terms, in the order given.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// Whether `tags` satisfy every term.
    pub fn matches(&self, tags: &Tags) -> bool {
        self.terms.iter().all(|t| t.holds(tags))
    }

    /// True for the selector that matches everything.
    pub fn is_all(&self) -> bool {
        self.terms.is_empty()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match t {
                Term::Eq(k, v) => write!(f, "{k}={v}")?,
                Term::Ne(k, v) => write!(f, "{k}!={v}")?,
                Term::Has(k) => write!(f, "{k}")?,
                Term::Lacks(k) => write!(f, "!{k}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &str) -> Tags {
        parse_list(s).expect("valid tags")
    }

    #[test]
    fn lists_parse_and_format_back() {
        let t = tags("region=eu-west, role=worker,zone=");
        assert_eq!(t.get("region").map(String::as_str), Some("eu-west"));
        assert_eq!(t.get("zone").map(String::as_str), Some(""));
        assert_eq!(parse_list(&format_list(&t)), Ok(t));
        assert_eq!(parse_list(""), Ok(Tags::new()));
    }

    #[test]
    fn bad_tags_are_refused_with_the_reason() {
        assert_eq!(
            parse_list("region"),
            Err(TagError::NotAPair("region".into()))
        );
        assert_eq!(parse_list("-x=1"), Err(TagError::BadKey("-x".into())));
        assert_eq!(parse_list("a b=1"), Err(TagError::BadKey("a b".into())));
        assert_eq!(parse_list("=1"), Err(TagError::BadKey(String::new())));
        assert_eq!(
            parse_list("k=é"),
            Err(TagError::BadValue { key: "k".into() })
        );
        assert_eq!(
            parse_list("k= padded"),
            Err(TagError::BadValue { key: "k".into() })
        );
        assert_eq!(parse_list("k=1,k=2"), Err(TagError::Duplicate("k".into())));
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!("k{i}=v")).collect();
        assert_eq!(
            parse_list(&many.join(",")),
            Err(TagError::TooMany(MAX_TAGS + 1))
        );
        let big = format!("a={},b={},c=z", "x".repeat(255), "y".repeat(255));
        assert_eq!(parse_list(&big), Err(TagError::TooBig(514)));
        // Exactly at the limits is fine.
        let at = format!("a={},b={}", "x".repeat(255), "y".repeat(255));
        assert_eq!(encoded_size(&tags(&at)), MAX_TAGS_BYTES);
    }

    #[test]
    fn selectors_match_conjunctions_of_terms() {
        let eu = tags("region=eu,role=worker,gpu=1");
        let us = tags("region=us,role=edge");
        let sel = Selector::parse("region=eu,role!=edge").expect("valid");
        assert!(sel.matches(&eu));
        assert!(!sel.matches(&us));
        let has = Selector::parse("gpu").expect("valid");
        assert!(has.matches(&eu) && !has.matches(&us));
        let lacks = Selector::parse("!gpu, role=edge").expect("valid");
        assert!(!lacks.matches(&eu) && lacks.matches(&us));
        // `k!=v` holds for a node without the key at all.
        assert!(Selector::parse("gpu!=1").expect("valid").matches(&us));
        assert!(Selector::parse("").expect("valid").matches(&us));
        assert!(Selector::all().is_all());
        assert_eq!(
            Selector::parse("region=eu,role!=edge,gpu,!x")
                .expect("valid")
                .to_string(),
            "region=eu,role!=edge,gpu,!x"
        );
    }

    #[test]
    fn selector_terms_that_could_never_match_are_errors() {
        for bad in ["=eu", "!", "!=x", "a b", "k=v=w", "k!=a,b c"] {
            assert!(
                matches!(Selector::parse(bad), Err(TagError::BadTerm(_))),
                "{bad:?} parsed"
            );
        }
    }
}
