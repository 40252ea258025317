//! The `sweep` worker: the MLP training engine (data, network, optimizers, training loop)
//! and, in later layers, the agent that takes trials from a coordinator.
//!
//! `nn` and `optim` know nothing of data files or networks; `train` ties them to `data`.

pub mod agent;
pub mod cli;
pub mod data;
pub mod gpus;
pub mod metrics;
pub mod model;
pub mod nn;
pub mod optim;
pub mod plot;
pub mod program;
pub mod synthetic;
pub mod train;
