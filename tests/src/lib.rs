//! placeholder
pub mod cluster;
