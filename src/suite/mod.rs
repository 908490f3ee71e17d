//! Checking a suite: vectors from a source (embcheck's own pipeline on the suite's model, or a system under
//! test) compared with the Python references, failures diagnosed with the suite's model.
//!
//! embcheck's own pipelines:
//!
//! ```no_run
//! embcheck::Suite::load("fixtures/suites/tiny-bert-mean")?.run()?.assert_passed();
//! # Ok::<(), embcheck::Error>(())
//! ```
//!
//! Your own embedding function, in your `cargo test` (any closure from a batch of texts to one vector per
//! text; see [`crate::source::embedder`] for sparse and per-token outputs):
//!
//! ```no_run
//! use embcheck::{PipelineKind, Suite};
//!
//! let mut my_embed = |texts: &[String]| -> Vec<Vec<f32>> {
//!     texts.iter().map(|t| vec![t.len() as f32; 32]).collect() // your model here
//! };
//! Suite::load("fixtures/suites/tiny-bert-mean")?
//!     .check_embedder(PipelineKind::SentenceTransformers, &mut my_embed)?
//!     .assert_passed();
//! # Ok::<(), embcheck::Error>(())
//! ```

mod alternatives;
mod report;
mod settings;

use std::collections::BTreeMap;
use std::path::Path;

pub use alternatives::{ModelAlternatives, DIAGNOSIS_BUDGET};
pub use report::{worst_row, Status, SuiteReport};
pub use settings::TextSettings;

use crate::compare::noise::RecordedNoise;
use crate::compare::{compare_pipeline, Alternatives, NoAlternatives, Side, Subject, Tolerance};
use crate::embed::{embed_many, BatchOptions};
use crate::error::{Error, Result};
use crate::fixture::{read_texts, Names, StoredVectors, SuiteSpec, TensorFile, TextItem};
use crate::model::{dtype_name, Model, ModelFiles};
use crate::pipeline::{Pipeline, PipelineKind};
use crate::source::{self, Embedder, Output, SourceConfig, SourceInfo};

/// A suite on disk.
#[derive(Debug, Clone)]
pub struct Suite {
    /// Its settings.
    pub spec: SuiteSpec,
    /// How long diagnoses may recompute.
    pub diagnosis_budget: DiagnosisBudget,
}

/// How long diagnosing the failures of a pipeline may recompute with the model. Past it, the rest is
/// `unknown` ("budget spent"): a noisy system costs a bounded multiple of the check itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DiagnosisBudget {
    /// This multiple of the time the check took until comparison (loading the suite and the model,
    /// computing or collecting the vectors), and at least [`MIN_FRACTION_BUDGET`].
    Fraction(f64),
    /// A fixed time per pipeline.
    Time(std::time::Duration),
    /// No limit (the selftest, whose every row must be diagnosed).
    Unlimited,
}

/// The default diagnosis budget: 0.8 of the check's own compute, so that diagnosing (and the one
/// recomputation running when the budget runs out) at most doubles a long check's time.
pub const DEFAULT_DIAGNOSIS_BUDGET: DiagnosisBudget = DiagnosisBudget::Fraction(0.8);

/// The least a [`DiagnosisBudget::Fraction`] allows. A check against a file computes almost nothing itself
/// (a few ms), and even embcheck's own check of a small suite takes ~20 ms, while diagnosing one failing text
/// costs a few single-text passes: 0.8 of that left 8 texts cut at another length `unknown` on the bundled
/// tiny-bert-cls suite, whose whole diagnosis takes ~0.1 s. One second diagnoses such ordinary failures and
/// still bounds a noisy system (75 s unbounded on the long-input suite).
pub const MIN_FRACTION_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

impl DiagnosisBudget {
    /// When diagnosing must stop, and the budget, from now: `compute` is how long the check took until
    /// comparison. Shared by every pipeline of the check.
    fn until(self, compute: std::time::Duration) -> Option<(std::time::Instant, std::time::Duration)> {
        let budget = match self {
            DiagnosisBudget::Fraction(f) => compute.mul_f64(f).max(MIN_FRACTION_BUDGET),
            DiagnosisBudget::Time(t) => t,
            DiagnosisBudget::Unlimited => return None,
        };
        let now = std::time::Instant::now();
        Some((now.checked_add(budget).unwrap_or(now + std::time::Duration::from_secs(100 * 365 * 86_400)), budget))
    }

