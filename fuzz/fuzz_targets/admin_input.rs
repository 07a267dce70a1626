//! What clients send the admin API, on arbitrary bytes: `[selector][payload]`.
//!
//! - 0..=9: the JSON request bodies of `mesh_api` (claim, release, send, listen, sync,
//!   strong register / release / transfer, join, tags), decoded with `serde_json` as
//!   axum's `Json` extractor does: what decodes re-encodes to JSON that decodes to the
//!   same value.
//! - 10: a tag list (`MESH_TAGS`, `--tag`): what `parse_list` accepts passes `validate`,
//!   and `format_list` gives text that parses back to the same set.
//! - 11: a tag selector (`--filter`): what parses prints (`Display`) as text that
//!   parses back to the same selector.
//! - 12: a `POST /v1/tags` body applied to a node's tag table: a refused change leaves
//!   the set and version as they were; an accepted one leaves a valid set.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mesh_api::{
    ClaimBody, JoinBody, ListenBody, ReleaseBody, SendBody, StrongBody, StrongReleaseBody,
    StrongTransferBody, SyncBody, TagsBody,
};
use mesh_core::tags::TagTable;
use mesh_types::tags::{format_list, parse_list, validate, Selector, Tags};
use serde::de::DeserializeOwned;
use serde::Serialize;

fn json<T>(data: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(value) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let text = serde_json::to_vec(&value).expect("a decoded body encodes");
    let back: T = serde_json::from_slice(&text).expect("a re-encoded body decodes");
    assert_eq!(back, value, "decode(encode(body)) != body");
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    match selector {
        0 => json::<ClaimBody>(payload),
        1 => json::<ReleaseBody>(payload),
        2 => json::<SendBody>(payload),
        3 => json::<ListenBody>(payload),
        4 => json::<SyncBody>(payload),
        5 => json::<StrongBody>(payload),
        6 => json::<StrongReleaseBody>(payload),
        7 => json::<StrongTransferBody>(payload),
        8 => json::<JoinBody>(payload),
        9 => json::<TagsBody>(payload),
        10 => {
            let Ok(text) = std::str::from_utf8(payload) else {
                return;
            };
            if let Ok(tags) = parse_list(text) {
                validate(&tags).expect("parse_list accepted an invalid set");
                assert_eq!(parse_list(&format_list(&tags)), Ok(tags));
            }
        }
        11 => {
            let Ok(text) = std::str::from_utf8(payload) else {
                return;
            };
            if let Ok(sel) = Selector::parse(text) {
                let printed = sel.to_string();
                assert_eq!(Selector::parse(&printed).as_ref(), Ok(&sel), "{printed:?}");
            }
        }
        _ => {
            let Ok(body) = serde_json::from_slice::<TagsBody>(payload) else {
                return;
            };
            let mut table = TagTable::new("n1".into(), 1, Tags::new()).expect("empty is valid");
            let before = (table.own().clone(), table.own_item().version);
            match table.change_own(&body.set, &body.unset) {
                Ok(_) => validate(table.own()).expect("an accepted change left an invalid set"),
                Err(_) => assert_eq!(
                    (table.own().clone(), table.own_item().version),
                    before,
                    "a refused change changed the table"
                ),
            }
        }
    }
});
