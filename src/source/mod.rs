//! Where the vectors under test come from. embcheck's own pipeline on a model is one source; a system
//! under test is another: a user's function ([`Embedder`], for `cargo test`), an HTTP embedding server
//! ([`http`]), a program speaking JSON Lines ([`command`]) or a file of vectors ([`file`]). Comparison,
//! diagnosis and reports do not care which: every source yields one [`Output`] per text, in suite order.

pub mod command;
pub mod embedder;
pub mod file;
pub mod http;
pub mod parts;
pub mod secret;
mod sparse;
pub mod write;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use embedder::{Embedder, IntoOutputs};
pub use sparse::sparse_from_pairs;

use crate::error::{Error, Result};
use crate::fixture::TextItem;
use crate::pipeline::{PipelineKind, Vector};

/// What a source returned for one text.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The value, or the system's own message when it rejected this text (HTTP 413/422/500, a malformed
    /// line, a closure's error): that text fails with the message, the others are still checked.
    pub value: std::result::Result<Vector, String>,
    /// The token ids the system fed its model, when it says (TEI's `/tokenize`, a command's
    /// `"token_ids"`). Token-level claims are made only when these are present.
    pub token_ids: Option<Vec<u32>>,
}

impl Output {
    /// A value without token ids.
    pub fn value(v: Vector) -> Self {
        Output { value: Ok(v), token_ids: None }
    }

    /// A text the system rejected, with its message.
    pub fn rejected(message: impl Into<String>) -> Self {
        Output { value: Err(message.into()), token_ids: None }
    }
}

/// A source's outputs split into what comparison takes: a value per text (an empty placeholder for a
/// rejected one), the rejection messages, and the token ids (`None` when no text has them; an empty list for
/// a text without them, which comparison reads as "unknown").
#[derive(Debug, Clone)]
pub struct Split {
    /// One value per text.
    pub vectors: Vec<Vector>,
    /// Per text, the system's message when it rejected the text.
    pub rejected: Vec<Option<String>>,
    /// Per text, the token ids, when any text has them.
    pub tokens: Option<Vec<Vec<u32>>>,
}

impl Split {
    /// Splits `outputs`.
    pub fn of(outputs: &[Output]) -> Self {
        Split {
            vectors: outputs.iter().map(|o| o.value.clone().unwrap_or(Vector::Dense(Vec::new()))).collect(),
            rejected: outputs.iter().map(|o| o.value.as_ref().err().cloned()).collect(),
            tokens: outputs
                .iter()
                .any(|o| o.token_ids.is_some())
                .then(|| outputs.iter().map(|o| o.token_ids.clone().unwrap_or_default()).collect()),
        }
    }
}

/// Where the vectors of a report came from, for the reports.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct SourceInfo {
    /// `pipeline` (embcheck's own), `embedder` (a function), `http`, `command` or `file`.
    pub kind: String,
    /// The source as the user gave it (URL, command line, path; never a header value).
    pub location: String,
    /// What the system said about itself (model id, revision, API), when it says.
    pub details: BTreeMap<String, String>,
}

impl SourceInfo {
    /// embcheck's own pipeline on the suite's model.
    pub fn own_pipeline(model: &str) -> Self {
        SourceInfo { kind: "pipeline".into(), location: model.into(), details: BTreeMap::new() }
    }

    /// Whether the vectors came from a system under test rather than embcheck's own pipeline.
    pub fn is_external(&self) -> bool {
        self.kind != "pipeline"
    }
}

/// A system under test as named on the command line: `http(s)://…`, `cmd:COMMAND`, or a file path.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// An embedding server.
    Http(String),
    /// A program started once with `sh -c`.
    Command(String),
    /// A file of vectors (`.safetensors`, `.npy`, `.jsonl`).
    File(PathBuf),
}

impl SourceSpec {
    /// Parses `--against`'s value.
    pub fn parse(s: &str) -> Result<Self> {
        if s.starts_with("http://") || s.starts_with("https://") {
            Ok(SourceSpec::Http(s.to_string()))
        } else if let Some(cmd) = s.strip_prefix("cmd:") {
            if cmd.trim().is_empty() {
                return Err(Error::Usage("--against cmd: needs a command line after 'cmd:'".into()));
            }
            Ok(SourceSpec::Command(cmd.to_string()))
        } else if s.is_empty() {
            Err(Error::Usage("--against needs a URL (http://…), cmd:COMMAND or a file".into()))
        } else {
            Ok(SourceSpec::File(PathBuf::from(s)))
        }
    }
}

