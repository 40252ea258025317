//! The sweep coordinator: holds every sweep, leases trials to workers, ranks their results.
//!
//! `config` parses W&B sweep configs; `search` turns a sweep into trial parameters; `store`
//! keeps state durable in SQLite; `engine` is the state machine of sweeps, trials and leases;
//! `service` exposes it over gRPC; `export` writes leaderboards and confusion matrices; `cli`
//! is the command line.

pub mod cli;
pub mod clock;
pub mod config;
pub mod curve;
pub mod dashboard;
pub mod engine;
pub mod export;
pub mod http;
pub mod metrics;
pub mod net;
pub mod pareto;
pub mod report;
pub mod search;
pub mod server;
pub mod service;
pub mod stopping;
pub mod store;
