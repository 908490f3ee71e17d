//! Running a suite: compute every listed pipeline, compare with the reference, diagnose the failures.
//! The entry point for users' own tests:
//!
//! ```no_run
//! embcheck::Suite::load("fixtures/suites/tiny-bert-mean")?.run()?.assert_passed();
//! # Ok::<(), embcheck::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::DType;
use serde::Serialize;

use crate::compare::{compare_pipeline, Alternatives, PipelineResult, Side};
use crate::embed::{embed_many, for_each_batch, BatchOptions};
use crate::error::{Error, Result};
use crate::fixture::{read_texts, Names, SuiteSpec, TensorFile};
use crate::model::{dtype_name, Model, ModelFiles};
use crate::pipeline::{OutputKind, Pipeline, PipelineKind, Vector};

/// A suite on disk.
#[derive(Debug, Clone)]
pub struct Suite {
    /// Its settings.
    pub spec: SuiteSpec,
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

/// The outcome of one suite.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    /// The suite's name.
    pub suite: String,
    /// The suite directory.
    pub dir: PathBuf,
    /// The model as suite.toml names it.
    pub model: String,
    /// The dtype computed in.
    pub dtype: String,
    /// Max length per pipeline as used here.
    pub max_length: BTreeMap<String, usize>,
    /// The reference file's metadata (library versions, hashes, ...).
    pub reference_metadata: BTreeMap<String, String>,
    /// One result per pipeline.
    pub pipelines: Vec<PipelineResult>,
    /// Why the suite was skipped, if it was (never a pass).
    pub skipped: Option<String>,
    /// Model files that differ from those the reference was made with (by sha256).
    pub changed_files: Vec<String>,
    /// Why the suite could not be checked, if it errored (bad input, missing model): never a pass.
    pub error: Option<String>,
}

/// Pass, fail or skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every text of every pipeline within tolerance.
    Passed,
    /// At least one text out of tolerance.
    Failed,
    /// Not run (its model is missing and skipping was asked for).
    Skipped,
    /// Could not be checked: an input or configuration error (exit code 2).
    Error,
}

impl SuiteReport {
    /// The suite's status.
    pub fn status(&self) -> Status {
        if self.error.is_some() {
            Status::Error
        } else if self.skipped.is_some() {
            Status::Skipped
        } else if self.pipelines.iter().all(PipelineResult::passed) {
            Status::Passed
        } else {
            Status::Failed
        }
    }

    /// Whether the suite ran and every text passed.
    pub fn passed(&self) -> bool {
        self.status() == Status::Passed
    }

    /// Panics unless the suite passed, with a message in the style of numpy's `assert_allclose`.
    #[track_caller]
    pub fn assert_passed(&self) {
        if !self.passed() {
            panic!("{}", self.failure_message());
        }
    }

    /// What [`SuiteReport::assert_passed`] panics with (empty when the suite passed).
    pub fn failure_message(&self) -> String {
        if let Some(why) = &self.error {
            return format!("suite {} could not be checked: {why}", self.suite);
        }
        if let Some(why) = &self.skipped {
            return format!("suite {} was skipped, not passed: {why}", self.suite);
        }
        let mut out = String::new();
        for p in self.pipelines.iter().filter(|p| !p.passed()) {
            out.push_str(&pipeline_failure(&self.suite, p));
        }
        out
    }
}

impl SuiteReport {
    /// The report of a suite that could not be checked: `error` says why. Its name is the directory's.
    pub fn errored(dir: &Path, error: &Error) -> Self {
        SuiteReport {
            suite: dir.file_name().map_or_else(|| dir.to_string_lossy().into_owned(), |n| n.to_string_lossy().into_owned()),
            dir: dir.to_path_buf(),
            model: String::new(),
            dtype: String::new(),
            max_length: BTreeMap::new(),
            reference_metadata: BTreeMap::new(),
            pipelines: Vec::new(),
            skipped: None,
            changed_files: Vec::new(),
            error: Some(error.one_line()),
        }
    }
}

