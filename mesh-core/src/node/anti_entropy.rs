//! State replication: delta items from SWIM piggybacks and stream batches, handing
//! this node's deltas to dissemination, and anti-entropy rounds (digest request,
//! missing-state response, push of what the peer lacks) that repair whatever the
//! deltas lost (N5).

use std::time::{Duration, Instant};

use bytes::Bytes;
use mesh_types::frame::Class;
use mesh_types::PeerRef;
use serde::Serialize;

use super::wire::{self, AeRequest, AeResponse, GroupsItem, StateFrame};
use super::{
    DropReason, Node, Output, RequestFailed, RequestRefused, RequestTag, GROUPS,
    MAX_UNKNOWN_ORIGINS, NAMES, TAGS,
};
use crate::dissemination::ChannelId;

/// Largest anti-entropy response (bytes of deltas); the rest comes in later rounds.
pub const AE_RESPONSE_BUDGET: usize = 4 << 20;
/// Largest anti-entropy push frame.
pub const AE_PUSH_CHUNK: usize = 512 << 10;
/// Largest delta piece handed to dissemination (bigger deltas are cut causally safe).
pub const DELTA_PIECE: usize = 64 << 10;

impl Node {
    /// Answers a peer's anti-entropy request: what it lacks (cut to
    /// [`AE_RESPONSE_BUDGET`]) and this node's digests. `len` is the request's size.
    pub(super) fn answer_ae(
        &mut self,
        now: Instant,
        from: &str,
        req: &AeRequest,
        len: usize,
    ) -> Result<Bytes, RequestRefused> {
        self.stats.ae_served += 1;
        self.stats.ae_bytes_in += len as u64;
        self.learn_digests(now, from, &req.groups, &req.names);
        let digest = self.tags.digest();
        let response = AeResponse {
            groups: self.registry.groups().missing_for(&req.groups),
            names: self.registry.names().missing_for(&req.names),
            groups_digest: self.registry.groups().digest(),
            names_digest: self.registry.names().digest(),
            tags: if req.tags == Some(digest) {
                Vec::new()
            } else {
                self.tags.items()
            },
            tags_digest: Some(digest),
        };
        let response = trim_response(response);
        let Ok(bytes) = wire::encode(&response) else {
            self.stats.drop_input(DropReason::EncodeFailed);
            return Err(RequestRefused::Malformed);
        };
        self.stats.ae_bytes_out += bytes.len() as u64;
        Ok(bytes)
    }

    /// The outcome of this node's anti-entropy request `tag`: merges what came back,
    /// learns the peer's digests, and pushes what the peer lacks.
    pub(super) fn ae_answered(
        &mut self,
        now: Instant,
        tag: RequestTag,
        result: Result<Bytes, RequestFailed>,
    ) {
        let Some((peer, started)) = self.ae_pending.remove(&tag) else {
            self.stats.drop_input(DropReason::UnknownResponse);
            return;
        };
        let Ok(bytes) = result else {
            self.stats.ae_failed += 1;
            return;
        };
        let Ok(resp) = wire::decode::<AeResponse>(&bytes) else {
            self.stats.drop_input(DropReason::MalformedAeResponse);
            self.stats.ae_failed += 1;
            return;
        };
        self.stats.ae_completed += 1;
        self.stats.ae_bytes_in += bytes.len() as u64;
        let sample = now.saturating_duration_since(started);
        let rtt = self.rtt.entry(peer.clone()).or_insert(sample);
        *rtt = (*rtt * 7 + sample) / 8;
        self.merge_state(now, &resp.groups, &resp.names);
        self.merge_tags(now, &resp.tags);
        self.learn_digests(now, &peer, &resp.groups_digest, &resp.names_digest);
        // Push what the peer lacks, in causally safe pieces.
        let groups = self.registry.groups().missing_for(&resp.groups_digest);
        let names = self.registry.names().missing_for(&resp.names_digest);
        let tags = match resp.tags_digest {
            Some(d) if d != self.tags.digest() => self.tags.items(),
            _ => Vec::new(),
        };
        self.push_state(&peer, groups, names, tags);
    }

