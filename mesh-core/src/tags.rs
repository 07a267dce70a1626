//! Node tags, replicated: every node's `key=value` labels, versioned by their node.
//!
//! The rules for a valid tag set and for selectors are in [`mesh_types::tags`]; this
//! module keeps one node's view of everybody's tags ([`TagTable`]) and decides what a
//! received [`TagsItem`] changes.
//!
//! # The replicated value
//!
//! Only a node writes its own tags. Each write bumps the node's tag *version*; an item is
//! `(name, incarnation, version, tags)` and the newer `(incarnation, version)` wins, so a
//! later set always replaces an earlier one, whatever order items arrive in (a
//! last-writer-wins register per node, with the writer's own counter as the clock: there
//! is one writer, so there are no concurrent writes to order). A node's new life (a
//! larger incarnation) starts again at version 1 and still wins.
//!
//! # How it travels
//!
//! A change is pushed on its own dissemination channel ([`crate::node::TAGS`]); one item is
//! at most ~700 bytes (the [`mesh_types::tags`] limits), so it rides SWIM packets like a
//! membership update. Anti-entropy repairs the rest with a digest of O(1) size: every
//! request carries [`TagTable::digest`]; a responder whose digest differs answers with
//! every item it holds, and the requester pushes its own items back when the responder's
//! digest still differs after merging. Equal tables cost 8 bytes a round.
//!
//! # Properties
//!
//! - **T1 newest wins.** For every member, the tags held are those of the largest
//!   `(incarnation, version)` this node has merged for it; merging is commutative,
//!   associative and idempotent (checked in the tests), so nodes that merged the same
//!   items hold the same table.
//! - **T2 only live members.** The table holds tags only for this node and for members
//!   SWIM sees live under the item's incarnation: an item of an unknown member or of
//!   another life is not merged (counted by the caller; anti-entropy brings it again once
//!   SWIM agrees), and a member's tags go when it is declared down or leaves. So a dead
//!   node's tags never come back through a late item.
//! - **T3 bad input changes nothing.** An item whose tags break the limits is refused
//!   with the reason, and a refused local change keeps the old set and version.
//! - **Liveness.** Nodes that see each other alive and exchange anti-entropy rounds come
//!   to hold the same tags for every member they both see live.

use std::collections::BTreeMap;

use mesh_types::tags::{validate, TagError, Tags};
use serde::{Deserialize, Serialize};

use crate::claims::pinned_hash;

/// One node's tags at one version: what travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagsItem {
    /// The node's name.
    #[serde(rename = "n")]
    pub name: String,
    /// Its boot incarnation.
    #[serde(rename = "i")]
    pub incarnation: u64,
    /// Its tag version in that life (1 at boot, +1 per change).
    #[serde(rename = "v")]
    pub version: u64,
    /// The whole tag set.
    #[serde(rename = "t")]
    pub tags: Tags,
}

/// What merging an item did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// The item is newer than what the table held and replaced it (pass it on).
    Newer {
        /// Whether the member's tag set differs from the one held before (a change to
        /// report); false for a newer version of the same set, e.g. set then unset.
        tags_changed: bool,
    },
    /// Nothing: the table already had this version or a newer one (or it is our own).
    Stale,
    /// Not merged: SWIM does not see the member live under the item's incarnation (T2).
    UnknownMember,
    /// Not merged: the tags break the limits (T3).
    Invalid(TagError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    incarnation: u64,
    version: u64,
    tags: Tags,
}

/// One node's view of every live member's tags (its own included). See the module docs.
#[derive(Debug, Clone)]
pub struct TagTable {
    me: String,
    own: Entry,
    peers: BTreeMap<String, Entry>,
}

impl TagTable {
    /// A table holding only this node's boot tags (version 1). The caller validated
    /// `tags` ([`validate`]); invalid ones are refused here too.
    pub fn new(me: String, incarnation: u64, tags: Tags) -> Result<Self, TagError> {
        validate(&tags)?;
        Ok(Self {
            me,
            own: Entry {
                incarnation,
                version: 1,
                tags,
            },
            peers: BTreeMap::new(),
        })
    }

    /// This node's tags.
    pub fn own(&self) -> &Tags {
        &self.own.tags
    }

    /// This node's tags as an item to send.
    pub fn own_item(&self) -> TagsItem {
        self.item(&self.me, &self.own)
    }

    /// Changes this node's tags: `set` adds or replaces, then `unset` removes (a key in
    /// both ends unset). Returns the item to disseminate, or `None` when nothing changed
    /// (no version is spent). A refused change keeps the old set (T3).
    pub fn change_own(
        &mut self,
        set: &Tags,
        unset: &[String],
    ) -> Result<Option<TagsItem>, TagError> {
        let mut next = self.own.tags.clone();
        next.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        for k in unset {
            if !mesh_types::tags::is_valid_key(k) {
                return Err(TagError::BadKey(k.clone()));
            }
            next.remove(k);
        }
        validate(&next)?;
        if next == self.own.tags {
            return Ok(None);
        }
        self.own.tags = next;
        self.own.version += 1;
        Ok(Some(self.own_item()))
    }

