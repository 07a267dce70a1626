//! The node's wire decoders on arbitrary bytes: `[selector][payload]`.
//!
//! - 0..=6: the MessagePack enums and structs of `mesh_core::node` (`StateFrame`,
//!   `UserFrame`, `ControlFrame` (the envelope only: the quorum messages inside are
//!   not fuzzed here), `AeRequest`, `AeResponse`, `GroupsItem`, a names delta, a tags
//!   item (merged into a tag table: an invalid set is refused, changing nothing)), decoded
//!   as `Node` decodes them (`rmp_serde::from_slice`, which is all the crate-private
//!   `wire::decode` does). What decodes re-encodes to itself; deltas inside satisfy the
//!   `mesh-crdt` invariants.
//! - 7: a dissemination batch (`decode_batch`): what decodes is an exact encoding, so
//!   `encode_batch` gives the input back; its items are then decoded as deltas.
//! - 8: a datagram (`Dissemination::unwrap_datagram`): the parts add up to the input;
//!   the SWIM part goes to 9.
//! - 9: a SWIM packet (`mesh_core::codec`): the header (`peek_header` and
//!   `SwimCodec::decode_header`) and the member updates after it, each re-encoded.
#![no_main]
use bytes::Bytes;
use foca::{Codec, Header, Member};
use libfuzzer_sys::fuzz_target;
use mesh_core::codec::{peek_header, SwimCodec};
use mesh_core::dissemination::{decode_batch, encode_batch, Dissemination, DATAGRAM_HEADER};
use mesh_core::identity::NodeId;
use mesh_core::node::{
    AeRequest, AeResponse, ControlFrame, GroupsItem, StateFrame, UserFrame, GROUPS, NAMES, TAGS,
};
use mesh_core::registry::{GroupEntry, NameClaim};
use mesh_core::tags::{Merged, TagTable, TagsItem};
use mesh_crdt::Delta;
use mesh_fuzz::{check_reencode, check_state};
use serde::de::DeserializeOwned;
use serde::Serialize;

fn roundtrip<T>(data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = rmp_serde::from_slice(data).ok()?;
    check_reencode(&value);
    Some(value)
}

fn item(channel: mesh_core::dissemination::ChannelId, bytes: &[u8]) {
    if channel == GROUPS {
        if let Some(g) = roundtrip::<GroupsItem>(bytes) {
            check_state(&g.delta);
        }
    } else if channel == NAMES {
        if let Some(d) = roundtrip::<Delta<String, NameClaim>>(bytes) {
            check_state(&d);
        }
    } else if channel == TAGS {
        if let Some(t) = roundtrip::<TagsItem>(bytes) {
            check_tags_item(&t);
        }
    }
}

/// A tags item (channel 2, anti-entropy): merging it into a table never breaks the tag
/// limits — an invalid set is refused and leaves the table as it was.
fn check_tags_item(item: &TagsItem) {
    let mut table = TagTable::new("fuzz-me".into(), 1, Default::default()).expect("empty is valid");
    let before = table.digest();
    match table.merge(item, Some(item.incarnation)) {
        Merged::Invalid(_) => {
            assert_eq!(table.digest(), before, "a refused item changed the table")
        }
        Merged::Newer { .. } => {
            let held = table.get(&item.name).expect("a merged item is held");
            mesh_types::tags::validate(held).expect("an invalid tag set was merged");
        }
        Merged::Stale | Merged::UnknownMember => {}
    }
}

fn swim(data: &[u8]) {
    let peeked = peek_header(data).ok();
    let mut slice = data;
    let header = SwimCodec.decode_header(&mut slice).ok();
    assert_eq!(peeked, header, "peek_header and decode_header disagree");
    let Some(header) = header else {
        return;
    };
    let mut buf = Vec::new();
    SwimCodec.encode_header(&header, &mut buf).expect("encode");
    let mut again = &buf[..];
    let back: Header<NodeId> = SwimCodec
        .decode_header(&mut again)
        .expect("re-encoded header decodes");
    assert_eq!(back, header);
    assert!(
        again.is_empty(),
        "decode_header left bytes of its own encoding"
    );
    // Member updates follow the header; decoding consumes exactly what it read.
    for _ in 0..64 {
        if slice.is_empty() {
            break;
        }
        let before = slice.len();
        let Ok(member) = SwimCodec.decode_member(&mut slice) else {
            break;
        };
        assert!(slice.len() < before, "a member decoded from no bytes");
        let mut buf = Vec::new();
        SwimCodec.encode_member(&member, &mut buf).expect("encode");
        let mut again = &buf[..];
        let back: Member<NodeId> = SwimCodec.decode_member(&mut again).expect("decodes");
        assert_eq!(back, member);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    match selector % 10 {
        0 => match roundtrip::<StateFrame>(data) {
            Some(StateFrame::Batch(batch)) => {
                if let Ok(items) = decode_batch(&batch) {
                    for (c, b) in items {
                        item(c, &b);
                    }
                }
            }
            Some(StateFrame::Push {
                groups,
                names,
                tags,
            }) => {
                check_state(&groups);
                check_state(&names);
                tags.iter().for_each(check_tags_item);
            }
            None => {}
        },
        1 => {
            let _ = roundtrip::<UserFrame>(data);
        }
        2 => {
            let _ = roundtrip::<ControlFrame>(data);
        }
        3 => {
            let _ = roundtrip::<AeRequest>(data);
        }
        4 => {
            if let Some(r) = roundtrip::<AeResponse>(data) {
                check_state(&r.groups);
                check_state(&r.names);
                r.tags.iter().for_each(check_tags_item);
            }
        }
        5 => {
            if let Some(g) = roundtrip::<GroupsItem>(data) {
                check_state::<String, GroupEntry>(&g.delta);
            }
        }
        6 => {
            if let Some(d) = roundtrip::<Delta<String, NameClaim>>(data) {
                check_state(&d);
            }
        }
        7 => {
            if let Ok(items) = decode_batch(data) {
                let again = encode_batch(&items).expect("a decoded batch re-encodes");
                assert_eq!(
                    &again[..],
                    data,
                    "decode_batch accepted a non-exact encoding"
                );
                for (c, b) in items {
                    item(c, &b);
                }
            }
        }
        8 => {
            if let Ok((swim_part, items)) = Dissemination::unwrap_datagram(data) {
                let trailer: usize = items.iter().map(|(_, b): &(_, Bytes)| 3 + b.len()).sum();
                assert_eq!(DATAGRAM_HEADER + swim_part.len() + trailer, data.len());
                swim(swim_part);
                for (c, b) in items {
                    item(c, &b);
                }
            }
        }
        _ => swim(data),
    }
});
