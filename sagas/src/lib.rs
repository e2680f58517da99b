//! Shared vocabulary of the saga coordinator. This crate depends on no other crate of ours, so
//! the coordinator, the participant SDK and client tools all speak exactly the same types.
//!
//! - [`raw_json`]: JSON kept as the exact text it arrived as (saga inputs);
//! - [`limits`]: the rules names, URLs, paths and numbers must follow to be accepted;
//! - [`workflow`]: workflow definitions (`WorkflowSpec`, `StepSpec`, `RetryPolicy`) and their
//!   structural validation (duplicate names, unknown `after` targets, cycles);
//! - [`builder`]: a typed Rust builder that produces the same definitions as the JSON/YAML files;
//! - [`participant`]: participant registration (`ParticipantSpec`, endpoints, policy);
//! - [`wire`]: the branch call protocol (coordinator -> participant): phases, body, headers;
//! - [`api`]: request and response bodies of the coordinator's HTTP API v1;
//! - [`client`]: an async HTTP client for the coordinator API;
//! - [`signing`]: `Saga-Signature`, the HMAC the coordinator signs its outbound calls with.

pub mod api;
pub mod builder;
pub mod client;
pub mod limits;
pub mod participant;
pub mod raw_json;
pub mod signing;
pub mod wire;
pub mod workflow;

pub use builder::WorkflowBuilder;
pub use client::{ClientError, CoordinatorClient};
pub use limits::FieldError;
pub use participant::{ActionEndpoints, ParticipantPolicy, ParticipantSpec};
pub use raw_json::RawJson;
pub use signing::{SignatureError, SigningKey, SigningKeys};
pub use wire::{BranchRequest, Phase, StepKind};
pub use workflow::{RetryPolicy, StepSpec, WorkflowError, WorkflowSpec};
