//! Wire pins: the exact bytes of every message kind mesh sends or persists.
//!
//! Each case builds one representative value, encodes it with the production encoder
//! and compares the bytes with a hex literal in [`PINS`]; it also decodes the literal
//! with the production decoder and compares the result with the value. So a refactor
//! cannot change the wire (or the acceptor store's bytes) without this test failing.
//!
//! A failing run prints every case that moved as a ready-to-paste `PINS` line with the
//! new hex. **Changing a pin is a wire-format change**: bump the version byte or field
//! that guards it (or make the change backward compatible), and announce it in
//! CHANGELOG.md.
//!
//! Every enum that goes on the wire has an exhaustive `match` below (`*_variant`), so a
//! new variant does not compile until it has a name here; the name must then appear in
//! that enum's `*_VARIANTS` list, which `every_variant_of_every_wire_enum_is_pinned`
//! checks against the samples.
//!
//! What is covered, by layer:
//!
//! - transport frames (`mesh_types::frame`): one frame per [`Class`];
//! - SWIM packets (`mesh_core::codec::SwimCodec`): a header per foca `Message`, a member
//!   per foca `State`;
//! - dissemination datagrams and batch frames (`mesh_core::dissemination`);
//! - node frames (`mesh_core::node::wire`): `StateFrame`, `AeRequest`, `AeResponse`,
//!   `GroupsItem`, names deltas, `UserFrame`, `Undeliverable`, `ControlFrame`;
//! - CRDT deltas and digests (`mesh_crdt`) as the node instantiates them (live and
//!   retired origins, one and many dots per element, dot clouds);
//! - the quorum plane (`node::claims_plane::QuorumMsg`, CASPaxos `Request`/`Reply`/`Outcome`,
//!   `Slot`/`Record`, `Hello`, `RootRecord`), claims `ShardChange` and `ClaimReject`;
//! - the acceptor store's persisted bytes (`quorum::store`: keys, acceptor states, the
//!   root record), which `RedbStore` writes as they are.
//!
//! The node frames are encoded by `node::wire::encode` / `decode`, which are crate
//! private: [`wire_encode`] and [`wire_decode`] here are the same calls
//! (`rmp_serde::to_vec_named`, `rmp_serde::from_slice`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use foca::{Codec as _, Header, Member, Message, State};
use mesh_core::claims::{
    ClaimRecord, ClaimReject, Field, Session, SessionId, ShardChange, ShardId, ShardOutcome,
    ShardSlot, ShardTable, StrongName, TableKind,
};
use mesh_core::codec::SwimCodec;
use mesh_core::dissemination::{
    decode_batch, encode_batch, ChannelId, Dissemination, DisseminationConfig,
};
use mesh_core::hlc::Hlc;
use mesh_core::identity::NodeId;
use mesh_core::node::claims_plane::QuorumMsg;
use mesh_core::node::{
    AeRequest, AeResponse, ControlFrame, GroupsItem, StateFrame, Undeliverable, UserFrame, GROUPS,
    NAMES,
};
use mesh_core::pid::Pid;
use mesh_core::quorum::reconfig;
use mesh_core::quorum::store::{decode_root, decode_state, encode_key, encode_state};
use mesh_core::quorum::{
    AcceptorState, Ballot, Hello, NodeId as AcceptorId, Outcome, Record, Reply, Request, RequestId,
    RootRecord, Slot, Step, VoterChange,
};
use mesh_core::registry::{ConflictPolicy, GroupEntry, NameClaim};
use mesh_crdt::{Delta, Digest, Orswot, Replica};
use mesh_types::frame::{encode_frame, Class, FrameDecoder, DEFAULT_MAX_FRAME};

// ---------------------------------------------------------------------------------------
// The pins

