//! Node tags on the node: local changes, received items, and the events they make. The
//! rules are in [`crate::tags`]; this part ties them to SWIM's view (T2: only members
//! SWIM sees live under the item's incarnation) and to dissemination.

use std::time::Instant;

use mesh_types::tags::{TagError, Tags};

use super::{wire, DropReason, Node, Output, TAGS};
use crate::membership::{EventKind, MembershipEvent};
use crate::tags::{Merged, TagsItem};

impl Node {
    /// [`Command::SetTags`](super::Command::SetTags): changes this node's tags and
    /// pushes the new set to every peer. Returns the whole new set.
    pub(super) fn set_tags(
        &mut self,
        now: Instant,
        set: &Tags,
        unset: &[String],
    ) -> Result<Tags, TagError> {
        if let Some(item) = self.tags.change_own(set, unset)? {
            self.spread_tags(now, &item, true);
            let member = self.membership.identity().clone();
            self.outputs.push_back(Output::Membership(MembershipEvent {
                kind: EventKind::Tags,
                member,
                at: now,
            }));
        }
        Ok(self.tags.own().clone())
    }

    /// Merges one received item; true when it was news (to pass on).
    pub(super) fn merge_tag_item(&mut self, now: Instant, item: &TagsItem) -> bool {
        let live = self.peers.get(&item.name).map(|p| p.incarnation);
        match self.tags.merge(item, live) {
            Merged::Newer { tags_changed } => {
                if tags_changed {
                    if let Some(member) = self.peers.get(&item.name).cloned() {
                        self.outputs.push_back(Output::Membership(MembershipEvent {
                            kind: EventKind::Tags,
                            member,
                            at: now,
                        }));
                    }
                }
                true
            }
            Merged::Stale => false,
            Merged::UnknownMember => {
                self.stats.drop_input(DropReason::UnknownOrigin);
                false
            }
            Merged::Invalid(_) => {
                self.stats.drop_input(DropReason::RefusedDelta);
                false
            }
        }
    }

    /// Merges the tags of an anti-entropy exchange (news is not re-spread: the exchange
    /// itself repairs, and every node runs them).
    pub(super) fn merge_tags(&mut self, now: Instant, items: &[TagsItem]) {
        for item in items {
            self.merge_tag_item(now, item);
        }
    }

    fn spread_tags(&mut self, now: Instant, item: &TagsItem, own: bool) {
        match wire::encode(item) {
            Ok(bytes) => self.spread(now, TAGS, bytes, own),
            Err(_) => self.stats.drop_input(DropReason::EncodeFailed),
        }
    }
}