    fn apply(until: Option<(std::time::Instant, std::time::Duration)>, alt: ModelAlternatives<'_>) -> ModelAlternatives<'_> {
        match until {
            Some((at, budget)) => alt.with_budget(at, budget),
            None => alt,
        }
    }
}

/// How to run a suite.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Only these pipelines (all of the suite's when empty).
    pub pipelines: Vec<PipelineKind>,
    /// A missing model makes the suite skipped instead of an error.
    pub skip_missing: bool,
    /// Show a progress bar.
    pub progress: bool,
}

/// A suite's texts and reference, read and checked against each other before anything is computed (by
/// `check` and `gate` alike).
pub(crate) struct Loaded {
    pub(crate) texts: Vec<TextItem>,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) reference: TensorFile,
}

impl Loaded {
    /// The stored values of pipeline `k`, one per text.
    pub(crate) fn expected(&self, spec: &SuiteSpec, k: PipelineKind) -> Result<StoredVectors> {
        let stored = self.reference.vectors(k.output(), &Names::reference(k))?;
        if stored.vectors.len() != self.texts.len() {
            return Err(Error::input(
                spec.reference_path(),
                format!("tensor {:?} holds {} texts, texts.jsonl has {}", k.name(), stored.vectors.len(), self.texts.len()),
            ));
        }
        Ok(stored)
    }

    fn strings(&self) -> Vec<String> {
        self.texts.iter().map(|t| t.text.clone()).collect()
    }

    fn ids(&self) -> Vec<String> {
        self.texts.iter().map(|t| t.id.clone()).collect()
    }

    fn reference_max_length(&self) -> Option<usize> {
        self.metadata.get("max_length").and_then(|m| m.parse().ok())
    }
}