/// `(case, hex of its encoding)`.
///
/// CHANGING THIS IS A WIRE-FORMAT CHANGE: bump/announce it (a version byte or a
/// backward-compatible field, and a CHANGELOG.md entry). A failing run prints the new
/// line of every case that moved.
const PINS: &[(&str, &str)] = &[
    ("frame/control", "00000005010070696e"),
    ("frame/state", "00000005010170696e"),
    ("frame/user", "00000005010270696e"),
    ("swim/header/ping", "84a373726383a16ea161a16181a2563492947f000001cd1f0aa16901af7372635f696e6361726e6174696f6e03a364737483a16ea162a16181a2563492947f000001cd1f0aa16902a76d65737361676581a450696e6707"),
    ("swim/header/ack", "84a373726383a16ea161a16181a2563492947f000001cd1f0aa16901af7372635f696e6361726e6174696f6e03a364737483a16ea162a16181a2563492947f000001cd1f0aa16902a76d65737361676581a341636b08"),
    ("swim/header/ping_req", "84a373726383a16ea161a16181a2563492947f000001cd1f0aa16901af7372635f696e6361726e6174696f6e03a364737483a16ea162a16181a2563492947f000001cd1f0aa16902a76d65737361676581a750696e6752657182a674617267657483a16ea163a16181a2563492947f000001cd1f0aa16903ac70726f62655f6e756d62657209"),
    ("swim/header/indirect_ping", "84a373726383a16ea161a16181a2563492947f000001cd1f0aa16901af7372635f696e6361726e6174696f6e03a364737483a16ea162a16181a2563492947f000001cd1f0aa16902a76d65737361676581ac496e64697265637450696e6782a66f726967696e83a16ea163a16181a2563492947f000001cd1f0aa16903ac70726f62655f6e756d6265720a"),
    ("swim/header/indirect_ack", "84a373726383a16ea161a16181a2563492947f000001cd1f0aa16901af7372635f696e6361726e6174696f6e03a364737483a16ea162a16181a2563492947f000001cd1f0aa16902a76d65737361676581ab496e64697265637441636b82a674617267657483a16ea163a16181a2563492947f000001cd1f0aa16903ac70726f62655f6e756d6265720b"),
    ("swim/header/forwarded_ack", "84a373726383a16ea161a16181a2563492947f000001cd1f0aa16901af7372635f696e6361726e6174696f6e03a364737483a16ea162a16181a2563492947f000001cd1f0aa16902a76d65737361676581ac466f7277617264656441636b82a66f726967696e83a16ea163a16181a2563492947f000001cd1f0aa16903ac70726f62655f6e756d6265720c"),
    ("swim/header/announce", "84a373726383a16ea161a16181a2563492947f000001cd1f0aa16901af7372635f696e6361726e6174696f6e03a364737483a16ea162a16181a2563492947f000001cd1f0aa16902a76d657373616765a8416e6e6f756e6365"),
    ("swim/header/feed", "84a373726383a16ea161a16181a2563492947f000001cd1f0aa16901af7372635f696e6361726e6174696f6e03a364737483a16ea162a16181a2563492947f000001cd1f0aa16902a76d657373616765a446656564"),
    ("swim/header/gossip", "84a373726383a16ea161a16181a2563492947f000001cd1f0aa16901af7372635f696e6361726e6174696f6e03a364737483a16ea162a16181a2563492947f000001cd1f0aa16902a76d657373616765a6476f73736970"),
    ("swim/header/broadcast", "84a373726383a16ea161a16181a2563492947f000001cd1f0aa16901af7372635f696e6361726e6174696f6e03a364737483a16ea162a16181a2563492947f000001cd1f0aa16902a76d657373616765a942726f616463617374"),
    ("swim/header/turn_undead", "84a373726383a16ea161a16181a2563492947f000001cd1f0aa16901af7372635f696e6361726e6174696f6e03a364737483a16ea162a16181a2563492947f000001cd1f0aa16902a76d657373616765aa5475726e556e64656164"),
    ("swim/member/alive", "83a2696483a16ea163a16181a2563492947f000001cd1f0aa16904ab696e6361726e6174696f6e02a57374617465a5416c697665"),
    ("swim/member/suspect", "83a2696483a16ea163a16181a2563492947f000001cd1f0aa16904ab696e6361726e6174696f6e02a57374617465a753757370656374"),
    ("swim/member/down", "83a2696483a16ea163a16181a2563492947f000001cd1f0aa16904ab696e6361726e6174696f6e02a57374617465a4446f776e"),
    ("dissemination/datagram", "11000400017377696d0100046974656d"),
    ("dissemination/batch", "21000200000667726f7570730100056e616d6573"),
    ("crdt/groups_state", "81a16f83a16183a16907a16381a16304a165929283a173a173a167a167a17083a16ea161a16907a16c019201029283a173a173a167a168a17083a16ea161a16907a16c039104a16283a16902a172c3a16381a16300a16382a16901a16382a16300a16791920202"),
    ("crdt/cloud_delta", "81a16f81a16382a16901a16382a16300a16791920202"),
    ("crdt/digest", "81a16f83a16184a16907a16304a170cf96d6473d87cd3e59a16ccf96d6473d87cd3e59a16285a16902a172c3a16300a17000a16c00a16386a16901a16300a16e01a167cf2b7140485678a9c3a17000a16c00"),
    ("node/state_frame/batch", "81a56261746368c403210000"),
    ("node/state_frame/push", "81a47075736882a16781a16f83a16183a16907a16381a16304a165929283a173a173a167a167a17083a16ea161a16907a16c019201029283a173a173a167a168a17083a16ea161a16907a16c039104a16283a16902a172c3a16381a16300a16382a16901a16382a16300a16791920202a16e81a16f81a16183a16907a16381a16301a165919285a16ea3737663a16882a177cf0000019383058ffba16302a17083a16ea161a16907a16c01a179a16ea16da16d9101"),
    ("node/ae_request", "82a16781a16f83a16184a16907a16304a170cf96d6473d87cd3e59a16ccf96d6473d87cd3e59a16285a16902a172c3a16300a17000a16c00a16386a16901a16300a16e01a167cf2b7140485678a9c3a17000a16c00a16e81a16f81a16184a16907a16301a170cf910a2dec89025cc1a16ccf910a2dec89025cc1"),
    ("node/ae_response", "84a16781a16f81a16382a16901a16382a16300a16791920202a16e81a16f81a16183a16907a16381a16301a165919285a16ea3737663a16882a177cf0000019383058ffba16302a17083a16ea161a16907a16c01a179a16ba16da16d9101a2676481a16f83a16184a16907a16304a170cf96d6473d87cd3e59a16ccf96d6473d87cd3e59a16285a16902a172c3a16300a17000a16c00a16386a16901a16300a16e01a167cf2b7140485678a9c3a17000a16c00a26e6481a16f80"),
    ("node/tags_item", "84a16ea26e32a169cf0000019383058f80a17603a17482a6726567696f6ea26575a4726f6c65a6776f726b6572"),
    ("node/ae_request/tags", "83a16781a16f80a16e81a16f80a174cf0123456789abcdef"),
    ("node/ae_response/tags", "86a16781a16f80a16e81a16f80a2676481a16f80a26e6481a16f80a1749184a16ea26e32a169cf0000019383058f80a17603a17482a6726567696f6ea26575a4726f6c65a6776f726b6572a2746407"),
    ("node/state_frame/push_tags", "81a47075736883a16781a16f80a16e81a16f80a1749184a16ea26e32a169cf0000019383058f80a17603a17482a6726567696f6ea26575a4726f6c65a6776f726b6572"),
    ("node/groups_item/full", "83a16481a16f81a16183a16907a16381a16301a165919283a173a173a167a167a17083a16ea161a16907a16c019101a1789183a16ea161a16907a16c09a174cf0000019383059148"),
    ("node/groups_item/minimal", "81a16481a16f81a16183a16907a16381a16301a165919283a173a173a167a167a17083a16ea161a16907a16c019101"),
    ("node/names_item/notify", "81a16f81a16183a16907a16381a16301a165919285a16ea3737663a16882a177cf0000019383058ffba16302a17083a16ea161a16907a16c01a179a16ea16da16d9101"),
    ("node/names_item/kill", "81a16f81a16183a16907a16381a16301a165919285a16ea3737663a16882a177cf0000019383058ffba16302a17083a16ea161a16907a16c01a179a16ba16da16d9101"),
    ("node/names_item/unregister_both", "81a16f81a16183a16907a16381a16301a165919285a16ea3737663a16882a177cf0000019383058ffba16302a17083a16ea161a16907a16c01a179a175a16da16d9101"),
    ("node/user_frame/send_full", "81a473656e6487a16911a161c3a16683a16ea26e31a169cf0000019383058f80a16c2aa162cf0000019383058f80a174920102a17392a373766306a170c40568656c6c6f"),
    ("node/user_frame/send_minimal", "81a473656e6486a16912a161c2a166c0a16205a1749103a170c400"),
    ("node/user_frame/ack", "81a361636b83a16911a16401a166939202aa6e6f5f70726f636573739203ac6d61696c626f785f66756c6c9204ad7374616c655f76657273696f6e"),
    ("node/undeliverable/no_process", "aa6e6f5f70726f63657373"),
    ("node/undeliverable/mailbox_full", "ac6d61696c626f785f66756c6c"),
    ("node/undeliverable/stale_version", "ad7374616c655f76657273696f6e"),
    ("node/control_frame/quorum", "81a671756f72756dc40671756f72756d"),
    ("quorum/msg/hello", "81a568656c6c6f86a46e616d65a26e31ab6163636570746f725f69644da4726f6f7482a565706f636801a6766f746572739392a26e314d92a26e324e92a26e334fb0766f7465725f6e616d65735f68617368ce12345678a361736b05a6616e73776572c0"),
    ("quorum/msg/request", "81a77265717565737482a2746f4da372657181a641636365707485a36b657903a565706f636801a662616c6c6f7483a5726f756e6403a46e6f6465cd0abcab696e6361726e6174696f6e02a576616c756583a576616c756584a1740aa173919283a16ea26e31a16907a1730382a174cd2710a17208a16381a67461736b2d3182a17383a16ea26e31a16907a17303a16b05a16e82a764757261626c6582a16f83a16ea26e32a16909a16c01a17604a373766383a16f83a16ea26e31a169cf0000019383058f80a16c2aa17606a17383a16ea26e31a16907a17303a76170706c69656482cd111183a17104a17281a24f6b05a16102cd222283a17101a17281a345727281aa496e76616c696454746c81a674746c5f6d7305a16101a76465636964656402a46e65787483a5726f756e6404a46e6f6465cd0abcab696e6361726e6174696f6e02"),
    ("quorum/msg/reply", "81a57265706c7983a2746fcd0abca466726f6d4da372657081a750726f6d69736583a36b657903a662616c6c6f7483a5726f756e6403a46e6f6465cd0abcab696e6361726e6174696f6e02a861636365707465649283a5726f756e6401a46e6f646505ab696e6361726e6174696f6e0183a576616c756584a1740aa173919283a16ea26e31a16907a1730382a174cd2710a17208a16381a67461736b2d3182a17383a16ea26e31a16907a17303a16b05a16e82a764757261626c6582a16f83a16ea26e32a16909a16c01a17604a373766383a16f83a16ea26e31a169cf0000019383058f80a16c2aa17606a17383a16ea26e31a16907a17303a76170706c69656482cd111183a17104a17281a24f6b05a16102cd222283a17101a17281a345727281aa496e76616c696454746c81a674746c5f6d7305a16101a76465636964656402"),
    ("quorum/msg/forward", "81a7666f727761726483a5736861726403a66368616e676581a16382a16ba67461736b2d31a17383a16ea26e31a16907a17303a77265717565737482a6636c69656e74cd1111a373657104"),
    ("quorum/msg/forwarded", "81a9666f7277617264656482a77265717565737482a6636c69656e74cd1111a373657104a76f7574636f6d6581a74170706c69656482a576616c756584a1740aa173919283a16ea26e31a16907a1730382a174cd2710a17208a16381a67461736b2d3182a17383a16ea26e31a16907a17303a16b05a16e82a764757261626c6582a16f83a16ea26e32a16909a16c01a17604a373766383a16f83a16ea26e31a169cf0000019383058f80a16c2aa17606a17383a16ea26e31a16907a17303a77265636569707405"),
    ("quorum/msg/names", "81a56e616d657383a5736861726403a57374616d700aa56e616d657382a764757261626c6582a16f83a16ea26e32a16909a16c01a17604a373766383a16f83a16ea26e31a169cf0000019383058f80a16c2aa17606a17383a16ea26e31a16907a17303"),
    ("quorum/request/prepare", "81a75072657061726583a36b657903a565706f636801a662616c6c6f7483a5726f756e6403a46e6f6465cd0abcab696e6361726e6174696f6e02"),
    ("quorum/request/accept", "81a641636365707485a36b657903a565706f636801a662616c6c6f7483a5726f756e6403a46e6f6465cd0abcab696e6361726e6174696f6e02a576616c756583a576616c756584a1740aa173919283a16ea26e31a16907a1730382a174cd2710a17208a16381a67461736b2d3182a17383a16ea26e31a16907a17303a16b05a16e82a764757261626c6582a16f83a16ea26e32a16909a16c01a17604a373766383a16f83a16ea26e31a169cf0000019383058f80a16c2aa17606a17383a16ea26e31a16907a17303a76170706c69656482cd111183a17104a17281a24f6b05a16102cd222283a17101a17281a345727281aa496e76616c696454746c81a674746c5f6d7305a16101a76465636964656402a46e65787483a5726f756e6404a46e6f6465cd0abcab696e6361726e6174696f6e02"),
    ("quorum/reply/promise_empty", "81a750726f6d69736583a36b657903a662616c6c6f7483a5726f756e6403a46e6f6465cd0abcab696e6361726e6174696f6e02a86163636570746564c0"),
    ("quorum/reply/promise_accepted", "81a750726f6d69736583a36b657903a662616c6c6f7483a5726f756e6403a46e6f6465cd0abcab696e6361726e6174696f6e02a861636365707465649283a5726f756e6401a46e6f646505ab696e6361726e6174696f6e0183a576616c756584a1740aa173919283a16ea26e31a16907a1730382a174cd2710a17208a16381a67461736b2d3182a17383a16ea26e31a16907a17303a16b05a16e82a764757261626c6582a16f83a16ea26e32a16909a16c01a17604a373766383a16f83a16ea26e31a169cf0000019383058f80a16c2aa17606a17383a16ea26e31a16907a17303a76170706c69656482cd111183a17104a17281a24f6b05a16102cd222283a17101a17281a345727281aa496e76616c696454746c81a674746c5f6d7305a16101a76465636964656402"),
    ("quorum/reply/accepted", "81a8416363657074656483a36b657903a662616c6c6f7483a5726f756e6403a46e6f6465cd0abcab696e6361726e6174696f6e02ad6e6578745f70726f6d69736564c3"),
    ("quorum/reply/conflict", "81a8436f6e666c69637483a36b657903a662616c6c6f7483a5726f756e6403a46e6f6465cd0abcab696e6361726e6174696f6e02a870726f6d6973656483a5726f756e6404a46e6f6465cd0abcab696e6361726e6174696f6e02"),
    ("quorum/reply/wrong_epoch", "81aa57726f6e6745706f636883a36b657903a662616c6c6f7483a5726f756e6403a46e6f6465cd0abcab696e6361726e6174696f6e02a565706f636802"),
    ("quorum/outcome/applied", "81a74170706c69656482a576616c756584a1740aa173919283a16ea26e31a16907a1730382a174cd2710a17208a16381a67461736b2d3182a17383a16ea26e31a16907a17303a16b05a16e82a764757261626c6582a16f83a16ea26e32a16909a16c01a17604a373766383a16f83a16ea26e31a169cf0000019383058f80a16c2aa17606a17383a16ea26e31a16907a17303a77265636569707409"),
    ("quorum/outcome/rejected", "81a852656a656374656482a6726561736f6eaa4e6f537563684e616d65a763757272656e74c0"),
    ("quorum/outcome/replayed_ok", "81a85265706c6179656482a86465636973696f6e81a24f6b05a763757272656e7484a17401a17390a16380a16e80"),
    ("quorum/outcome/replayed_err", "81a85265706c6179656482a86465636973696f6e81a345727281aa5374616c65546f6b656e81a763757272656e7404a763757272656e74c0"),
    ("quorum/outcome/superseded", "aa53757065727365646564"),
    ("claims/change/open_session", "81a16f83a16ea26e31a16907a174cd2710"),
    ("claims/change/renew", "81a17281a17383a16ea26e31a16907a17303"),
    ("claims/change/close_session", "81a17881a17383a16ea26e31a16907a17303"),
    ("claims/change/claim", "81a16382a16ba67461736b2d31a17383a16ea26e31a16907a17303"),
    ("claims/change/release", "81a16c82a16ba67461736b2d31a17605"),
    ("claims/change/evict", "81a16582a17383a16ea26e31a16907a17303a17208"),
    ("claims/change/reassign", "81a16183a17383a16ea26e31a16907a17303a17208a2746f81a67461736b2d3183a16ea26e32a16909a17304"),
    ("claims/change/register_name", "81a16e84a16ba3737663a16f83a16ea26e31a169cf0000019383058f80a16c2aa17383a16ea26e31a16907a17303a165c3"),
    ("claims/change/transfer_name", "81a16d84a16ba3737663a17606a16f83a16ea26e32a16909a16c01a17383a16ea26e31a16907a17303"),
    ("claims/change/release_name", "81a17582a16ba3737663a17606"),
    ("claims/change/read", "a171"),
    ("claims/reject/held", "81a448656c6482a6686f6c64657283a16ea26e31a16907a17303a5746f6b656e05"),
    ("claims/reject/no_session", "81a94e6f53657373696f6e81a373696483a16ea26e31a16907a17303"),
    ("claims/reject/stale_token", "81aa5374616c65546f6b656e81a763757272656e7404"),
    ("claims/reject/not_held", "81a74e6f7448656c6481a47461736ba67461736b2d31"),
    ("claims/reject/name_taken", "81a94e616d6554616b656e82a56f776e657283a16ea26e31a169cf0000019383058f80a16c2aa776657273696f6e06"),
    ("claims/reject/no_such_name", "aa4e6f537563684e616d65"),
    ("claims/reject/version_mismatch", "81af56657273696f6e4d69736d6174636881a763757272656e7406"),
    ("claims/reject/renew_seq_moved", "81ad52656e65775365714d6f76656481a763757272656e7409"),
    ("claims/reject/reassign_to_evicted", "b1526561737369676e546f45766963746564"),
    ("claims/reject/bad_length_task", "81a94261644c656e67746883a56669656c64a45461736ba36c656e00a36d6178cc80"),
    ("claims/reject/bad_length_name", "81a94261644c656e67746883a56669656c64a44e616d65a36c656ecc81a36d6178cc80"),
    ("claims/reject/bad_length_node", "81a94261644c656e67746883a56669656c64a44e6f6465a36c656e40a36d61783f"),
    ("claims/reject/invalid_ttl", "81aa496e76616c696454746c81a674746c5f6d7305"),
    ("claims/reject/table_full_sessions", "81a95461626c6546756c6c82a46b696e64a853657373696f6e73a36d617840"),
    ("claims/reject/table_full_claims", "81a95461626c6546756c6c82a46b696e64a6436c61696d73a36d6178cd0100"),
    ("claims/reject/table_full_names", "81a95461626c6546756c6c82a46b696e64a54e616d6573a36d6178cd0100"),
    ("claims/reject/exhausted", "a9457868617573746564"),
    ("store/key", "03"),
    ("store/state/fresh", "0183a870726f6d6973656483a5726f756e6403a46e6f6465cd0abcab696e6361726e6174696f6e02a86163636570746564c0a565706f636801"),
    ("store/state/accepted", "0183a870726f6d6973656483a5726f756e6404a46e6f6465cd0abcab696e6361726e6174696f6e02a861636365707465649283a5726f756e6403a46e6f6465cd0abcab696e6361726e6174696f6e0283a576616c756584a1740aa173919283a16ea26e31a16907a1730382a174cd2710a17208a16381a67461736b2d3182a17383a16ea26e31a16907a17303a16b05a16e82a764757261626c6582a16f83a16ea26e32a16909a16c01a17604a373766383a16f83a16ea26e31a169cf0000019383058f80a16c2aa17606a17383a16ea26e31a16907a17303a76170706c69656482cd111183a17104a17281a24f6b05a16102cd222283a17101a17281a345727281aa496e76616c696454746c81a674746c5f6d7305a16101a76465636964656402a565706f636801"),
    ("store/root", "0182a565706f636801a6766f746572739392a26e314d92a26e324e92a26e334f"),
    ("store/root/add", "0184a565706f636802a6766f746572739492a26e314d92a26e324e92a26e334f92a26e3450a771756f72756d7382a77072657061726582a5616d6f6e67934d4e4fa46e65656402a661636365707482a5616d6f6e67944d4e4f50a46e65656403a770656e64696e6784a66368616e676581a341646482a46e616d65a26e34a86163636570746f7250a473746570a7576964656e6564ad6265666f72655f766f746572739392a26e314d92a26e324e92a26e334fae6265666f72655f71756f72756d7382a77072657061726582a5616d6f6e67934d4e4fa46e65656402a661636365707482a5616d6f6e67934d4e4fa46e65656402"),
    ("store/root/quorums", "0183a565706f636803a6766f746572739492a26e314d92a26e324e92a26e334f92a26e3450a771756f72756d7382a77072657061726582a5616d6f6e67944d4e4f50a46e65656403a661636365707482a5616d6f6e67944d4e4f50a46e65656403"),
    ("store/root/remove", "0184a565706f636804a6766f746572739492a26e314d92a26e324e92a26e334f92a26e3450a771756f72756d7382a77072657061726582a5616d6f6e67934e4f50a46e65656402a661636365707482a5616d6f6e67944d4e4f50a46e65656403a770656e64696e6784a66368616e676581a652656d6f766582a46e616d65a26e31a86163636570746f724da473746570a84e6172726f776564ad6265666f72655f766f746572739492a26e314d92a26e324e92a26e334f92a26e3450ae6265666f72655f71756f72756d7382a77072657061726582a5616d6f6e67944d4e4f50a46e65656403a661636365707482a5616d6f6e67944d4e4f50a46e65656403"),
];