    /// The tags of `name` (this node's own included), if held.
    pub fn get(&self, name: &str) -> Option<&Tags> {
        if name == self.me {
            Some(&self.own.tags)
        } else {
            self.peers.get(name).map(|e| &e.tags)
        }
    }

    /// Merges a received item. `live_incarnation` is the incarnation SWIM sees the item's
    /// member live under (`None`: not a live member).
    pub fn merge(&mut self, item: &TagsItem, live_incarnation: Option<u64>) -> Merged {
        if item.name == self.me {
            return Merged::Stale;
        }
        if live_incarnation != Some(item.incarnation) {
            return Merged::UnknownMember;
        }
        if let Err(e) = validate(&item.tags) {
            return Merged::Invalid(e);
        }
        if let Some(e) = self.peers.get(&item.name) {
            if (e.incarnation, e.version) >= (item.incarnation, item.version) {
                return Merged::Stale;
            }
        }
        let entry = Entry {
            incarnation: item.incarnation,
            version: item.version,
            tags: item.tags.clone(),
        };
        // A member whose tags were never held has none: learning that it has none is
        // not a change to report.
        let tags_changed = self
            .peers
            .get(&item.name)
            .map_or(!entry.tags.is_empty(), |e| e.tags != entry.tags);
        self.peers.insert(item.name.clone(), entry);
        Merged::Newer { tags_changed }
    }

    /// A member is up under `incarnation`: tags of its earlier lives go.
    pub fn member_up(&mut self, name: &str, incarnation: u64) {
        if self
            .peers
            .get(name)
            .is_some_and(|e| e.incarnation < incarnation)
        {
            self.peers.remove(name);
        }
    }

    /// A member was declared down or left under `incarnation`: its tags go (T2).
    pub fn member_gone(&mut self, name: &str, incarnation: u64) -> bool {
        if self
            .peers
            .get(name)
            .is_some_and(|e| e.incarnation <= incarnation)
        {
            self.peers.remove(name);
            return true;
        }
        false
    }

    /// Every item held, this node's first.
    pub fn items(&self) -> Vec<TagsItem> {
        std::iter::once(self.own_item())
            .chain(self.peers.iter().map(|(n, e)| self.item(n, e)))
            .collect()
    }

    /// Number of nodes whose tags are held (this one included).
    pub fn len(&self) -> usize {
        1 + self.peers.len()
    }

