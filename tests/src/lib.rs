//! Test support for mesh: the deterministic simulator ([`sim`]) and helpers for
//! integration tests with real agents on loopback.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cluster;
pub mod sim;