// ---------------------------------------------------------------------------------------
// The harness

/// One pinned value: its bytes from the production encoder, and a check that decodes
/// bytes with the production decoder and compares the result with the value.
struct Case {
    name: String,
    encoded: Vec<u8>,
    decodes_to_value: DecodeCheck,
}

/// Decodes bytes and compares the result with the case's value.
type DecodeCheck = Box<dyn Fn(&[u8]) -> Result<(), String>>;

/// A datagram's SWIM packet and its items.
type Unwrapped = (Vec<u8>, Vec<(ChannelId, Bytes)>);

fn case<T, EE, DE>(
    name: impl Into<String>,
    value: T,
    encode: impl FnOnce(&T) -> Result<Vec<u8>, EE>,
    decode: impl Fn(&[u8]) -> Result<T, DE> + 'static,
) -> Case
where
    T: PartialEq + Debug + 'static,
    EE: Debug,
    DE: std::fmt::Display,
{
    let name = name.into();
    let encoded = match encode(&value) {
        Ok(bytes) => bytes,
        Err(e) => panic!("{name}: the production encoder failed: {e:?}"),
    };
    let decodes_to_value = Box::new(move |bytes: &[u8]| match decode(bytes) {
        Ok(back) if back == value => Ok(()),
        Ok(back) => Err(format!("decodes to {back:?}, not {value:?}")),
        Err(e) => Err(format!("does not decode: {e}")),
    });
    Case {
        name,
        encoded,
        decodes_to_value,
    }
}