    /// Merges an anti-entropy piece; a refused delta is counted (the registry says why).
    pub(super) fn merge_state(
        &mut self,
        now: Instant,
        groups: &mesh_crdt::Delta<String, crate::registry::GroupEntry>,
        names: &mesh_crdt::Delta<String, crate::registry::NameClaim>,
    ) {
        let (groups, names) = (
            self.known_origins_only(groups),
            self.known_origins_only(names),
        );
        if self.registry.merge_groups(now, &groups, &[]).is_err() {
            self.stats.drop_input(DropReason::RefusedDelta);
        }
        if self.registry.merge_names(now, &names).is_err() {
            self.stats.drop_input(DropReason::RefusedDelta);
        }
    }

    /// `delta` without the partitions of origins SWIM has never seen (N7): each is
    /// counted as `unknown_origin` and remembered, so that this node asks the origin for
    /// its state once it comes up. A node's own state arrives on its SWIM packets, after
    /// SWIM has seen it, so formation is not slowed; anything else repairs by
    /// anti-entropy with members.
    fn known_origins_only<E>(
        &mut self,
        delta: &mesh_crdt::Delta<String, E>,
    ) -> mesh_crdt::Delta<String, E>
    where
        E: Clone,
    {
        let known = |o: &String| *o == self.name || self.membership.member(o).is_some();
        if delta.origins().all(known) {
            return delta.clone();
        }
        let mut kept = delta.clone();
        let dropped = kept.retain_origins(known);
        for origin in dropped {
            self.stats.drop_input(DropReason::UnknownOrigin);
            if self.unknown_origins.len() < MAX_UNKNOWN_ORIGINS {
                self.unknown_origins.insert(origin);
            }
        }
        kept
    }

    /// Hands an item to dissemination (`own`: made here, so pushed directly to every
    /// peer in a cluster of up to [`DIRECT_MAX_PEERS`] peers); a refusal is counted there
    /// and here.
    pub(super) fn spread(&mut self, now: Instant, channel: ChannelId, item: Bytes, own: bool) {
        let pushed = if own {
            self.dissem.push_own(now, channel, item)
        } else {
            self.dissem.push(now, channel, item)
        };
        if pushed.is_err() {
            self.stats.drop_input(DropReason::DisseminationRefused);
        }
    }

    pub(super) fn apply_item(&mut self, now: Instant, channel: ChannelId, item: Bytes) {
        self.stats.delta_bytes_in += item.len() as u64;
        let stripped;
        let changed = if channel == GROUPS {
            match wire::decode::<GroupsItem>(&item) {
                Ok(g) => {
                    let delta = self.known_origins_only(&g.delta);
                    stripped = delta.origins().count() != g.delta.origins().count();
                    let Ok(changed) = self.registry.merge_groups(now, &delta, &g.exited) else {
                        self.stats.drop_input(DropReason::RefusedDelta);
                        return;
                    };
                    if changed {
                        if let Some(t) = g.sent_at {
                            let lag = self.wall_ms(now).saturating_sub(t);
                            self.lags.push(Duration::from_millis(lag));
                        }
                    }
                    changed
                }
                Err(_) => {
                    self.stats.drop_input(DropReason::MalformedDelta);
                    return;
                }
            }
        } else if channel == NAMES {
            match wire::decode::<mesh_crdt::Delta<String, crate::registry::NameClaim>>(&item) {
                Ok(d) => {
                    let kept = self.known_origins_only(&d);
                    stripped = kept.origins().count() != d.origins().count();
                    let merged = self.registry.merge_names(now, &kept);
                    match merged {
                        Ok(changed) => changed,
                        Err(_) => {
                            self.stats.drop_input(DropReason::RefusedDelta);
                            return;
                        }
                    }
                }
                Err(_) => {
                    self.stats.drop_input(DropReason::MalformedDelta);
                    return;
                }
            }
        } else if channel == TAGS {
            match wire::decode::<crate::tags::TagsItem>(&item) {
                Ok(t) => {
                    stripped = false;
                    self.merge_tag_item(now, &t)
                }
                Err(_) => {
                    self.stats.drop_input(DropReason::MalformedDelta);
                    return;
                }
            }
        } else {
            self.stats.drop_input(DropReason::UnknownChannel);
            return;
        };
        if changed {
            self.stats.deltas_applied += 1;
            // Rumor mongering: what was news here is passed on (but not an item that
            // carried unknown origins' state: this node does not vouch for it).
            if !stripped {
                self.spread(now, channel, item, false);
            }
        }
    }

