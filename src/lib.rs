//! embcheck: verify that the embeddings a Rust service computes are the ones the Python libraries compute.
//!
//! Data flows one way: a [`source`] of vectors — embcheck's own [`pipeline`] on a [`model`] (files, config,
//! tokenizer, encoder; hidden states → vectors, one faithful copy per Python library), or a system under test
//! (your function, an HTTP server, a command, a file) — → [`compare`] (metrics, tolerances, diagnosis proven
//! with the suite's model) → [`report`]. [`fixture`] holds the suite and reference file formats; [`suite`]
//! ties them together; [`gate`] judges a candidate against a suite's baseline, asking parity (the same model
//! served another way: its vectors must agree) or upgrade (another model: retrieval quality must not drop).
//!
//! Check your own embedding function in your `cargo test`:
//!
//! ```no_run
//! use embcheck::{PipelineKind, Suite};
//!
//! let mut my_embed = |texts: &[String]| -> Vec<Vec<f32>> {
//!     texts.iter().map(|_| vec![0.0; 32]).collect() // your model here
//! };
//! let report = Suite::load("fixtures/suites/tiny-bert-mean")?
//!     .check_embedder(PipelineKind::SentenceTransformers, &mut my_embed)?;
//! println!("{}", report.failure_message()); // mismatches, each with its diagnosis
//! # Ok::<(), embcheck::Error>(())
//! ```
//!
//! Reading a report: a [`SuiteReport`] has a [`Status`], one [`PipelineResult`] per pipeline and one
//! [`RowResult`] per text, and each failing row a [`Diagnosis`] whose [`Stage`] says where the difference
//! comes from, proven by recomputation:
//!
//! ```
//! use embcheck::{PipelineKind, Stage, Status, Suite};
//!
//! let suite = Suite::load("fixtures/suites/tiny-bert-cls")?;
//! // A "port" that gives every text the same vector: nothing explains it.
//! let mut constant = |texts: &[String]| texts.iter().map(|_| vec![0.5f32; 32]).collect::<Vec<_>>();
//! let report = suite.check_embedder(PipelineKind::NormalizedCls, &mut constant)?;
//! assert_eq!(report.status(), Status::Failed);
//! for row in report.failing_rows() {
//!     let diagnosis = row.diagnosis.as_ref().expect("every failing row is diagnosed");
//!     assert_eq!(diagnosis.stage, Stage::Unknown); // `keyword: evidence` via Display
//!     println!("{}", row.failure_line());
//! }
//! # Ok::<(), embcheck::Error>(())
//! ```
//!

pub mod atomic;
pub mod bisect;
pub mod compare;
pub mod diff;
pub mod embed;
pub mod error;
pub mod fixture;
pub mod gate;
pub mod inspect;
pub mod model;
pub mod partition;
pub mod pipeline;
pub mod report;
pub mod selftest;
pub mod source;
pub mod suite;

pub use embed::{embed_many, BatchOptions, Embeddings};
pub use error::{Error, Result};
pub use model::Model;
pub use pipeline::{Pipeline, PipelineKind, PipelineOptions, Vector};
pub use source::{Embedder, Output, SourceConfig, SourceInfo, SourceSpec};
pub use compare::{Diagnosis, PipelineResult, RowResult, Stage, TokenMatch};
pub use suite::{DiagnosisBudget, RunOptions, Status, Suite, SuiteReport, TextSettings};