/// A node-wire value (named-field MessagePack), as `node::wire::encode` writes it.
fn wire_encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(value)
}

/// A node-wire value, as `node::wire::decode` reads it.
fn wire_decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}

fn wire_case<T>(name: impl Into<String>, value: T) -> Case
where
    T: PartialEq + Debug + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    case(name, value, wire_encode, wire_decode::<T>)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("odd-length hex {s:?}"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("bad hex: {e}")))
        .collect()
}

/// Compares a case with its pinned bytes: the encoding must equal them, and they must
/// decode back to the value.
fn check(case: &Case, pinned: &[u8]) -> Result<(), String> {
    let mut problems = Vec::new();
    if case.encoded != pinned {
        problems.push(format!(
            "encodes to {} instead of the pinned {}",
            hex(&case.encoded),
            hex(pinned)
        ));
    }
    if let Err(e) = (case.decodes_to_value)(pinned) {
        problems.push(format!("the pinned bytes {e}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Checks every case against `pins`; the error lists every case that moved, with the
/// `PINS` line to paste for a deliberate change.
fn check_all(cases: &[Case], pins: &[(&str, &str)]) -> Result<(), String> {
    let mut report = Vec::new();
    let mut lines = Vec::new();
    let mut names = BTreeSet::new();
    for case in cases {
        assert!(
            names.insert(case.name.as_str()),
            "two cases are named {:?}",
            case.name
        );
        let outcome = match pins.iter().find(|(name, _)| *name == case.name) {
            None => Err("has no pin".to_owned()),
            Some((_, pin)) => unhex(pin).and_then(|pinned| check(case, &pinned)),
        };
        if let Err(e) = outcome {
            report.push(format!("- {}: {e}", case.name));
            lines.push(format!(
                "    (\"{}\", \"{}\"),",
                case.name,
                hex(&case.encoded)
            ));
        }
    }
    for (name, _) in pins {
        if !names.contains(name) {
            report.push(format!("- {name}: pinned, but no case builds it"));
        }
    }
    if report.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the wire format changed (changing a pin is a wire-format change: bump/announce \
         it):\n{}\n\nIf the change is deliberate, the new PINS lines are:\n{}",
        report.join("\n"),
        lines.join("\n")
    ))
}

// ---------------------------------------------------------------------------------------
// Exhaustive variant names: a new variant does not compile until it is named here, and
// `every_variant_of_every_wire_enum_is_pinned` fails until a sample of it is pinned.

fn class_variant(v: &Class) -> &'static str {
    match v {
        Class::Control => "control",
        Class::State => "state",
        Class::User => "user",
    }
}
const CLASS_VARIANTS: &[&str] = &["control", "state", "user"];

fn message_variant(v: &Message<NodeId>) -> &'static str {
    match v {
        Message::Ping(_) => "ping",
        Message::Ack(_) => "ack",
        Message::PingReq { .. } => "ping_req",
        Message::IndirectPing { .. } => "indirect_ping",
        Message::IndirectAck { .. } => "indirect_ack",
        Message::ForwardedAck { .. } => "forwarded_ack",
        Message::Announce => "announce",
        Message::Feed => "feed",
        Message::Gossip => "gossip",
        Message::Broadcast => "broadcast",
        Message::TurnUndead => "turn_undead",
    }
}
const MESSAGE_VARIANTS: &[&str] = &[
    "ping",
    "ack",
    "ping_req",
    "indirect_ping",
    "indirect_ack",
    "forwarded_ack",
    "announce",
    "feed",
    "gossip",
    "broadcast",
    "turn_undead",
];

fn swim_state_variant(v: &State) -> &'static str {
    match v {
        State::Alive => "alive",
        State::Suspect => "suspect",
        State::Down => "down",
    }
}
const SWIM_STATE_VARIANTS: &[&str] = &["alive", "suspect", "down"];

fn state_frame_variant(v: &StateFrame) -> &'static str {
    match v {
        StateFrame::Batch(_) => "batch",
        StateFrame::Push { .. } => "push",
    }
}
const STATE_FRAME_VARIANTS: &[&str] = &["batch", "push"];

fn user_frame_variant(v: &UserFrame) -> &'static str {
    match v {
        UserFrame::Send { .. } => "send",
        UserFrame::Ack { .. } => "ack",
    }
}
const USER_FRAME_VARIANTS: &[&str] = &["send", "ack"];

fn undeliverable_variant(v: &Undeliverable) -> &'static str {
    match v {
        Undeliverable::NoProcess => "no_process",
        Undeliverable::MailboxFull => "mailbox_full",
        Undeliverable::StaleVersion => "stale_version",
    }
}
const UNDELIVERABLE_VARIANTS: &[&str] = &["no_process", "mailbox_full", "stale_version"];

/// Roots of a voter change (`quorum::reconfig`): an add's first root, a removal's first
/// root, and a root with explicit quorums and nothing pending.
fn changing_roots() -> Vec<RootRecord> {
    let widened = reconfig::begin(
        &root(),
        VoterChange::Add {
            name: "n4".to_owned(),
            acceptor: 80,
        },
    )
    .expect("an add begins");
    let done = reconfig::advance(&widened).expect("the add ends");
    let narrowed = reconfig::begin(
        &done,
        VoterChange::Remove {
            name: "n1".to_owned(),
            acceptor: 77,
        },
    )
    .expect("a removal begins");
    vec![widened, done, narrowed]
}

fn voter_change_variant(v: &VoterChange) -> &'static str {
    match v {
        VoterChange::Add { .. } => "add",
        VoterChange::Remove { .. } => "remove",
    }
}
const VOTER_CHANGE_VARIANTS: &[&str] = &["add", "remove"];

fn step_variant(v: &Step) -> &'static str {
    match v {
        Step::Widened => "widened",
        Step::Narrowed => "narrowed",
    }
}
const STEP_VARIANTS: &[&str] = &["widened", "narrowed"];

fn control_frame_variant(v: &ControlFrame) -> &'static str {
    match v {
        ControlFrame::Quorum(_) => "quorum",
    }
}
const CONTROL_FRAME_VARIANTS: &[&str] = &["quorum"];

