//! mesh-core: the mesh node.
//!
//! - [`identity`]: who a node is (`{name, addr, incarnation}`).
//! - [`codec`]: the SWIM wire codec.
//! - [`membership`]: SWIM membership as a sans-IO state machine around foca.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod codec;
pub mod identity;
pub mod membership;