    /// Never empty: this node's own tags are always held.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// A digest of the whole table: the pinned hash of every `(name, incarnation,
    /// version)` in name order. Equal tables have equal digests; the tags themselves need
    /// not be hashed, since `(name, incarnation, version)` names one set.
    pub fn digest(&self) -> u64 {
        let mut all: Vec<(&str, u64, u64)> = self
            .peers
            .iter()
            .map(|(n, e)| (n.as_str(), e.incarnation, e.version))
            .collect();
        all.push((self.me.as_str(), self.own.incarnation, self.own.version));
        all.sort_unstable();
        let mut bytes = Vec::with_capacity(all.len() * 32);
        for (n, i, v) in all {
            bytes.extend_from_slice(&(n.len() as u32).to_le_bytes());
            bytes.extend_from_slice(n.as_bytes());
            bytes.extend_from_slice(&i.to_le_bytes());
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        pinned_hash(&[&bytes])
    }

    fn item(&self, name: &str, e: &Entry) -> TagsItem {
        TagsItem {
            name: name.to_owned(),
            incarnation: e.incarnation,
            version: e.version,
            tags: e.tags.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_types::tags::parse_list;
    use proptest::prelude::*;

    fn t(s: &str) -> Tags {
        parse_list(s).expect("valid")
    }

    fn item(name: &str, inc: u64, ver: u64, tags: &str) -> TagsItem {
        TagsItem {
            name: name.into(),
            incarnation: inc,
            version: ver,
            tags: t(tags),
        }
    }

    #[test]
    fn a_local_change_bumps_the_version_only_when_the_set_changes() {
        let mut me = TagTable::new("n1".into(), 5, t("region=eu")).expect("valid");
        assert_eq!(me.own_item().version, 1);
        let it = me
            .change_own(&t("role=worker"), &[])
            .expect("valid")
            .expect("changed");
        assert_eq!(
            (it.version, it.tags.clone()),
            (2, t("region=eu,role=worker"))
        );
        assert_eq!(me.change_own(&t("role=worker"), &[]), Ok(None));
        let it = me
            .change_own(&Tags::new(), &["region".into()])
            .expect("valid")
            .expect("changed");
        assert_eq!((it.version, it.tags), (3, t("role=worker")));
    }

    #[test]
    fn a_refused_local_change_keeps_the_old_set() {
        let mut me = TagTable::new("n1".into(), 5, t("a=1")).expect("valid");
        let huge: Tags = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(me.change_own(&huge, &[]), Err(TagError::TooMany(66)));
        assert_eq!(
            me.change_own(&Tags::new(), &["bad key".into()]),
            Err(TagError::BadKey("bad key".into()))
        );
        assert_eq!((me.own(), me.own_item().version), (&t("a=1"), 1));
    }

    #[test]
    fn newer_versions_win_in_any_order_and_other_lives_are_not_merged() {
        let mut a = TagTable::new("n1".into(), 1, Tags::new()).expect("valid");
        assert_eq!(
            a.merge(&item("n2", 7, 2, "r=b"), Some(7)),
            Merged::Newer { tags_changed: true }
        );
        assert_eq!(a.merge(&item("n2", 7, 1, "r=a"), Some(7)), Merged::Stale);
        assert_eq!(a.get("n2"), Some(&t("r=b")));
        // An item of a life SWIM does not see (older, newer, or no member) is not merged.
        assert_eq!(
            a.merge(&item("n2", 6, 9, "r=old"), Some(7)),
            Merged::UnknownMember
        );
        assert_eq!(
            a.merge(&item("n3", 1, 1, "r=x"), None),
            Merged::UnknownMember
        );
        assert_eq!(a.get("n3"), None);
        // Our own item coming back changes nothing.
        assert_eq!(a.merge(&item("n1", 1, 9, "r=x"), Some(1)), Merged::Stale);
        assert_eq!(a.own(), &Tags::new());
        // Invalid tags are refused.
        let mut bad = item("n2", 7, 3, "");
        bad.tags.insert("no good".into(), "v".into());
        assert_eq!(
            a.merge(&bad, Some(7)),
            Merged::Invalid(TagError::BadKey("no good".into()))
        );
        assert_eq!(a.get("n2"), Some(&t("r=b")));
    }

    #[test]
    fn a_down_members_tags_go_and_a_new_life_replaces_the_old() {
        let mut a = TagTable::new("n1".into(), 1, Tags::new()).expect("valid");
        a.merge(&item("n2", 7, 4, "r=b"), Some(7));
        a.member_up("n2", 7);
        assert_eq!(a.get("n2"), Some(&t("r=b")));
        a.member_up("n2", 8);
        assert_eq!(a.get("n2"), None);
        a.merge(&item("n2", 8, 1, "r=c"), Some(8));
        assert!(
            !a.member_gone("n2", 7),
            "an older life's down leaves the new life"
        );
        assert!(a.member_gone("n2", 8));
        assert_eq!(a.get("n2"), None);
        // A late item of the dead life is refused by the caller's SWIM view (T2).
        assert_eq!(
            a.merge(&item("n2", 8, 1, "r=c"), None),
            Merged::UnknownMember
        );
    }

    #[test]
    fn digests_agree_exactly_when_the_tables_do() {
        let mut a = TagTable::new("n1".into(), 1, t("x=1")).expect("valid");
        let mut b = TagTable::new("n2".into(), 2, t("y=1")).expect("valid");
        assert_ne!(a.digest(), b.digest());
        a.merge(&b.own_item(), Some(2));
        b.merge(&a.own_item(), Some(1));
        assert_eq!(a.digest(), b.digest());
        let it = b
            .change_own(&t("y=2"), &[])
            .expect("valid")
            .expect("changed");
        assert_ne!(a.digest(), b.digest());
        a.merge(&it, Some(2));
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.items().len(), 2);
    }

    proptest! {
        /// T1: merging the same items in any order, with duplicates, gives the same
        /// table (commutative, associative, idempotent), and it holds the newest of each.
        #[test]
        fn merge_order_does_not_matter(
            ops in proptest::collection::vec((0u8..3, 1u64..3, 1u64..6), 1..40),
            seed in any::<u64>(),
        ) {
            let items: Vec<TagsItem> = ops
                .iter()
                .map(|&(n, i, v)| {
                    // One writer per life: (name, incarnation, version) names one set.
                    item(&format!("p{n}"), i, v, &format!("v={}", (n as u64) * 100 + i * 10 + v))
                })
                .collect();
            let live = |_: &str| Some(1u64);
            let mut shuffled = items.clone();
            let mut s = seed;
            for k in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(k, (s >> 33) as usize % (k + 1));
            }
            shuffled.extend(items.iter().take(3).cloned());
            let run = |list: &[TagsItem]| {
                let mut tb = TagTable::new("me".into(), 1, Tags::new()).expect("valid");
                for it in list {
                    // Everyone is live under incarnation 1 here; later lives are refused.
                    tb.merge(it, live(&it.name));
                }
                (tb.digest(), tb.items())
            };
            let (d1, i1) = run(&items);
            let (d2, i2) = run(&shuffled);
            prop_assert_eq!(d1, d2);
            prop_assert_eq!(&i1, &i2);
            for it in &i1[1..] {
                let newest = items
                    .iter()
                    .filter(|x| x.name == it.name && x.incarnation == 1)
                    .map(|x| x.version)
                    .max();
                prop_assert_eq!(Some(it.version), newest);
            }
        }
    }
}