    fn push_state(
        &mut self,
        peer: &str,
        groups: mesh_crdt::Delta<String, crate::registry::GroupEntry>,
        names: mesh_crdt::Delta<String, crate::registry::NameClaim>,
        mut tags: Vec<crate::tags::TagsItem>,
    ) {
        let Some(addr) = self.peers.get(peer).map(|p| p.addr) else {
            return;
        };
        let g = groups.chunks(AE_PUSH_CHUNK).unwrap_or_default();
        let n = names.chunks(AE_PUSH_CHUNK).unwrap_or_default();
        // The tags ride the first piece (a whole table is at most ~700 bytes a member).
        let pieces = g.len().max(n.len()).max(usize::from(!tags.is_empty()));
        let mut g = g.into_iter();
        let mut n = n.into_iter();
        for _ in 0..pieces {
            let frame = StateFrame::Push {
                groups: g.next().unwrap_or_default(),
                names: n.next().unwrap_or_default(),
                tags: std::mem::take(&mut tags),
            };
            if let Ok(bytes) = wire::encode(&frame) {
                self.stats.ae_bytes_out += bytes.len() as u64;
                self.outputs.push_back(Output::Frame {
                    to: PeerRef {
                        name: Some(peer.to_owned()),
                        addr,
                    },
                    class: Class::State,
                    payload: bytes,
                });
            }
        }
    }

    pub(super) fn start_ae(&mut self, now: Instant, peer: &str) {
        let Some(addr) = self.peers.get(peer).map(|p| p.addr) else {
            return;
        };
        let req = AeRequest {
            groups: self.registry.groups().digest(),
            names: self.registry.names().digest(),
            tags: Some(self.tags.digest()),
        };
        let Ok(payload) = wire::encode(&req) else {
            self.stats.drop_input(DropReason::EncodeFailed);
            return;
        };
        let tag = RequestTag(self.next_tag);
        self.next_tag += 1;
        self.stats.ae_started += 1;
        self.stats.ae_bytes_out += payload.len() as u64;
        self.ae_pending.insert(tag, (peer.to_owned(), now));
        self.outputs.push_back(Output::Request {
            to: PeerRef {
                name: Some(peer.to_owned()),
                addr,
            },
            tag,
            class: Class::State,
            payload,
        });
    }
}

/// Cuts an anti-entropy response to [`AE_RESPONSE_BUDGET`]: causally safe pieces of
/// each delta, as many as fit (the requester gets the rest in later rounds).
fn trim_response(mut r: AeResponse) -> AeResponse {
    fn fit<E>(d: mesh_crdt::Delta<String, E>, budget: usize) -> (mesh_crdt::Delta<String, E>, usize)
    where
        E: Serialize + serde::de::DeserializeOwned + Ord + Clone + std::hash::Hash,
    {
        let len = d.encoded_len().unwrap_or(usize::MAX);
        if len <= budget {
            return (d, len);
        }
        let mut out = mesh_crdt::Delta::new();
        let mut used = 0;
        for piece in d.chunks(AE_PUSH_CHUNK).unwrap_or_default() {
            let l = piece.encoded_len().unwrap_or(usize::MAX);
            if used + l > budget {
                break;
            }
            used += l;
            out.merge(&piece);
        }
        (out, used)
    }
    let (g, used) = fit(r.groups, AE_RESPONSE_BUDGET);
    let (n, _) = fit(r.names, AE_RESPONSE_BUDGET.saturating_sub(used));
    r.groups = g;
    r.names = n;
    r
}
