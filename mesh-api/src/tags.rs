//! `GET /v1/tags`, `POST /v1/tags` (this node's tags) and `GET /v1/place` (placement by
//! capability).
//!
//! Tags are `key=value` labels per node, gossiped with membership (every member's tags
//! are in [`MemberView::tags`](crate::MemberView)). `GET /v1/members?filter=SELECTOR`
//! keeps the members whose tags match a selector such as `region=eu,role!=edge` (terms
//! `k=v`, `k!=v`, `k`, `!k`, all of which must hold).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The body of `POST /v1/tags`: `set` adds or replaces, then `unset` removes. A refused
/// change (a bad key or value, over 64 tags or 512 bytes) is `422` and changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsBody {
    /// Tags to add or replace.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Keys to remove (a key not present is fine).
    #[serde(default)]
    pub unset: Vec<String>,
}

/// The answer of `GET /v1/tags` and `POST /v1/tags`: this node's whole tag set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagsAnswer {
    /// The node answering.
    pub name: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// The answer of `GET /v1/place?key=KEY[&filter=SELECTOR][&n=N]`: the live members
/// matching the selector, best first for the key (rendezvous hashing; `owners[0]` is the
/// preferred owner), at most `n` (default 1, at most 64). An empty list: no live member
/// matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceAnswer {
    /// The key placed.
    pub key: String,
    /// The selector, normalised (empty: every member).
    pub filter: String,
    /// Owners, best first.
    pub owners: Vec<String>,
}