fn pipeline_failure(suite: &str, p: &PipelineResult) -> String {
    let s = &p.summary;
    let t = &p.tolerance;
    let by = |f: fn(&crate::compare::RowResult) -> f64, max: bool| {
        p.rows
            .iter()
            .max_by(|a, b| {
                let (x, y) = (f(a), f(b));
                let o = if x.is_nan() { std::cmp::Ordering::Greater } else if y.is_nan() { std::cmp::Ordering::Less } else { x.total_cmp(&y) };
                if max { o } else { o.reverse() }
            })
            .expect("rows")
    };
    let worst_cos = by(|r| r.metrics.cosine, false);
    let worst_abs = by(|r| r.metrics.max_abs_diff, true);
    let worst_rel = by(|r| r.metrics.rel_l2, true);
    let mut out = format!(
        "\nNot equal to tolerance: suite {suite}, pipeline {} (min_cosine {}, max_rel_l2 {:e}, max_abs {:e})\n\n\
         Mismatched texts: {} / {} ({:.3}%)\n\
         Worst cosine: {:.9} (text {})\n\
         Max absolute difference: {:.6e} (text {}, at {})\n\
         Max relative L2 difference: {:.6e} (text {})\n",
        p.pipeline,
        t.min_cosine,
        t.max_rel_l2,
        t.max_abs,
        s.failed,
        s.rows,
        100.0 * s.failed as f64 / s.rows.max(1) as f64,
        worst_cos.metrics.cosine,
        worst_cos.id,
        worst_abs.metrics.max_abs_diff,
        worst_abs.id,
        worst_abs.metrics.max_abs_index,
        worst_rel.metrics.rel_l2,
        worst_rel.id,
    );
    for r in p.rows.iter().filter(|r| !r.pass()).take(10) {
        let (stage, detail) = r.diagnosis.as_ref().map_or(("unknown", ""), |d| (d.stage.keyword(), d.detail.as_str()));
        out.push_str(&format!(
            "  {}: cosine {:.9}, rel_l2 {:.3e}, max_abs {:.3e}, failed [{}]; {stage}: {detail}\n",
            r.id,
            r.metrics.cosine,
            r.metrics.rel_l2,
            r.metrics.max_abs_diff,
            r.failed.join(", ")
        ));
    }
    out
}

impl Suite {
    /// Reads `dir/suite.toml`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        Ok(Suite { spec: SuiteSpec::load(dir.as_ref())? })
    }

    /// Runs every pipeline of the suite; a missing model is an error.
    pub fn run(&self) -> Result<SuiteReport> {
        self.run_with(&RunOptions::default())
    }

    /// Runs the suite with options.
    pub fn run_with(&self, opts: &RunOptions) -> Result<SuiteReport> {
        let spec = &self.spec;
        let texts = read_texts(&spec.texts_path())?;
        let reference = TensorFile::read(&spec.reference_path())?;
        let kinds: Vec<PipelineKind> =
            spec.pipelines.iter().copied().filter(|p| opts.pipelines.is_empty() || opts.pipelines.contains(p)).collect();
        let mut report = SuiteReport {
            suite: spec.name.clone(),
            dir: spec.dir.clone(),
            model: spec.model.clone(),
            dtype: dtype_name(spec.dtype).to_string(),
            max_length: BTreeMap::new(),
            reference_metadata: reference.metadata(),
            pipelines: Vec::new(),
            skipped: None,
            changed_files: Vec::new(),
            error: None,
        };
        if kinds.is_empty() {
            let asked: Vec<_> = opts.pipelines.iter().map(|p| p.name()).collect();
            report.skipped = Some(format!("none of the requested pipelines ({}) is in this suite", asked.join(", ")));
            return Ok(report);
        }
        crate::fixture::provenance::check_texts(&report.reference_metadata, &spec.texts_path())?;
        // Read every expected value before the (slow) model: a bad reference fails fast.
        let mut expected = Vec::new();
        for &k in &kinds {
            let stored = reference.vectors(k.output(), &Names::reference(k))?;
            if stored.vectors.len() != texts.len() {
                return Err(Error::input(
                    spec.reference_path(),
                    format!("tensor {:?} holds {} texts, texts.jsonl has {}", k.name(), stored.vectors.len(), texts.len()),
                ));
            }
            expected.push(stored);
        }
        let files = match ModelFiles::resolve(&spec.model_location) {
            Ok(f) => f,
            Err(e @ Error::Model { .. }) if opts.skip_missing => {
                report.skipped = Some(format!("model missing: {e}"));
                return Ok(report);
            }
            Err(e) => return Err(e),
        };
        report.changed_files = crate::fixture::provenance::model_file_changes(&report.reference_metadata, &files.dir)?;
        let model = Model::from_files(files, spec.dtype)?;
        let mut options = spec.options.clone();
        if options.st_strip.is_none() {
            options.st_strip = reference_st_strip(&report.reference_metadata);
        }
        let pipelines = kinds.iter().map(|&k| Pipeline::build(k, &model, &options)).collect::<Result<Vec<_>>>()?;
        let strings: Vec<String> = texts.iter().map(|t| t.text.clone()).collect();
        let ids: Vec<String> = texts.iter().map(|t| t.id.clone()).collect();
        let batch = BatchOptions { batch_size: spec.batch_size, progress: opts.progress };
        let actual = embed_many(&model, &pipelines, &strings, batch)?;
        let reference_max_length = report.reference_metadata.get("max_length").and_then(|m| m.parse().ok());
        for ((pipeline, got), want) in pipelines.iter().zip(actual).zip(expected) {
            report.max_length.insert(pipeline.kind.name().to_string(), pipeline.max_length);
            let mut alt = ModelAlternatives::new(&model, pipeline, &strings, spec.dtype, reference_max_length);
            report.pipelines.push(compare_pipeline(
                pipeline.kind,
                &ids,
                Side { vectors: &got.vectors, tokens: Some(&got.input_ids) },
                Side { vectors: &want.vectors, tokens: want.input_ids.as_deref() },
                spec.tolerance_for(pipeline.kind),
                &mut alt,
            )?);
        }
        Ok(report)
    }
}