fn conflict_policy_variant(v: &ConflictPolicy) -> &'static str {
    match v {
        ConflictPolicy::Notify => "notify",
        ConflictPolicy::Kill => "kill",
        ConflictPolicy::UnregisterBoth => "unregister_both",
    }
}
const CONFLICT_POLICY_VARIANTS: &[&str] = &["notify", "kill", "unregister_both"];

fn quorum_msg_variant(v: &QuorumMsg) -> &'static str {
    match v {
        QuorumMsg::Hello(_) => "hello",
        QuorumMsg::Request { .. } => "request",
        QuorumMsg::Reply { .. } => "reply",
        QuorumMsg::Forward { .. } => "forward",
        QuorumMsg::Forwarded { .. } => "forwarded",
        QuorumMsg::Names { .. } => "names",
    }
}
const QUORUM_MSG_VARIANTS: &[&str] =
    &["hello", "request", "reply", "forward", "forwarded", "names"];

fn request_variant(v: &Request<ShardId, ShardSlot>) -> &'static str {
    match v {
        Request::Prepare { .. } => "prepare",
        Request::Accept { .. } => "accept",
    }
}
const REQUEST_VARIANTS: &[&str] = &["prepare", "accept"];

fn reply_variant(v: &Reply<ShardId, ShardSlot>) -> &'static str {
    match v {
        Reply::Promise { .. } => "promise",
        Reply::Accepted { .. } => "accepted",
        Reply::Conflict { .. } => "conflict",
        Reply::WrongEpoch { .. } => "wrong_epoch",
    }
}
const REPLY_VARIANTS: &[&str] = &["promise", "accepted", "conflict", "wrong_epoch"];

fn outcome_variant(v: &ShardOutcome) -> &'static str {
    match v {
        Outcome::Applied { .. } => "applied",
        Outcome::Rejected { .. } => "rejected",
        Outcome::Replayed { .. } => "replayed",
        Outcome::Superseded => "superseded",
    }
}
const OUTCOME_VARIANTS: &[&str] = &["applied", "rejected", "replayed", "superseded"];

fn shard_change_variant(v: &ShardChange) -> &'static str {
    match v {
        ShardChange::OpenSession { .. } => "open_session",
        ShardChange::Renew { .. } => "renew",
        ShardChange::CloseSession { .. } => "close_session",
        ShardChange::Claim { .. } => "claim",
        ShardChange::Release { .. } => "release",
        ShardChange::Evict { .. } => "evict",
        ShardChange::Reassign { .. } => "reassign",
        ShardChange::RegisterName { .. } => "register_name",
        ShardChange::TransferName { .. } => "transfer_name",
        ShardChange::ReleaseName { .. } => "release_name",
        ShardChange::Read => "read",
    }
}
const SHARD_CHANGE_VARIANTS: &[&str] = &[
    "open_session",
    "renew",
    "close_session",
    "claim",
    "release",
    "evict",
    "reassign",
    "register_name",
    "transfer_name",
    "release_name",
    "read",
];

fn claim_reject_variant(v: &ClaimReject) -> &'static str {
    match v {
        ClaimReject::Held { .. } => "held",
        ClaimReject::NoSession { .. } => "no_session",
        ClaimReject::StaleToken { .. } => "stale_token",
        ClaimReject::NotHeld { .. } => "not_held",
        ClaimReject::NameTaken { .. } => "name_taken",
        ClaimReject::NoSuchName => "no_such_name",
        ClaimReject::VersionMismatch { .. } => "version_mismatch",
        ClaimReject::RenewSeqMoved { .. } => "renew_seq_moved",
        ClaimReject::ReassignToEvicted => "reassign_to_evicted",
        ClaimReject::BadLength { .. } => "bad_length",
        ClaimReject::InvalidTtl { .. } => "invalid_ttl",
        ClaimReject::TableFull { .. } => "table_full",
        ClaimReject::Exhausted => "exhausted",
    }
}
const CLAIM_REJECT_VARIANTS: &[&str] = &[
    "held",
    "no_session",
    "stale_token",
    "not_held",
    "name_taken",
    "no_such_name",
    "version_mismatch",
    "renew_seq_moved",
    "reassign_to_evicted",
    "bad_length",
    "invalid_ttl",
    "table_full",
    "exhausted",
];

fn field_variant(v: &Field) -> &'static str {
    match v {
        Field::Task => "task",
        Field::Name => "name",
        Field::Node => "node",
    }
}
const FIELD_VARIANTS: &[&str] = &["task", "name", "node"];

fn table_kind_variant(v: &TableKind) -> &'static str {
    match v {
        TableKind::Sessions => "sessions",
        TableKind::Claims => "claims",
        TableKind::Names => "names",
    }
}
const TABLE_KIND_VARIANTS: &[&str] = &["sessions", "claims", "names"];

// ---------------------------------------------------------------------------------------
// Representative values

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn node_id(name: &str, incarnation: u64) -> NodeId {
    NodeId::new(name, addr(7946), incarnation)
}

fn pid() -> Pid {
    Pid::new("n1", 1_733_070_000_000, 42)
}

fn sid() -> SessionId {
    SessionId {
        node: "n1".to_owned(),
        incarnation: 7,
        n: 3,
    }
}

fn ballot() -> Ballot {
    Ballot {
        round: 3,
        node: AcceptorId(0x0abc),
        incarnation: 2,
    }
}

fn table() -> ShardTable {
    ShardTable {
        next_token: 10,
        sessions: BTreeMap::from([(
            sid(),
            Session {
                ttl_ms: 10_000,
                renew_seq: 8,
            },
        )]),
        claims: BTreeMap::from([(
            "task-1".to_owned(),
            ClaimRecord {
                sid: sid(),
                token: 5,
            },
        )]),
        names: BTreeMap::from([
            (
                "durable".to_owned(),
                StrongName {
                    owner: Pid::new("n2", 9, 1),
                    version: 4,
                    sid: None,
                },
            ),
            (
                "svc".to_owned(),
                StrongName {
                    owner: pid(),
                    version: 6,
                    sid: Some(sid()),
                },
            ),
        ]),
    }
}

fn slot() -> ShardSlot {
    Slot {
        value: Some(table()),
        applied: BTreeMap::from([
            (
                0x1111,
                Record {
                    seq: 4,
                    result: Ok(5),
                    at: 2,
                },
            ),
            (
                0x2222,
                Record {
                    seq: 1,
                    result: Err(ClaimReject::InvalidTtl { ttl_ms: 5 }),
                    at: 1,
                },
            ),
        ]),
        decided: 2,
    }
}

fn root() -> RootRecord {
    RootRecord {
        epoch: 1,
        quorums: None,
        pending: None,
        voters: vec![
            ("n1".to_owned(), 77),
            ("n2".to_owned(), 78),
            ("n3".to_owned(), 79),
        ],
    }
}

fn hello() -> Hello {
    Hello {
        name: "n1".to_owned(),
        acceptor_id: Some(77),
        root: Some(root()),
        voter_names_hash: 0x1234_5678,
        ask: Some(5),
        answer: None,
    }
}

fn entry(group: &str, pid: Pid, meta: Option<&str>) -> GroupEntry {
    GroupEntry {
        scope: "s".to_owned(),
        group: group.to_owned(),
        pid,
        meta: meta.map(str::to_owned),
    }
}

/// A groups state with every shape an origin has on the wire: origin `a` live with an
/// element of two dots and one of one dot (and a removed dot), origin `b` retired
/// (purged), origin `c` known only by a dot cloud (a removal whose add was never seen).
fn groups_state() -> Delta<String, GroupEntry> {
    let mut a = Replica::new("a".to_owned(), 7);
    let x = entry("g", Pid::new("a", 7, 1), None);
    let y = entry("g", Pid::new("a", 7, 2), Some("m"));
    let z = entry("h", Pid::new("a", 7, 3), None);
    a.add(x.clone());
    a.add(x);
    a.add(y.clone());
    a.add(z);
    let _removed = a.remove(&y).expect("y was added");

    let mut b = Replica::new("b".to_owned(), 2);
    b.add(entry("g", Pid::new("b", 2, 1), None));
    a.merge(b.state());
    a.purge_origin(&"b".to_owned()).expect("b is known");

    let mut state = a.state().clone();
    state.merge(&cloud_delta());
    state
}

/// A removal delta of origin `c`: a context of one dot above an empty prefix (a cloud),
/// no elements.
fn cloud_delta() -> Delta<String, GroupEntry> {
    let mut c = Replica::new("c".to_owned(), 1);
    let w = entry("g", Pid::new("c", 1, 1), None);
    c.add(w.clone());
    c.add(w.clone());
    c.remove(&w).expect("w was added")
}

