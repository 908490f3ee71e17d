//! embcheck: verify that the embeddings a Rust service computes are the ones the Python libraries compute.
//!
//! Data flows one way: [`model`] (files, config, tokenizer, encoder) → [`pipeline`] (hidden states → vectors,
//! one faithful copy per Python library) → [`compare`] (metrics, tolerances, diagnosis) → [`report`].
//! [`fixture`] holds the suite and reference file formats.
//!

pub mod atomic;
pub mod compare;
pub mod embed;
pub mod error;
pub mod fixture;
pub mod model;
pub mod pipeline;
pub mod report;
pub mod suite;

pub use embed::{embed_many, BatchOptions, Embeddings};
pub use error::{Error, Result};
pub use model::Model;
pub use pipeline::{Pipeline, PipelineKind, PipelineOptions, Vector};
pub use suite::{RunOptions, Status, Suite, SuiteReport};