/// Whether sentence-transformers stripped the texts, from the library versions the reference records.
fn reference_st_strip(metadata: &BTreeMap<String, String>) -> Option<bool> {
    let libs: BTreeMap<String, String> = serde_json::from_str(metadata.get("libraries")?).ok()?;
    crate::pipeline::st_strips(libs.get("sentence-transformers")?, libs.get("transformers")?)
}

/// How many failing texts per pipeline get alternatives computed (each costs encoder passes).
const DIAGNOSIS_BUDGET: usize = 64;

/// Computes alternatives with the suite's own model.
struct ModelAlternatives<'a> {
    model: &'a Model,
    pipeline: &'a Pipeline,
    texts: &'a [String],
    dtype: DType,
    reference_max_length: Option<usize>,
    others: HashMap<&'static str, Model>,
    examined: Vec<usize>,
}

impl<'a> ModelAlternatives<'a> {
    fn new(model: &'a Model, pipeline: &'a Pipeline, texts: &'a [String], dtype: DType, reference_max_length: Option<usize>) -> Self {
        ModelAlternatives { model, pipeline, texts, dtype, reference_max_length, others: HashMap::new(), examined: Vec::new() }
    }

    /// Whether text `index` is within the budget (the first texts asked about are).
    fn allowed(&mut self, index: usize) -> bool {
        if self.examined.contains(&index) {
            return true;
        }
        if self.examined.len() >= DIAGNOSIS_BUDGET {
            return false;
        }
        self.examined.push(index);
        true
    }

    /// Runs `pipeline` on one text alone with `model`; also returns the hidden rows.
    fn single(model: &Model, pipeline: &Pipeline, text: &str) -> Result<(Vector, Vec<f32>, usize)> {
        let ids = model.tokenizer.encode_all(&[pipeline.prep.apply(text)], pipeline.max_length)?;
        let mut out = None;
        for_each_batch(model, &ids, 1, |_, tokens, h| {
            out = Some((pipeline.apply(tokens, &ids[0], h)?, tokens.to_vec(), h));
            Ok(())
        })?;
        out.ok_or_else(|| Error::Usage("no output".into()))
    }
}

impl Alternatives for ModelAlternatives<'_> {
    fn alone(&mut self, index: usize) -> Result<Option<Vector>> {
        if !self.allowed(index) {
            return Ok(None);
        }
        Ok(Some(Self::single(self.model, self.pipeline, &self.texts[index])?.0))
    }

    fn with_max_length(&mut self, index: usize, max_length: usize) -> Result<Option<Vector>> {
        if !self.allowed(index) || max_length == 0 || max_length > self.model.config.max_tokens() {
            return Ok(None);
        }
        let mut p = self.pipeline.clone();
        p.max_length = max_length;
        Ok(Some(Self::single(self.model, &p, &self.texts[index])?.0))
    }

    fn shorter_lengths(&mut self, index: usize) -> Result<Vec<usize>> {
        if !self.allowed(index) {
            return Ok(Vec::new());
        }
        let n = self.model.tokenizer.encode_all(&[self.pipeline.prep.apply(&self.texts[index])], self.pipeline.max_length)?[0].len();
        // The reference's own max length first, then the usual settings (powers of two, 384, ...).
        let mut out: Vec<usize> = self.reference_max_length.into_iter().collect();
        out.extend((3..14).map(|k| 1usize << k).chain([384, 768]));
        out.retain(|&m| m < n && m >= 2);
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn poolings(&mut self, index: usize) -> Result<Vec<(String, Vector)>> {
        if self.pipeline.kind.output() != OutputKind::Dense || !self.allowed(index) {
            return Ok(Vec::new());
        }
        let (_, tokens, h) = Self::single(self.model, self.pipeline, &self.texts[index])?;
        self.pipeline.other_poolings(&tokens, h)
    }

    fn other_precisions(&mut self, index: usize) -> Result<Vec<(String, Vector)>> {
        if !self.allowed(index) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for dt in [DType::F32, DType::F16, DType::BF16] {
            if dt == self.dtype {
                continue;
            }
            let name = dtype_name(dt);
            if !self.others.contains_key(name) {
                let m = Model::from_files(self.model.files.clone(), dt)?;
                self.others.insert(name, m);
            }
            let (v, _, _) = Self::single(&self.others[name], self.pipeline, &self.texts[index])?;
            out.push((name.to_string(), v));
        }
        Ok(out)
    }
}