/// When a whole check must be over (`--deadline`): requests, waits and programs are cut off there.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    /// The whole allowance, for messages.
    pub total: Duration,
}

impl Deadline {
    /// `total` from now (a `total` too far in the future for the clock means no deadline in practice: the
    /// furthest instant the clock holds).
    pub fn after(total: Duration) -> Self {
        let now = Instant::now();
        let at = now.checked_add(total).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
        Deadline { at, total }
    }

    /// Time left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Why a request was not sent.
    pub fn passed_message(&self) -> String {
        format!("not sent: the check's deadline ({} s) had passed", self.total.as_secs_f64())
    }
}

/// Everything needed to collect vectors from a system under test, parsed once.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Which system.
    pub spec: SourceSpec,
    /// HTTP client settings (ignored by other sources).
    pub http: http::HttpOptions,
    /// Texts per HTTP request (a command gets every text on its standard input and batches as it likes).
    pub batch_size: usize,
}

/// Collects one output per text from a system under test, in the order of `texts`.
///
/// A system that cannot be reached or started is an error (exit 2); a text it rejects is an [`Output`]
/// with the message.
pub fn collect(config: &SourceConfig, pipeline: PipelineKind, texts: &[TextItem]) -> Result<(Vec<Output>, SourceInfo)> {
    match &config.spec {
        SourceSpec::File(path) => {
            let outputs = file::read_for_texts(path, pipeline, texts)?;
            Ok((outputs, SourceInfo { kind: "file".into(), location: path.display().to_string(), details: BTreeMap::new() }))
        }
        SourceSpec::Command(cmd) => {
            let run = command::run(cmd, pipeline, texts, config.http.timeout, config.http.deadline)?;
            let details = command::details(&run);
            Ok((run.outputs, SourceInfo { kind: "command".into(), location: cmd.clone(), details }))
        }
        SourceSpec::Http(url) => {
            // Every message from a server is redacted by the client; this pass covers what it adds on top.
            let mut secrets = secret::Secrets::default();
            for (_, v) in &config.http.headers {
                secrets.add(v);
            }
            secret::url_secrets(url, &mut secrets);
            let redact_err = |e: Error| match e {
                Error::Usage(m) => Error::Usage(secrets.redact(&m)),
                other => Error::Usage(secrets.redact(&other.to_string())),
            };
            let mut client = http::Client::connect(url, pipeline, &config.http).map_err(redact_err)?;
            let strings: Vec<String> = texts.iter().map(|t| t.text.clone()).collect();
            let mut outputs = client.embed_all(&strings, config.batch_size).map_err(redact_err)?;
            for o in &mut outputs {
                if let Err(m) = &mut o.value {
                    *m = client.secrets().redact(m);
                }
            }
            Ok((outputs, client.info()))
        }
    }
}

/// Checks that a value is of the kind `pipeline` produces; the message names the text.
pub fn check_kind(pipeline: PipelineKind, v: &Vector) -> std::result::Result<(), String> {
    if pipeline.output() == v.kind() {
        Ok(())
    } else {
        let got = match v {
            Vector::Dense(_) => "a dense vector",
            Vector::Sparse(_) => "sparse weights",
            Vector::Multi(_) => "one vector per token",
        };
        Err(format!("the system returned {got}; pipeline {pipeline} expects {}", expected_kind(pipeline)))
    }
}

fn expected_kind(pipeline: PipelineKind) -> &'static str {
    match pipeline.output() {
        crate::pipeline::OutputKind::Dense => "one dense vector per text",
        crate::pipeline::OutputKind::Sparse => "sparse weights per text",
        crate::pipeline::OutputKind::Multi => "one vector per token",
    }
}

/// A JSON list of numbers as f32 (a server's or a program's `"embedding"`); the message names `what`.
pub(crate) fn json_floats(x: &serde_json::Value, what: &str) -> std::result::Result<Vec<f32>, String> {
    x.as_array()
        .ok_or(format!("\"{what}\" is not a list of numbers"))?
        .iter()
        .map(|n| n.as_f64().map(|f| f as f32).ok_or(format!("\"{what}\" holds a value that is not a number")))
        .collect()
}
