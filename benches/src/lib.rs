//! Benchmarks for mesh that run real agents side by side with a baseline on loopback
//! and print figures and ratios (never assert them).
//!
//! The `membership-bench` binary compares mesh's SWIM membership with HashiCorp serf
//! (memberlist): convergence of a fresh cluster, failure detection after `SIGKILL`,
//! idle bytes per second per peer and RSS per peer. This library holds its parts:
//!
//! - [`cleanup`]: every child process, scratch directory and nft table is undone on
//!   drop and on Ctrl-C;
//! - [`cluster`]: prepares and drives a local cluster of one system and reads each
//!   agent's own membership view ([`serf_rpc`] talks to serf);
//! - [`scenario`]: the measurements; [`report`]: the tables and goals;
//! - [`nft`]: byte counters on the agents' ports; [`ports`], [`stats`]: helpers.
//!
//! The `registry-bench` binary (`src/registry_bench.rs`) needs none of this: it times
//! local join+leave in `mesh_core::registry` in-process as the number of groups grows.
//!
//! The `groups-bench` binary compares mesh's process groups and group sends with
//! Erlang/OTP `pg`: join visibility across a cluster and group-send throughput
//! ([`groups`]; the Erlang side is driven by [`erlang`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod claims;
pub mod cleanup;
pub mod cluster;
pub mod erlang;
pub mod etcd;
pub mod groups;
pub mod machine;
pub mod nft;
pub mod ports;
pub mod report;
pub mod scenario;
pub mod serf_rpc;
pub mod stats;
pub mod worker;