impl Suite {
    /// Reads `dir/suite.toml`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        Ok(Suite { spec: SuiteSpec::load(dir.as_ref())?, diagnosis_budget: DEFAULT_DIAGNOSIS_BUDGET })
    }

    /// The suite's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The suite's model: a local directory (resolved against the suite directory) or a hub id.
    pub fn model_location(&self) -> &str {
        &self.spec.model_location
    }

    /// The max length `suite.toml` sets, if it does (else the model's own default applies: see
    /// [`Suite::settings`] for the value in force).
    pub fn max_length(&self) -> Option<usize> {
        self.spec.options.max_length
    }

    /// How many texts the harness hands an [`Embedder`] at a time.
    pub fn batch_size(&self) -> usize {
        self.spec.batch_size
    }

    /// How the reference of pipeline `kind` prepared and cut each text — max length, prompt or instruction,
    /// stripping, lowercasing — as the suite's settings and model files resolve them for the Python stack the
    /// reference records. A system under test must do the same to match. Loads the suite's model (its
    /// configuration and tokenizer decide some of these).
    pub fn settings(&self, kind: PipelineKind) -> Result<TextSettings> {
        self.require(kind)?;
        let data = self.load_data()?;
        let model = self.load_model(ModelFiles::resolve(&self.spec.model_location)?, &data.metadata)?;
        Ok(TextSettings::of(&Pipeline::build(kind, &model, &self.spec.options)?))
    }

    /// The texts and the reference, checked against each other (the texts' sha256, the metadata).
    pub(crate) fn load_data(&self) -> Result<Loaded> {
        let texts = read_texts(&self.spec.texts_path())?;
        let reference = TensorFile::read(&self.spec.reference_path())?;
        let metadata = reference.metadata();
        crate::fixture::provenance::validate(&metadata).map_err(|m| Error::input(self.spec.reference_path(), m))?;
        // A texts.jsonl edited since the reference was made is an input error, not a failure.
        crate::fixture::provenance::check_texts(&metadata, &self.spec.texts_path())?;
        let loaded = Loaded { texts, metadata, reference };
        // Malformed metadata is an input error now, not a check silently left out later.
        self.recorded_noise_floor(&loaded, PipelineKind::M3Sparse)?;
        self.recorded_f64_noise(&loaded, PipelineKind::NormalizedCls)?;
        Ok(loaded)
    }

    fn empty_report(&self, data: &Loaded, source: SourceInfo) -> SuiteReport {
        let spec = &self.spec;
        SuiteReport {
            suite: spec.name.clone(),
            dir: spec.dir.clone(),
            model: spec.model.clone(),
            dtype: dtype_name(spec.dtype).to_string(),
            source,
            max_length: BTreeMap::new(),
            reference_metadata: data.metadata.clone(),
            pipelines: Vec::new(),
            skipped: None,
            changed_files: Vec::new(),
            error: None,
            notes: Vec::new(),
        }
    }

    /// Loads the suite's model as the Python stack the reference was made with loads it (its recorded
    /// library versions).
    fn load_model(&self, files: ModelFiles, metadata: &BTreeMap<String, String>) -> Result<Model> {
        let stack = crate::model::Stack::from_reference(metadata).map_err(|e| Error::input(self.spec.reference_path(), e.to_string()))?;
        Model::from_files_for(files, self.spec.dtype, stack)
    }

    /// Runs every pipeline of the suite with embcheck's own pipelines; a missing model is an error.
    pub fn run(&self) -> Result<SuiteReport> {
        self.run_with(&RunOptions::default())
    }

    /// Runs the suite's pipelines with embcheck's own pipelines, with options.
    pub fn run_with(&self, opts: &RunOptions) -> Result<SuiteReport> {
        let started = std::time::Instant::now();
        let spec = &self.spec;
        let data = self.load_data()?;
        let kinds: Vec<PipelineKind> =
            spec.pipelines.iter().copied().filter(|p| opts.pipelines.is_empty() || opts.pipelines.contains(p)).collect();
        let mut report = self.empty_report(&data, SourceInfo::own_pipeline(&spec.model));
        if let Some(p) = crate::fixture::review::pending(&spec.dir) {
            report.notes.push(format!("{} is pending review (embcheck accept / reject); this check compares with the current reference", p.display()));
        }
        if kinds.is_empty() {
            let asked: Vec<_> = opts.pipelines.iter().map(|p| p.name()).collect();
            report.skipped = Some(format!("none of the requested pipelines ({}) is in this suite", asked.join(", ")));
            return Ok(report);
        }
        // Read every expected value before the (slow) model: a bad reference fails fast.
        let expected = kinds.iter().map(|&k| data.expected(spec, k)).collect::<Result<Vec<_>>>()?;
        let files = match ModelFiles::resolve(&spec.model_location) {
            Ok(f) => f,
            Err(e @ Error::Model { .. }) if opts.skip_missing => {
                report.skipped = Some(format!("model missing: {e}"));
                return Ok(report);
            }
            Err(e) => return Err(e),
        };
        report.changed_files = crate::fixture::provenance::model_file_changes(&report.reference_metadata, &files.dir)?;
        let hashed_files = crate::fixture::provenance::recorded_model_files(&report.reference_metadata, &files.dir);
        let model = match self.load_model(files, &data.metadata) {
            Ok(model) => model,
            // Nothing to compute the pipelines with: a skip (never a pass); systems are still checked with --against.
            Err(Error::Unimplemented { model_type, .. }) => {
                report.skipped = Some(format!(
                    "model type {model_type} is not implemented, so embcheck cannot compute this suite itself; check a system against it with --against (model-free diagnoses only)"
                ));
                return Ok(report);
            }
            Err(e) => return Err(e),
        };
        let options = &spec.options;
        let pipelines = kinds.iter().map(|&k| Pipeline::build(k, &model, options)).collect::<Result<Vec<_>>>()?;
        let strings = data.strings();
        let batch = BatchOptions { batch_size: spec.batch_size, progress: opts.progress };
        let actual = embed_many(&model, &pipelines, &strings, batch)?;
        let until = self.diagnosis_budget.until(started.elapsed());
        let ids = data.ids();
        for ((pipeline, got), want) in pipelines.iter().zip(actual).zip(expected) {
            report.max_length.insert(pipeline.kind.name().to_string(), pipeline.max_length);
            let alt = ModelAlternatives::new(&model, pipeline, &strings, Subject::Reference, data.reference_max_length(), options.instruction.as_deref())
                .with_recorded_noise(self.recorded_f64_noise(&data, pipeline.kind)?);
            let mut alt = DiagnosisBudget::apply(until, alt);
            let tol = self.tolerance(&data, pipeline, &model)?;
            report.pipelines.push(compare_pipeline(
                pipeline.kind,
                &ids,
                Side::new(&got.vectors, Some(&got.input_ids)),
                Side::new(&want.vectors, want.input_ids.as_deref()),
                tol,
                &mut alt,
            )?);
        }
        if !report.passed() {
            report.notes.push(if !report.changed_files.is_empty() {
                "model changed: model files differ from those the reference was made from (see the WARN lines), so the comparison is not like for like".to_string()
            } else if hashed_files > 0 {
                format!("code changed: the {hashed_files} model files the reference records are byte for byte the same (sha256), so the difference comes from how they are computed (embcheck, candle, tokenizers, or the suite's settings)")
            } else {
                "the reference records no sha256 of the model files: whether the model or the code changed cannot be told".to_string()
            });
        }
        Ok(report)
    }

    /// The suite's tolerance for a pipeline, with the noise floor of the model's terms: the one the reference
    /// records (so that the verdict does not depend on the model being at hand), else the model's.
    fn tolerance(&self, data: &Loaded, pipeline: &Pipeline, model: &Model) -> Result<Tolerance> {
        let mut tol = self.spec.tolerance_for(pipeline.kind);
        tol.noise_floor = match self.recorded_noise_floor(data, pipeline.kind)? {
            Some(floor) => floor,
            None => pipeline.noise_floor(model)?,
        };
        Ok(tol)
    }

    /// The noise floor the reference metadata records for `kind` (`noise_floor`: a JSON object of pipeline
    /// name → a finite number ≥ 0); malformed is an input error.
    fn recorded_noise_floor(&self, data: &Loaded, kind: PipelineKind) -> Result<Option<f64>> {
        let Some(raw) = data.metadata.get("noise_floor") else { return Ok(None) };
        let bad = |why: &str| Error::input(self.spec.reference_path(), format!("metadata \"noise_floor\" {why}: {}", raw.chars().take(80).collect::<String>()));
        let map: BTreeMap<String, f64> = serde_json::from_str(raw).map_err(|_| bad("is not a JSON object of pipeline name -> number"))?;
        if map.values().any(|f| !(f.is_finite() && *f >= 0.0)) {
            return Err(bad("holds a value that is not a finite number >= 0"));
        }
        Ok(map.get(kind.name()).copied())
    }

    /// The Python reference's own f32-vs-f64 distances the generator recorded for `kind` (metadata
    /// `f64_noise`: a JSON object of pipeline name → `{"sample": [{"id", "tokens", "rel_l2"}]}`); malformed is
    /// an input error.
    fn recorded_f64_noise(&self, data: &Loaded, kind: PipelineKind) -> Result<Option<RecordedNoise>> {
        let Some(raw) = data.metadata.get("f64_noise") else { return Ok(None) };
        let bad = |why: &str| Error::input(self.spec.reference_path(), format!("metadata \"f64_noise\" {why}: {}", raw.chars().take(80).collect::<String>()));
        let map: BTreeMap<String, RecordedNoise> =
            serde_json::from_str(raw).map_err(|_| bad("is not a JSON object of pipeline name -> {\"sample\": [{\"id\", \"tokens\", \"rel_l2\"}]}"))?;
        if map.values().flat_map(|r| &r.sample).any(|t| !(t.rel_l2.is_finite() && t.rel_l2 >= 0.0)) {
            return Err(bad("holds a distance that is not a finite number >= 0"));
        }
        Ok(map.get(kind.name()).cloned())
    }

    /// Checks a system under test given as a function of a batch of texts (see [`Embedder`]) against the
    /// reference of pipeline `kind`. The harness batches the texts (the suite's `batch_size`) and hands
    /// each exactly as `texts.jsonl` holds it. Failures are diagnosed with the suite's model when it is at
    /// hand.
    pub fn check_embedder(&self, kind: PipelineKind, embedder: &mut dyn Embedder) -> Result<SuiteReport> {
        let started = std::time::Instant::now();
        let data = self.load_data()?;
        self.require(kind)?;
        let outputs = embedder.embed_all(&data.strings(), self.spec.batch_size)?;
        let info = SourceInfo { kind: "embedder".into(), location: "a Rust function".into(), details: BTreeMap::new() };
        self.check_outputs(&data, kind, outputs, info, started, None)
    }

    /// Checks a system under test named on the command line (a server, a command, a file).
    pub fn check_source(&self, kind: PipelineKind, config: &SourceConfig) -> Result<SuiteReport> {
        let started = std::time::Instant::now();
        let data = self.load_data()?;
        self.require(kind)?;
        // A server that can normalize (TEI) is asked to do as the reference did.
        let mut config = config.clone();
        if config.http.normalize.is_none() {
            config.http.normalize = reference_is_normalized(&data.expected(&self.spec, kind)?.vectors);
        }
        let (outputs, info) = source::collect(&config, kind, &data.texts)?;
        self.check_outputs(&data, kind, outputs, info, started, config.http.deadline)
    }

    /// An error unless the suite has a reference for `kind`.
    pub(crate) fn require(&self, kind: PipelineKind) -> Result<()> {
        if self.spec.pipelines.contains(&kind) {
            return Ok(());
        }
        let have: Vec<_> = self.spec.pipelines.iter().map(|p| p.name()).collect();
        Err(Error::Usage(format!("suite {} has no {kind} reference (it has: {})", self.spec.name, have.join(", "))))
    }

    /// `deadline`: the check's, which diagnosing does not run past either.
    fn check_outputs(
        &self,
        data: &Loaded,
        kind: PipelineKind,
        outputs: Vec<Output>,
        info: SourceInfo,
        started: std::time::Instant,
        deadline: Option<source::Deadline>,
    ) -> Result<SuiteReport> {
        let spec = &self.spec;
        if outputs.len() != data.texts.len() {
            return Err(Error::Usage(format!("{} outputs for {} texts from {}", outputs.len(), data.texts.len(), info.location)));
        }
        // A system that refused every text (a wrong URL path, a missing key) was not checked at all.
        if let Some(Err(first)) = outputs.first().map(|o| &o.value).filter(|_| outputs.iter().all(|o| o.value.is_err())) {
            return Err(Error::Usage(format!("{} rejected every text; the first answer: {first}", info.location)));
        }
        let want = data.expected(spec, kind)?;
        let mut report = self.empty_report(data, info);
        let split = source::Split::of(&outputs);
        let tokens = split.tokens.as_deref();
        let actual = Side { vectors: &split.vectors, tokens, rejected: Some(&split.rejected) };
        let expected = Side::new(&want.vectors, want.input_ids.as_deref());
        let strings = data.strings();
        let ids = data.ids();
        let options = &spec.options;
        let model = match ModelFiles::resolve(&spec.model_location) {
            Ok(files) => match self.load_model(files, &data.metadata) {
                Ok(model) => Some(model),
                // The vectors are compared all the same; only the recomputations need embcheck's encoder.
                Err(Error::Unimplemented { model_type, .. }) => {
                    report.notes.push(format!("model type {model_type} is not implemented: model-free diagnoses only"));
                    None
                }
                Err(e) => return Err(e),
            },
            Err(e) => {
                report.notes.push(format!(
                    "the suite's model is not at hand ({e}): only model-free diagnoses (non-finite, token ids, normalization) were possible"
                ));
                None
            }
        };
        let result = match &model {
            Some(model) => {
                let pipeline = Pipeline::build(kind, model, options)?;
                report.max_length.insert(kind.name().to_string(), pipeline.max_length);
                report.notes.extend(expectations(&pipeline));
                let tol = self.tolerance(data, &pipeline, model)?;
                let alt = ModelAlternatives::new(
                    model,
                    &pipeline,
                    &strings,
                    Subject::SystemUnderTest,
                    data.reference_max_length(),
                    options.instruction.as_deref(),
                )
                .with_recorded_noise(self.recorded_f64_noise(data, kind)?);
                let until = match (self.diagnosis_budget.until(started.elapsed()), deadline) {
                    (Some((at, budget)), Some(d)) if d.remaining() < budget => Some((at.min(std::time::Instant::now() + d.remaining()), d.remaining())),
                    (None, Some(d)) => Some((std::time::Instant::now() + d.remaining(), d.remaining())),
                    (until, _) => until,
                };
                let mut alt = DiagnosisBudget::apply(until, alt);
                compare_pipeline(kind, &ids, actual, expected, tol, &mut alt as &mut dyn Alternatives)?
            }
            None => {
                for p in [&options.instruction, &options.prompt, &options.prompt_name].into_iter().flatten() {
                    report.notes.push(format!("the reference was made with the prompt or instruction {p:?}: your system is expected to add it"));
                }
                let mut tol = spec.tolerance_for(kind);
                match self.recorded_noise_floor(data, kind)? {
                    Some(floor) => tol.noise_floor = floor,
                    None if kind == PipelineKind::M3Sparse => report.notes.push(
                        "the reference records no noise floor for m3-sparse (it was made before embcheck recorded one): without the model none is applied, so tiny weights may fail that pass with it; regenerate the reference".into(),
                    ),
                    None => {}
                }
                compare_pipeline(kind, &ids, actual, expected, tol, &mut NoAlternatives)?
            }
        };
        let mut result = result;
        if split.tokens.is_none() {
            report.notes.push("the system under test gave no token ids, so no claim is made about its tokenization".into());
        } else if report.source.kind == "http" {
            // A server's ids come from /tokenize, not from the request that made the vectors (TEI's does not
            // truncate, for one): evidence for a diagnosis, not a verdict where the vectors agree.
            let demoted = ids_as_evidence(&mut result);
            if !demoted.is_empty() {
                report.notes.push(format!(
                    "{} texts whose vectors agree have other token ids from the server's tokenize endpoint than the reference ({}): ids from another endpoint than the one that made the vectors are a note, not a failure",
                    demoted.len(),
                    demoted.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        report.pipelines.push(result);
        Ok(report)
    }
}

/// Passes the rows that failed on token ids alone; returns their ids.
fn ids_as_evidence(result: &mut crate::compare::PipelineResult) -> Vec<String> {
    let mut demoted = Vec::new();
    for row in result.rows.iter_mut().filter(|r| r.failed == ["tokens"]) {
        row.failed.clear();
        row.diagnosis = None;
        demoted.push(row.id.clone());
    }
    if !demoted.is_empty() {
        result.summary = crate::compare::Summary::of(&result.rows);
    }
    demoted
}

/// Whether every dense reference vector has unit norm (`None` for other outputs).
fn reference_is_normalized(vectors: &[crate::pipeline::Vector]) -> Option<bool> {
    let norms: Option<Vec<f64>> = vectors
        .iter()
        .map(|v| match v {
            crate::pipeline::Vector::Dense(d) => Some(d.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt()),
            _ => None,
        })
        .collect();
    norms.map(|n| !n.is_empty() && n.iter().all(|x| (x - 1.0).abs() < 1e-4))
}

/// What a system under test must do itself to match the reference of `pipeline`, for the report.
fn expectations(pipeline: &Pipeline) -> Vec<String> {
    let mut out = Vec::new();
    if !pipeline.prep.prefix.is_empty() {
        out.push(format!(
            "the reference was made with {:?} prefixed to every text (a query instruction or prompt): your system is expected to add it; embcheck sends the texts as they are",
            pipeline.prep.prefix
        ));
    }
    if pipeline.prep.strip {
        out.push("the reference stripped leading and trailing whitespace from every text (sentence-transformers does): your system is expected to do the same".into());
    }
    if pipeline.prep.lowercase != crate::pipeline::Lowercase::No {
        out.push("the reference lowercased every text (do_lower_case): your system is expected to do the same".into());
    }
    out.push(format!("the reference cut texts at {} tokens", pipeline.max_length));
    out
}