fn names_delta(policy: ConflictPolicy) -> Delta<String, NameClaim> {
    let mut r = Replica::new("a".to_owned(), 7);
    r.add(NameClaim {
        name: "svc".to_owned(),
        hlc: Hlc {
            wall_ms: 1_733_070_000_123,
            logical: 2,
        },
        pid: Pid::new("a", 7, 1),
        policy,
        meta: Some("m".to_owned()),
    })
}

fn groups_item() -> GroupsItem {
    GroupsItem {
        delta: Replica::new("a".to_owned(), 7).add(entry("g", Pid::new("a", 7, 1), None)),
        exited: vec![Pid::new("a", 7, 9)],
        sent_at: Some(1_733_070_000_456),
    }
}

fn digest() -> Digest<String> {
    groups_state().digest()
}

fn swim_headers() -> Vec<Header<NodeId>> {
    let (a, b, c) = (node_id("a", 1), node_id("b", 2), node_id("c", 3));
    [
        Message::Ping(7),
        Message::Ack(8),
        Message::PingReq {
            target: c.clone(),
            probe_number: 9,
        },
        Message::IndirectPing {
            origin: c.clone(),
            probe_number: 10,
        },
        Message::IndirectAck {
            target: c.clone(),
            probe_number: 11,
        },
        Message::ForwardedAck {
            origin: c,
            probe_number: 12,
        },
        Message::Announce,
        Message::Feed,
        Message::Gossip,
        Message::Broadcast,
        Message::TurnUndead,
    ]
    .into_iter()
    .map(|message| Header {
        src: a.clone(),
        src_incarnation: 3,
        dst: b.clone(),
        message,
    })
    .collect()
}

fn tags_item() -> mesh_core::tags::TagsItem {
    mesh_core::tags::TagsItem {
        name: "n2".into(),
        incarnation: 1_733_070_000_000,
        version: 3,
        tags: [("region", "eu"), ("role", "worker")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    }
}

fn swim_members() -> Vec<Member<NodeId>> {
    [State::Alive, State::Suspect, State::Down]
        .into_iter()
        .map(|state| Member::new(node_id("c", 4), 2, state))
        .collect()
}

fn state_frames() -> Vec<StateFrame> {
    vec![
        StateFrame::Batch(Bytes::from_static(b"\x21\x00\x00")),
        StateFrame::Push {
            groups: groups_state(),
            names: names_delta(ConflictPolicy::Notify),
            tags: Vec::new(),
        },
    ]
}

fn user_frames() -> Vec<(&'static str, UserFrame)> {
    vec![
        (
            "send_full",
            UserFrame::Send {
                id: 17,
                ack: true,
                from: Some(pid()),
                incarnation: 1_733_070_000_000,
                targets: vec![1, 2],
                strong: Some(("svc".to_owned(), 6)),
                payload: Bytes::from_static(b"hello"),
            },
        ),
        (
            "send_minimal",
            UserFrame::Send {
                id: 18,
                ack: false,
                from: None,
                incarnation: 5,
                targets: vec![3],
                strong: None,
                payload: Bytes::new(),
            },
        ),
        (
            "ack",
            UserFrame::Ack {
                id: 17,
                delivered: 1,
                failed: undeliverables()
                    .into_iter()
                    .zip(2..)
                    .map(|(why, local)| (local, why))
                    .collect(),
            },
        ),
    ]
}

fn undeliverables() -> Vec<Undeliverable> {
    vec![
        Undeliverable::NoProcess,
        Undeliverable::MailboxFull,
        Undeliverable::StaleVersion,
    ]
}

fn requests() -> Vec<Request<ShardId, ShardSlot>> {
    vec![
        Request::Prepare {
            key: ShardId(3),
            epoch: 1,
            ballot: ballot(),
        },
        Request::Accept {
            key: ShardId(3),
            epoch: 1,
            ballot: ballot(),
            value: slot(),
            next: ballot().next(),
        },
    ]
}

fn replies() -> Vec<(&'static str, Reply<ShardId, ShardSlot>)> {
    vec![
        (
            "promise_empty",
            Reply::Promise {
                key: ShardId(3),
                ballot: ballot(),
                accepted: None,
            },
        ),
        (
            "promise_accepted",
            Reply::Promise {
                key: ShardId(3),
                ballot: ballot(),
                accepted: Some((Ballot::first(AcceptorId(5), 1), slot())),
            },
        ),
        (
            "accepted",
            Reply::Accepted {
                key: ShardId(3),
                ballot: ballot(),
                next_promised: true,
            },
        ),
        (
            "conflict",
            Reply::Conflict {
                key: ShardId(3),
                ballot: ballot(),
                promised: ballot().next(),
            },
        ),
        (
            "wrong_epoch",
            Reply::WrongEpoch {
                key: ShardId(3),
                ballot: ballot(),
                epoch: 2,
            },
        ),
    ]
}

fn outcomes() -> Vec<(&'static str, ShardOutcome)> {
    vec![
        (
            "applied",
            Outcome::Applied {
                value: Some(table()),
                receipt: 9,
            },
        ),
        (
            "rejected",
            Outcome::Rejected {
                reason: ClaimReject::NoSuchName,
                current: None,
            },
        ),
        (
            "replayed_ok",
            Outcome::Replayed {
                decision: Ok(5),
                current: Some(ShardTable::default()),
            },
        ),
        (
            "replayed_err",
            Outcome::Replayed {
                decision: Err(ClaimReject::StaleToken { current: 4 }),
                current: None,
            },
        ),
        ("superseded", Outcome::Superseded),
    ]
}

fn shard_changes() -> Vec<ShardChange> {
    vec![
        ShardChange::OpenSession {
            node: "n1".to_owned(),
            incarnation: 7,
            ttl_ms: 10_000,
        },
        ShardChange::Renew { sid: sid() },
        ShardChange::CloseSession { sid: sid() },
        ShardChange::Claim {
            task: "task-1".to_owned(),
            sid: sid(),
        },
        ShardChange::Release {
            task: "task-1".to_owned(),
            token: 5,
        },
        ShardChange::Evict {
            sid: sid(),
            seen_renew_seq: 8,
        },
        ShardChange::Reassign {
            sid: sid(),
            seen_renew_seq: 8,
            to: BTreeMap::from([(
                "task-1".to_owned(),
                SessionId {
                    node: "n2".to_owned(),
                    incarnation: 9,
                    n: 4,
                },
            )]),
        },
        ShardChange::RegisterName {
            name: "svc".to_owned(),
            owner: pid(),
            sid: sid(),
            ephemeral: true,
        },
        ShardChange::TransferName {
            name: "svc".to_owned(),
            version: 6,
            to: Pid::new("n2", 9, 1),
            sid: Some(sid()),
        },
        ShardChange::ReleaseName {
            name: "svc".to_owned(),
            version: 6,
        },
        ShardChange::Read,
    ]
}

fn claim_rejects() -> Vec<ClaimReject> {
    vec![
        ClaimReject::Held {
            holder: sid(),
            token: 5,
        },
        ClaimReject::NoSession { sid: sid() },
        ClaimReject::StaleToken { current: 4 },
        ClaimReject::NotHeld {
            task: "task-1".to_owned(),
        },
        ClaimReject::NameTaken {
            owner: pid(),
            version: 6,
        },
        ClaimReject::NoSuchName,
        ClaimReject::VersionMismatch { current: 6 },
        ClaimReject::RenewSeqMoved { current: 9 },
        ClaimReject::ReassignToEvicted,
        ClaimReject::BadLength {
            field: Field::Task,
            len: 0,
            max: 128,
        },
        ClaimReject::BadLength {
            field: Field::Name,
            len: 129,
            max: 128,
        },
        ClaimReject::BadLength {
            field: Field::Node,
            len: 64,
            max: 63,
        },
        ClaimReject::InvalidTtl { ttl_ms: 5 },
        ClaimReject::TableFull {
            kind: TableKind::Sessions,
            max: 64,
        },
        ClaimReject::TableFull {
            kind: TableKind::Claims,
            max: 256,
        },
        ClaimReject::TableFull {
            kind: TableKind::Names,
            max: 256,
        },
        ClaimReject::Exhausted,
    ]
}

fn quorum_msgs() -> Vec<QuorumMsg> {
    vec![
        QuorumMsg::Hello(hello()),
        QuorumMsg::Request {
            to: 77,
            // The accept, carrying a slot.
            req: requests().swap_remove(1),
        },
        QuorumMsg::Reply {
            to: 0x0abc,
            from: 77,
            // The promise with an accepted slot.
            rep: replies().swap_remove(1).1,
        },
        QuorumMsg::Forward {
            shard: ShardId(3),
            change: ShardChange::Claim {
                task: "task-1".to_owned(),
                sid: sid(),
            },
            request: RequestId {
                client: 0x1111,
                seq: 4,
            },
        },
        QuorumMsg::Forwarded {
            request: RequestId {
                client: 0x1111,
                seq: 4,
            },
            outcome: Some(Outcome::Applied {
                value: Some(table()),
                receipt: 5,
            }),
        },
        QuorumMsg::Names {
            shard: ShardId(3),
            stamp: 10,
            names: table().names,
        },
    ]
}

/// A datagram wrapping a SWIM packet and one piggybacked item, as the node sends it.
fn datagram() -> (Vec<u8>, Unwrapped) {
    let now = Instant::now();
    let mut d = Dissemination::new(
        DisseminationConfig::default(),
        &[(GROUPS, "groups"), (NAMES, "names")],
        1,
    )
    .expect("default config");
    d.set_peers(now, &["b".to_owned()]);
    let item = Bytes::from_static(b"item");
    d.push(now, NAMES, item.clone()).expect("small item");
    let wrapped = d.wrap_datagram(now, "b", b"swim").expect("fits");
    (wrapped.to_vec(), (b"swim".to_vec(), vec![(NAMES, item)]))
}

// ---------------------------------------------------------------------------------------
// Every case

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();

    // Transport frames.
    for class in Class::ALL {
        cases.push(case(
            format!("frame/{}", class_variant(&class)),
            (class, b"pin".to_vec()),
            |(class, payload)| encode_frame(*class, payload, DEFAULT_MAX_FRAME).map(Vec::from),
            |bytes| {
                let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
                dec.push(bytes);
                match dec.next_frame() {
                    Some(Ok((class, payload))) if dec.next_frame().is_none() => {
                        Ok((class, payload.to_vec()))
                    }
                    other => Err(format!("not exactly one frame: {other:?}")),
                }
            },
        ));
    }

    // SWIM.
    for header in swim_headers() {
        cases.push(case(
            format!("swim/header/{}", message_variant(&header.message)),
            header,
            |h| {
                let mut buf = Vec::new();
                SwimCodec.encode_header(h, &mut buf).map(|()| buf)
            },
            |bytes| SwimCodec.decode_header(bytes),
        ));
    }
    for member in swim_members() {
        cases.push(case(
            format!("swim/member/{}", swim_state_variant(&member.state())),
            member,
            |m| {
                let mut buf = Vec::new();
                SwimCodec.encode_member(m, &mut buf).map(|()| buf)
            },
            |bytes| SwimCodec.decode_member(bytes),
        ));
    }

    // Dissemination.
    let (wrapped, unwrapped) = datagram();
    cases.push(case(
        "dissemination/datagram",
        unwrapped,
        move |_| Ok::<_, String>(wrapped),
        |bytes| Dissemination::unwrap_datagram(bytes).map(|(swim, items)| (swim.to_vec(), items)),
    ));
    cases.push(case(
        "dissemination/batch",
        vec![
            (GROUPS, Bytes::from_static(b"groups")),
            (NAMES, Bytes::from_static(b"names")),
        ],
        |items| encode_batch(items).map(|b| b.to_vec()),
        decode_batch,
    ));

    // Node frames and the CRDT states inside them.
    cases.push(case(
        "crdt/groups_state",
        groups_state(),
        Orswot::encode,
        Orswot::decode,
    ));
    cases.push(case(
        "crdt/cloud_delta",
        cloud_delta(),
        Orswot::encode,
        Orswot::decode,
    ));
    cases.push(case(
        "crdt/digest",
        digest(),
        Digest::encode,
        Digest::decode,
    ));
    for frame in state_frames() {
        cases.push(wire_case(
            format!("node/state_frame/{}", state_frame_variant(&frame)),
            frame,
        ));
    }
    cases.push(wire_case(
        "node/ae_request",
        AeRequest {
            groups: digest(),
            names: names_delta(ConflictPolicy::Notify).digest(),
            tags: None,
        },
    ));
    cases.push(wire_case(
        "node/ae_response",
        AeResponse {
            groups: cloud_delta(),
            names: names_delta(ConflictPolicy::Kill),
            groups_digest: digest(),
            names_digest: Digest::default(),
            tags: Vec::new(),
            tags_digest: None,
        },
    ));
    // Tags (added after the first release: every field is optional on the wire, so
    // the cases above keep their bytes).
    cases.push(wire_case("node/tags_item", tags_item()));
    cases.push(wire_case(
        "node/ae_request/tags",
        AeRequest {
            groups: Digest::default(),
            names: Digest::default(),
            tags: Some(0x0123_4567_89ab_cdef),
        },
    ));
    cases.push(wire_case(
        "node/ae_response/tags",
        AeResponse {
            groups: Delta::default(),
            names: Delta::default(),
            groups_digest: Digest::default(),
            names_digest: Digest::default(),
            tags: vec![tags_item()],
            tags_digest: Some(7),
        },
    ));
    cases.push(wire_case(
        "node/state_frame/push_tags",
        StateFrame::Push {
            groups: Delta::default(),
            names: Delta::default(),
            tags: vec![tags_item()],
        },
    ));
    cases.push(wire_case("node/groups_item/full", groups_item()));
    cases.push(wire_case(
        "node/groups_item/minimal",
        GroupsItem {
            exited: Vec::new(),
            sent_at: None,
            ..groups_item()
        },
    ));
    for policy in [
        ConflictPolicy::Notify,
        ConflictPolicy::Kill,
        ConflictPolicy::UnregisterBoth,
    ] {
        cases.push(wire_case(
            format!("node/names_item/{}", conflict_policy_variant(&policy)),
            names_delta(policy),
        ));
    }
    for (name, frame) in user_frames() {
        cases.push(wire_case(format!("node/user_frame/{name}"), frame));
    }
    for why in undeliverables() {
        cases.push(wire_case(
            format!("node/undeliverable/{}", undeliverable_variant(&why)),
            why,
        ));
    }
    let control = ControlFrame::Quorum(Bytes::from_static(b"quorum"));
    cases.push(wire_case(
        format!("node/control_frame/{}", control_frame_variant(&control)),
        control,
    ));

    // The quorum plane (inside `ControlFrame::Quorum`).
    for msg in quorum_msgs() {
        cases.push(wire_case(
            format!("quorum/msg/{}", quorum_msg_variant(&msg)),
            msg,
        ));
    }
    for req in requests() {
        cases.push(wire_case(
            format!("quorum/request/{}", request_variant(&req)),
            req,
        ));
    }
    for (name, rep) in replies() {
        cases.push(wire_case(format!("quorum/reply/{name}"), rep));
    }
    for (name, outcome) in outcomes() {
        cases.push(wire_case(format!("quorum/outcome/{name}"), outcome));
    }
    for change in shard_changes() {
        cases.push(wire_case(
            format!("claims/change/{}", shard_change_variant(&change)),
            change,
        ));
    }
    for reject in claim_rejects() {
        let name = match &reject {
            ClaimReject::BadLength { field, .. } => {
                format!("bad_length_{}", field_variant(field))
            }
            ClaimReject::TableFull { kind, .. } => {
                format!("table_full_{}", table_kind_variant(kind))
            }
            other => claim_reject_variant(other).to_owned(),
        };
        cases.push(wire_case(format!("claims/reject/{name}"), reject));
    }

    // The acceptor store's persisted bytes.
    cases.push(case("store/key", ShardId(3), encode_key, |bytes| {
        rmp_serde::from_slice::<ShardId>(bytes)
    }));
    cases.push(case(
        "store/state/fresh",
        AcceptorState::<ShardSlot> {
            promised: ballot(),
            accepted: None,
            epoch: 1,
        },
        encode_state,
        |bytes| decode_state(b"k", bytes),
    ));
    cases.push(case(
        "store/state/accepted",
        AcceptorState::<ShardSlot> {
            promised: ballot().next(),
            accepted: Some((ballot(), slot())),
            epoch: 1,
        },
        encode_state,
        |bytes| decode_state(b"k", bytes),
    ));
    cases.push(case("store/root", root(), encode_state, decode_root));
    for r in changing_roots() {
        let name = match &r.pending {
            Some(p) => format!("store/root/{}", voter_change_variant(&p.change)),
            None => "store/root/quorums".to_owned(),
        };
        cases.push(case(name, r, encode_state, decode_root));
    }

    cases
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn every_message_kind_encodes_to_its_pinned_bytes_and_back() {
    if let Err(report) = check_all(&cases(), PINS) {
        panic!("{report}");
    }
}

/// Asserts that `samples` hold exactly the variants `all` names (by the exhaustive
/// `variant` match).
fn assert_covers<T>(what: &str, samples: &[T], variant: fn(&T) -> &'static str, all: &[&str]) {
    let seen: BTreeSet<&str> = samples.iter().map(variant).collect();
    let want: BTreeSet<&str> = all.iter().copied().collect();
    assert_eq!(
        want.len(),
        all.len(),
        "{what}: a variant is listed twice in its *_VARIANTS"
    );
    assert_eq!(
        seen, want,
        "{what}: the pinned samples must cover every variant (add a sample and pin it)"
    );
}

fn seconds<T>(named: Vec<(&'static str, T)>) -> Vec<T> {
    named.into_iter().map(|(_, x)| x).collect()
}

#[test]
fn every_variant_of_every_wire_enum_is_pinned() {
    assert_covers("Class", &Class::ALL, class_variant, CLASS_VARIANTS);
    let messages: Vec<_> = swim_headers().into_iter().map(|h| h.message).collect();
    assert_covers(
        "foca::Message",
        &messages,
        message_variant,
        MESSAGE_VARIANTS,
    );
    let states: Vec<_> = swim_members().iter().map(|m| m.state()).collect();
    assert_covers(
        "foca::State",
        &states,
        swim_state_variant,
        SWIM_STATE_VARIANTS,
    );
    assert_covers(
        "StateFrame",
        &state_frames(),
        state_frame_variant,
        STATE_FRAME_VARIANTS,
    );
    assert_covers(
        "UserFrame",
        &seconds(user_frames()),
        user_frame_variant,
        USER_FRAME_VARIANTS,
    );
    assert_covers(
        "Undeliverable",
        &undeliverables(),
        undeliverable_variant,
        UNDELIVERABLE_VARIANTS,
    );
    assert_covers(
        "ControlFrame",
        &[ControlFrame::Quorum(Bytes::new())],
        control_frame_variant,
        CONTROL_FRAME_VARIANTS,
    );
    assert_covers(
        "ConflictPolicy",
        &[
            ConflictPolicy::Notify,
            ConflictPolicy::Kill,
            ConflictPolicy::UnregisterBoth,
        ],
        conflict_policy_variant,
        CONFLICT_POLICY_VARIANTS,
    );
    assert_covers(
        "QuorumMsg",
        &quorum_msgs(),
        quorum_msg_variant,
        QUORUM_MSG_VARIANTS,
    );
    assert_covers("Request", &requests(), request_variant, REQUEST_VARIANTS);
    let pendings: Vec<_> = changing_roots()
        .into_iter()
        .filter_map(|r| r.pending)
        .collect();
    let changes: Vec<VoterChange> = pendings.iter().map(|p| p.change.clone()).collect();
    let steps: Vec<Step> = pendings.iter().map(|p| p.step).collect();
    assert_covers(
        "VoterChange",
        &changes,
        voter_change_variant,
        VOTER_CHANGE_VARIANTS,
    );
    assert_covers("Step", &steps, step_variant, STEP_VARIANTS);
    assert_covers("Reply", &seconds(replies()), reply_variant, REPLY_VARIANTS);
    assert_covers(
        "Outcome",
        &seconds(outcomes()),
        outcome_variant,
        OUTCOME_VARIANTS,
    );
    assert_covers(
        "ShardChange",
        &shard_changes(),
        shard_change_variant,
        SHARD_CHANGE_VARIANTS,
    );
    let rejects = claim_rejects();
    assert_covers(
        "ClaimReject",
        &rejects,
        claim_reject_variant,
        CLAIM_REJECT_VARIANTS,
    );
    let fields: Vec<Field> = rejects
        .iter()
        .filter_map(|r| match r {
            ClaimReject::BadLength { field, .. } => Some(*field),
            _ => None,
        })
        .collect();
    assert_covers("Field", &fields, field_variant, FIELD_VARIANTS);
    let kinds: Vec<TableKind> = rejects
        .iter()
        .filter_map(|r| match r {
            ClaimReject::TableFull { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect();
    assert_covers("TableKind", &kinds, table_kind_variant, TABLE_KIND_VARIANTS);
}

#[test]
fn the_groups_sample_has_every_origin_shape_the_wire_knows() {
    let state = groups_state();
    let (a, b, c) = ("a".to_owned(), "b".to_owned(), "c".to_owned());
    // `a`: live, an element with two dots and elements with one, a removed dot.
    assert!(!state.is_retired(&a));
    let counts: Vec<usize> = state.elements_of(&a).map(|(_, n)| n).collect();
    assert_eq!(counts, [2, 1], "one element of two dots, one of one");
    assert_eq!(state.context_of(&a).map(|ctx| ctx.contiguous()), Some(4));
    assert_eq!(state.live_dots(), 3, "dot 3 was removed");
    // `b`: retired (purged).
    assert!(state.is_retired(&b));
    // `c`: a dot cloud above an empty prefix, no elements.
    let ctx = state.context_of(&c).expect("c is known");
    assert_eq!((ctx.contiguous(), ctx.cloud_len()), (0, 1));
    assert_eq!(state.elements_of(&c).count(), 0);
}

// ---------------------------------------------------------------------------------------
// Negative controls: the checker detects a change.

fn pinned(name: &str) -> Vec<u8> {
    let Some((_, pin)) = PINS.iter().find(|(n, _)| *n == name) else {
        panic!("no pin {name}");
    };
    unhex(pin).expect("pins are hex")
}

#[test]
fn negative_control_a_flipped_byte_in_any_pin_is_caught() {
    for case in cases() {
        let good = pinned(&case.name);
        assert_eq!(check(&case, &good), Ok(()), "{}", case.name);
        for at in [0, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            assert!(
                check(&case, &bad).is_err(),
                "{}: flipping byte {at} went unnoticed",
                case.name
            );
        }
    }
}

#[test]
fn negative_control_the_decode_comparison_alone_catches_a_changed_value() {
    // The last byte of a PID's encoding is its local id (a positive fixint): flipping it
    // still decodes, to another PID, which the value comparison must refuse.
    let case = wire_case("pid", pid());
    let mut bytes = case.encoded.clone();
    *bytes.last_mut().expect("not empty") ^= 0x01;
    let err = (case.decodes_to_value)(&bytes).expect_err("another PID");
    assert!(err.contains("decodes to"), "{err}");
    // And undecodable bytes are refused too.
    let err = (case.decodes_to_value)(&bytes[..bytes.len() - 1]).expect_err("truncated");
    assert!(err.contains("does not decode"), "{err}");
}

#[test]
fn negative_control_a_changed_encoding_is_reported_with_its_new_pin_line() {
    // As if the encoder changed: the ping's probe number moved from 7 to 8.
    let mut moved = swim_headers().swap_remove(0);
    moved.message = Message::Ping(8);
    let case = case(
        "swim/header/ping",
        moved,
        |h| {
            let mut buf = Vec::new();
            SwimCodec.encode_header(h, &mut buf).map(|()| buf)
        },
        |bytes| SwimCodec.decode_header(bytes),
    );
    let new_hex = hex(&case.encoded);
    let report = check_all(&[case], PINS).expect_err("the pin must not match");
    assert!(
        report.contains(&format!("(\"swim/header/ping\", \"{new_hex}\"),")),
        "the report must carry the line to paste:\n{report}"
    );
    assert!(report.contains("wire-format change"), "{report}");
    // Every other pin is reported as orphaned: this run built only one case.
    assert!(report.contains("- frame/control: pinned, but no case builds it"));
    // A case without a pin is refused as well.
    let unpinned = wire_case("new/kind", 1u8);
    let report = check_all(&[unpinned], &[]).expect_err("no pin");
    assert!(report.contains("- new/kind: has no pin"), "{report}");
}

#[test]
#[should_panic(expected = "must cover every variant")]
fn negative_control_a_variant_without_a_sample_is_caught() {
    // `Renew` onwards only: `OpenSession` has no sample.
    assert_covers(
        "ShardChange",
        &shard_changes()[1..],
        shard_change_variant,
        SHARD_CHANGE_VARIANTS,
    );
}
