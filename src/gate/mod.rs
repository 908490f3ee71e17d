//! `embcheck gate`: is a candidate (a new model revision, f16 weights, another serving stack, another
//! model) as good as the baseline a suite's Python references record, and does search still return the
//! same neighbours?
//!
//! Baseline: the suite's reference vectors, per pipeline. Candidate: embcheck's own pipeline on a model
//! directory or hub id, or any system under test [`crate::source::collect`] reads (server, command, file).
//! Per pipeline the gate measures drift per text (only where the spaces compare), top-k neighbour overlap
//! among the suite's texts (Jaccard@k), the Spearman correlation of the pairwise similarities and, when the
//! suite carries a retrieval set, recall@k and nDCG@k of both sides with a paired bootstrap interval of the
//! difference. [`Thresholds`] decide.

pub mod metrics;
pub mod mode;
pub mod neighbours;
pub mod retrieval;
pub mod slices;
pub mod sparse;
pub mod thresholds;
pub mod upgrade;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use mode::{Mode, ModeChoice};
pub use retrieval::RetrievalSet;
pub use thresholds::Thresholds;

use crate::compare::metrics::score;
use crate::embed::{embed_many, BatchOptions};
use crate::error::{Error, Result};
use crate::fixture::{SuiteSpec, TensorFile, TextItem};
use crate::model::{HubId, Model};
use crate::pipeline::{Pipeline, PipelineKind, Vector};
use crate::source::{self, SourceConfig, SourceInfo};
use metrics::{Drift, Interval};

/// What is gated against the baseline.
#[derive(Debug, Clone)]
pub enum Candidate {
    /// A model directory or hub id, computed with embcheck's own pipelines and the suite's options.
    Model(String),
    /// A system under test.
    Source(SourceConfig),
}

/// Whether a `--candidate` value names a model (an existing directory, or a hub id that is not an existing
/// file) rather than a server, command or vectors file.
pub fn names_a_model(arg: &str) -> bool {
    if arg.starts_with("http://") || arg.starts_with("https://") || arg.starts_with("cmd:") {
        return false;
    }
    let p = Path::new(arg);
    p.is_dir() || (!p.exists() && HubId::parse(arg).is_some())
}

/// One check of a pipeline against a limit.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is checked (`mean Jaccard@10`, `nDCG@10 drop (upper bound)`, ...).
    pub name: String,
    /// The measured value.
    pub value: f64,
    /// `>=` or `<=`.
    pub op: &'static str,
    /// The limit.
    pub limit: f64,
    /// Whether the value is within the limit (NaN never is).
    pub passed: bool,
    /// Not passed, but the queries cannot tell a drop of the margin from none (upgrade mode; see
    /// [`upgrade`]): neither a pass nor a fail.
    pub inconclusive: bool,
    /// Whether it decides the verdict. A slice's check that its few queries cannot decide is reported, not
    /// gated ([`Verdict::Unresolved`]): a slice fails on a clear drop only; the verdict rests on all queries.
    pub gating: bool,
    /// Why it is inconclusive, and about how many queries would decide.
    pub note: Option<String>,
}

impl Check {
    fn at_least(name: impl Into<String>, value: f64, limit: f64) -> Self {
        Check { name: name.into(), value, op: ">=", limit, passed: value >= limit, inconclusive: false, gating: true, note: None }
    }

    fn at_most(name: impl Into<String>, value: f64, limit: f64) -> Self {
        Check { name: name.into(), value, op: "<=", limit, passed: value <= limit, inconclusive: false, gating: true, note: None }
    }

    /// This check's verdict.
    pub fn verdict(&self) -> Verdict {
        if self.passed {
            Verdict::Pass
        } else if !self.gating {
            Verdict::Unresolved
        } else if self.inconclusive {
            Verdict::Inconclusive
        } else {
            Verdict::Fail
        }
    }
}

/// A check's, pipeline's or gate's verdict: any failed check fails, else any inconclusive one makes it
/// inconclusive; unresolved slice checks leave it a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// A slice's check its few queries cannot decide (no clear drop, no proof the drop is within the margin):
    /// reported with the queries that would decide it, not gated. Only a check's verdict, never a pipeline's.
    Unresolved,
    /// No check failed; some could not be decided with the queries at hand.
    Inconclusive,
    /// A check failed.
    Fail,
}

impl Verdict {
    /// `PASS`, `INCONCLUSIVE` or `FAIL`.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Unresolved => "NOT RESOLVED",
            Verdict::Inconclusive => "INCONCLUSIVE",
            Verdict::Fail => "FAIL",
        }
    }

    /// The worst of several (Pass when there are none); unresolved slice checks count as passes.
    pub fn worst(all: impl IntoIterator<Item = Verdict>) -> Verdict {
        all.into_iter().map(|v| if v == Verdict::Unresolved { Verdict::Pass } else { v }).max().unwrap_or(Verdict::Pass)
    }
}

/// One text's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TextGate {
    /// The text's id.
    pub id: String,
    /// Drift from the baseline, where the spaces compare.
    pub drift: Option<Drift>,
    /// Jaccard@k of its neighbours (`None` when the gate compared a sample of texts without it).
    pub jaccard: Option<f64>,
    /// Ids of baseline neighbours the candidate lost.
    pub lost: Vec<String>,
    /// Ids of candidate neighbours the baseline did not have.
    pub gained: Vec<String>,
    /// The candidate's message when it rejected the text.
    pub rejected: Option<String>,
    /// Whether the candidate's value holds a NaN or infinity.
    pub non_finite: bool,
}

/// Drift's distribution over the texts.
#[derive(Debug, Clone, Serialize)]
pub struct DriftSummary {
    /// Lowest cosine.
    pub min_cosine: f64,
    /// Median cosine.
    pub median_cosine: f64,
    /// Median relative L2.
    pub median_rel_l2: f64,
    /// 95th percentile of relative L2.
    pub p95_rel_l2: f64,
    /// Largest relative L2.
    pub max_rel_l2: f64,
}

/// One query's retrieval figures on both sides.
#[derive(Debug, Clone, Serialize)]
pub struct QueryGate {
    /// The query's id.
    pub id: String,
    /// Its slice (the value of `[gate] slice_field`), when it has one.
    pub slice: Option<String>,
    /// nDCG@k of the baseline.
    pub ndcg_baseline: f64,
    /// nDCG@k of the candidate.
    pub ndcg_candidate: f64,
    /// recall@k of the baseline.
    pub recall_baseline: f64,
    /// recall@k of the candidate.
    pub recall_candidate: f64,
    /// MRR@k of the baseline.
    pub mrr_baseline: f64,
    /// MRR@k of the candidate.
    pub mrr_candidate: f64,
}

/// Retrieval quality of both sides on the suite's retrieval set.
#[derive(Debug, Clone, Serialize)]
pub struct RetrievalGate {
    /// The set's directory.
    pub dir: PathBuf,
    /// The rank cut-off.
    pub k: usize,
    /// Mean nDCG@k of the baseline.
    pub ndcg_baseline: f64,
    /// Mean nDCG@k of the candidate.
    pub ndcg_candidate: f64,
    /// Candidate − baseline nDCG@k, with its bootstrap interval.
    pub ndcg_diff: Interval,
    /// Mean recall@k of the baseline.
    pub recall_baseline: f64,
    /// Mean recall@k of the candidate.
    pub recall_candidate: f64,
    /// Candidate − baseline recall@k, with its bootstrap interval.
    pub recall_diff: Interval,
    /// Passages searched.
    pub corpus: usize,
    /// Queries without relevant passages, left out.
    pub unjudged: usize,
    /// nDCG@k, recall@k and MRR@k over every query, each with its interval and margin.
    pub overall: Vec<slices::MetricDiff>,
    /// The field that puts queries in slices.
    pub slice_field: String,
    /// The same per slice (empty when no query has the field).
    pub slices: Vec<slices::SliceGate>,
    /// Per query.
    pub queries: Vec<QueryGate>,
}

/// One pipeline's gate.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineGate {
    /// Which pipeline.
    pub pipeline: PipelineKind,
    /// Neighbours per text (the threshold's k capped at n − 1).
    pub k: usize,
    /// Per text, in suite order.
    pub texts: Vec<TextGate>,
    /// Drift's distribution, where the spaces compare.
    pub drift: Option<DriftSummary>,
    /// Why drift is not measured, when it is not.
    pub not_comparable: Option<String>,
    /// Mean Jaccard@k (over the texts compared).
    pub jaccard_mean: f64,
    /// Lowest Jaccard@k.
    pub jaccard_min: f64,
    /// Texts whose neighbours were compared: all, or a seeded sample (`[gate] neighbour_texts`).
    pub neighbours_compared: usize,
    /// The interval of the mean Jaccard@k when the texts compared were a sample.
    pub jaccard_interval: Option<Interval>,
    /// Spearman correlation of the pairwise similarities.
    pub spearman: f64,
    /// How it was computed: over every pair, or on a seeded sample with its interval.
    pub spearman_detail: metrics::RankCorrelation,
    /// Retrieval quality, when the suite carries a retrieval set.
    pub retrieval: Option<RetrievalGate>,
    /// What switching to the candidate changes for an index (upgrade mode).
    pub reindex: Option<upgrade::ReindexImpact>,
    /// Every check made; the pipeline passes when all do.
    pub checks: Vec<Check>,
}

impl PipelineGate {
    /// Whether its verdict is a pass (a slice check left unresolved does not count against it).
    pub fn passed(&self) -> bool {
        self.verdict() == Verdict::Pass
    }

    /// The worst of its checks' verdicts.
    pub fn verdict(&self) -> Verdict {
        Verdict::worst(self.checks.iter().map(Check::verdict))
    }
}

/// A gate's outcome for one suite.
#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    /// The baseline suite's name.
    pub suite: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The model the baseline was made from.
    pub baseline_model: String,
    /// The candidate.
    pub candidate: SourceInfo,
    /// The question answered, and why.
    pub mode: ModeChoice,
    /// The limits applied.
    pub thresholds: Thresholds,
    /// Per pipeline.
    pub pipelines: Vec<PipelineGate>,
    /// Things a reader should know (a candidate's settings, queries left out).
    pub notes: Vec<String>,
}

impl GateReport {
    /// Whether every pipeline's verdict is a pass.
    pub fn passed(&self) -> bool {
        self.verdict() == Verdict::Pass
    }

    /// The worst pipeline's verdict.
    pub fn verdict(&self) -> Verdict {
        Verdict::worst(self.pipelines.iter().map(PipelineGate::verdict))
    }
}

/// Gates `candidate` against the suite in `dir`, for `pipelines` (all of the suite's when empty), in
/// `mode`, or in the mode [`mode::decide`] infers when `None` (an [`Error::Usage`] when it cannot).
pub fn run(dir: &Path, candidate: &Candidate, pipelines: &[PipelineKind], mode: Option<Mode>, progress: bool) -> Result<GateReport> {
    // The suite loaded as `check` loads it: the same checks (texts' sha256, metadata) and error messages.
    let suite = crate::Suite::load(dir)?;
    let spec = &suite.spec;
    let thresholds = Thresholds::from_toml(spec.gate.as_ref(), &dir.join("suite.toml"))?;
    let data = suite.load_data()?;
    let kinds: Vec<PipelineKind> = if pipelines.is_empty() { spec.pipelines.clone() } else { pipelines.to_vec() };
    for &k in &kinds {
        suite.require(k)?;
    }
    if data.texts.len() < 3 {
        return Err(Error::input(spec.texts_path(), format!("{} texts: the gate needs at least 3 to compare neighbours", data.texts.len())));
    }
    let baselines = kinds.iter().map(|&k| data.expected(spec, k).map(|s| s.vectors)).collect::<Result<Vec<_>>>()?;
    let crate::suite::Loaded { texts, reference, .. } = data;
    let retrieval = spec.retrieval.as_deref().map(|d| RetrievalSet::load(d, &texts, &thresholds.slice_field)).transpose()?;
    if mode == Some(Mode::Upgrade) && retrieval.is_none() {
        return Err(no_retrieval_set(spec));
    }
    let mut notes = Vec::new();
    if let Some(r) = &retrieval {
        if r.unjudged > 0 {
            notes.push(format!("{} queries of {} have no relevant passage and are left out", r.unjudged, r.dir.display()));
        }
    }
    let (candidates, info, seconds) = candidate_outputs(spec, &reference, candidate, &kinds, &texts, progress, &mut notes)?;
    let seconds_per_1000 = seconds.map(|s| s * 1000.0 / texts.len() as f64);
    let mode = match mode {
        Some(m) => ModeChoice { mode: m, reason: format!("given with --mode {}", m.name()) },
        None => {
            let known = known_of(spec, &reference, candidate, &info, &baselines, &candidates);
            let choice = mode::decide(&known).map_err(Error::Usage)?;
            if choice.mode == Mode::Upgrade && retrieval.is_none() {
                return Err(no_retrieval_set(spec));
            }
            choice
        }
    };
    // The file's bytes are no longer needed: at corpus scale they are as large as the vectors.
    drop(reference);
    let ids: Vec<String> = texts.iter().map(|t| t.id.clone()).collect();
    let pipelines = kinds
        .iter()
        .zip(&baselines)
        .zip(candidates)
        .map(|((&k, base), cand)| {
            let mut p = gate_pipeline(k, &ids, base, cand, retrieval.as_ref(), mode.mode, &thresholds);
            if let Some(r) = &mut p.reindex {
                r.seconds_per_1000_texts = seconds_per_1000;
            }
            p
        })
        .collect();
    Ok(GateReport {
        suite: spec.name.clone(),
        dir: spec.dir.clone(),
        baseline_model: spec.model.clone(),
        candidate: info,
        mode,
        thresholds,
        pipelines,
        notes,
    })
}

fn no_retrieval_set(spec: &SuiteSpec) -> Error {
    Error::Usage(format!("an upgrade is gated on retrieval quality: suite {} carries no retrieval set (retrieval = \"DIR\" in suite.toml)", spec.name))
}

/// What is known of both sides for [`mode::decide`]: the weights' sha256 (the reference records the
/// baseline's), a model id, the width of the first pipeline's dense vectors.
fn known_of(spec: &SuiteSpec, reference: &TensorFile, candidate: &Candidate, info: &SourceInfo, baselines: &[Vec<Vector>], candidates: &[Outputs]) -> mode::Known {
    let recorded: std::collections::BTreeMap<String, String> =
        reference.metadata().get("sha256").and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
    let weights = ["model.safetensors", "pytorch_model.bin"].into_iter().find_map(|f| recorded.get(f).map(|h| (f.to_string(), h.clone())));
    let mut known = mode::Known { baseline_weights: weights.clone(), baseline_id: spec.model.clone(), ..Default::default() };
    match candidate {
        Candidate::Model(location) => {
            let dir = crate::model::ModelFiles::resolve(location).ok().map(|f| f.dir);
            if let (Some(dir), Some((file, _))) = (dir, &weights) {
                known.candidate_weights_sha = crate::fixture::provenance::sha256_file(&dir.join(file)).ok();
            }
            if !Path::new(location).is_dir() {
                known.candidate_id = Some(location.clone());
            }
        }
        Candidate::Source(_) => known.candidate_id = info.details.get("model").cloned(),
    }
    let width = |v: Option<&Vector>| match v {
        Some(Vector::Dense(d)) if !d.is_empty() => Some(d.len()),
        _ => None,
    };
    if let (Some(b), Some(c)) = (baselines.first(), candidates.first()) {
        known.widths = b.iter().find_map(|x| width(Some(x))).zip(c.iter().find_map(|o| width(o.as_ref().ok())));
    }
    known
}

/// The candidate's values per pipeline: `Err(message)` for a text it rejected.
/// With them, the wall seconds the candidate took to embed the texts (every pipeline; loading a model
/// not counted), when embcheck ran it: not for a file.
type Outputs = Vec<std::result::Result<Vector, String>>;

fn candidate_outputs(
    spec: &SuiteSpec,
    reference: &TensorFile,
    candidate: &Candidate,
    kinds: &[PipelineKind],
    texts: &[TextItem],
    progress: bool,
    notes: &mut Vec<String>,
) -> Result<(Vec<Outputs>, SourceInfo, Option<f64>)> {
    match candidate {
        Candidate::Model(location) => {
            // The Python stack the baseline was made with decides tokenization and text handling.
            let stack = crate::model::Stack::from_reference(&reference.metadata()).map_err(|e| Error::input(spec.reference_path(), e.to_string()))?;
            let model = Model::from_files_for(crate::model::ModelFiles::resolve(location)?, spec.dtype, stack)?;
            let options = spec.options.clone();
            let pipelines = kinds.iter().map(|&k| Pipeline::build(k, &model, &options)).collect::<Result<Vec<_>>>()?;
            let strings: Vec<String> = texts.iter().map(|t| t.text.clone()).collect();
            let started = std::time::Instant::now();
            let out = embed_many(&model, &pipelines, &strings, BatchOptions { batch_size: spec.batch_size, progress })?;
            let seconds = started.elapsed().as_secs_f64();
            notes.push(format!(
                "the candidate ran through embcheck's own pipelines with the suite's settings (max length {}, dtype {})",
                pipelines.first().map_or(0, |p| p.max_length),
                crate::model::dtype_name(spec.dtype)
            ));
            let mut info = SourceInfo::own_pipeline(location);
            info.details.insert("model".into(), location.clone());
            Ok((out.into_iter().map(|e| e.vectors.into_iter().map(Ok).collect()).collect(), info, Some(seconds)))
        }
        Candidate::Source(config) => {
            let mut all = Vec::new();
            let mut info = SourceInfo::default();
            let started = std::time::Instant::now();
            for &k in kinds {
                let (outputs, i) = source::collect(config, k, texts)?;
                if outputs.len() != texts.len() {
                    return Err(Error::Usage(format!("{} outputs for {} texts from {}", outputs.len(), texts.len(), i.location)));
                }
                all.push(
                    outputs
                        .into_iter()
                        .map(|o| o.value.and_then(|v| source::check_kind(k, &v).map(|_| v)))
                        .collect(),
                );
                info = i;
            }
            let timed = !matches!(config.spec, source::SourceSpec::File(_));
            Ok((all, info, timed.then(|| started.elapsed().as_secs_f64())))
        }
    }
}

fn gate_pipeline(
    kind: PipelineKind,
    ids: &[String],
    base: &[Vector],
    cand: Outputs,
    retrieval: Option<&RetrievalSet>,
    mode: Mode,
    t: &Thresholds,
) -> PipelineGate {
    let n = ids.len();
    // A rejected text has no value; an empty one of the right kind scores 0 against everything, so it
    // counts against the candidate (and the rejection alone fails the gate).
    let empty = |b: &Vector| match b {
        Vector::Dense(_) => Vector::Dense(Vec::new()),
        Vector::Sparse(_) => Vector::Sparse(Vec::new()),
        Vector::Multi(_) => Vector::Multi(Vec::new()),
    };
    let mut rejections: Vec<Option<String>> = vec![None; n];
    let values: Vec<Vector> = cand
        .into_iter()
        .zip(base)
        .enumerate()
        .map(|(i, (c, b))| {
            c.unwrap_or_else(|e| {
                rejections[i] = Some(e);
                empty(b)
            })
        })
        .collect();
    let not_comparable = metrics::incomparable(&values, base);
    let k = t.k.min(n - 1);
    let scores = Scores::new(base, &values);
    let all: Vec<usize> = (0..n).collect();
    let compared = match t.neighbour_texts {
        Some(m) if m < n => sample_without_replacement(n, m, t.seed),
        _ => all.clone(),
    };
    let (top_base, top_cand) = (scores.top_k(Side::Base, &compared, &all, k, true), scores.top_k(Side::Candidate, &compared, &all, k, true));
    let mut overlap: Vec<Option<metrics::Neighbours>> = vec![None; n];
    for ((&i, b), c) in compared.iter().zip(&top_base).zip(&top_cand) {
        overlap[i] = Some(metrics::Neighbours::of(b, c));
    }
    drop((top_base, top_cand));
    let correlation = scores.spearman(n, t);
    let spearman = correlation.value;
    let names = |v: &[usize]| v.iter().map(|&j| ids[j].clone()).collect::<Vec<_>>();
    let texts: Vec<TextGate> = (0..n)
        .map(|i| TextGate {
            id: ids[i].clone(),
            drift: not_comparable.is_none().then(|| metrics::drift(&values[i], &base[i])),
            jaccard: overlap[i].as_ref().map(|o| o.jaccard),
            lost: overlap[i].as_ref().map_or_else(Vec::new, |o| names(&o.lost)),
            gained: overlap[i].as_ref().map_or_else(Vec::new, |o| names(&o.gained)),
            rejected: rejections[i].take(),
            non_finite: !values[i].is_finite(),
        })
        .collect();
    let jaccards: Vec<f64> = overlap.iter().flatten().map(|o| o.jaccard).collect();
    let m = jaccards.len() as f64;
    let jaccard_mean = jaccards.iter().sum::<f64>() / m;
    let jaccard_min = jaccards.iter().copied().fold(f64::INFINITY, f64::min);
    // A sample's mean gets a normal interval, with the finite-population correction.
    let jaccard_interval = (compared.len() < n).then(|| {
        let var = jaccards.iter().map(|j| (j - jaccard_mean).powi(2)).sum::<f64>() / (m - 1.0).max(1.0);
        let half = metrics::normal_quantile(0.5 + t.confidence / 2.0) * (var / m * (n as f64 - m) / (n as f64 - 1.0)).sqrt();
        Interval { mean: jaccard_mean, low: jaccard_mean - half, high: jaccard_mean + half }
    });
    let drift = not_comparable.is_none().then(|| summarize_drift(&texts));

    let mut checks = Vec::new();
    let rejected = texts.iter().filter(|x| x.rejected.is_some()).count();
    let non_finite = texts.iter().filter(|x| x.non_finite).count();
    checks.push(Check::at_most("texts the candidate rejected", rejected as f64, 0.0));
    checks.push(Check::at_most("texts with NaN or infinite values", non_finite as f64, 0.0));
    let retrieval = retrieval.map(|r| (r, gate_retrieval(r, ids, &scores, t)));
    if mode == Mode::Upgrade {
        // Neighbours and drift move with any other model: they are the re-index impact, not a verdict.
        let reindex = retrieval.as_ref().map(|(r, g)| upgrade::reindex(r, g, base, &values, &scores, not_comparable.as_deref(), t));
        if let Some((_, g)) = &retrieval {
            checks.extend(upgrade::checks(g, t.confidence));
        }
        let retrieval = retrieval.map(|(_, g)| g);
        return PipelineGate { pipeline: kind, k, texts, drift, not_comparable, jaccard_mean, jaccard_min, neighbours_compared: compared.len(), jaccard_interval, spearman, spearman_detail: correlation, retrieval, reindex, checks };
    }
    let retrieval = retrieval.map(|(_, g)| g);
    checks.push(Check::at_least(format!("mean Jaccard@{k} of neighbours"), jaccard_mean, t.min_jaccard_at_k));
    checks.push(Check::at_least("Spearman of pairwise similarities", spearman, t.min_spearman));
    if let Some(d) = &drift {
        if let Some(limit) = t.min_drift_cosine {
            checks.push(Check::at_least("lowest drift cosine", d.min_cosine, limit));
        }
        if let Some(limit) = t.max_drift_rel_l2 {
            checks.push(Check::at_most("largest drift relative L2", d.max_rel_l2, limit));
        }
    }
    if let Some(r) = &retrieval {
        checks.push(Check::at_most(format!("nDCG@{} drop, upper bound of the {:.0}% interval", r.k, t.confidence * 100.0), drop_bound(r.ndcg_diff), t.max_ndcg_drop));
        checks.push(Check::at_most(
            format!("recall@{} drop, upper bound of the {:.0}% interval", r.k, t.confidence * 100.0),
            drop_bound(r.recall_diff),
            t.max_recall_drop,
        ));
    }
    PipelineGate { pipeline: kind, k, texts, drift, not_comparable, jaccard_mean, jaccard_min, neighbours_compared: compared.len(), jaccard_interval, spearman, spearman_detail: correlation, retrieval, reindex: None, checks }
}

/// `m` of `0..n` drawn without replacement with `seed` (a partial Fisher–Yates shuffle), in order.
fn sample_without_replacement(n: usize, m: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut rng = metrics::SplitMix64(seed);
    for i in 0..m.min(n) {
        let j = i + rng.below(n - i);
        v.swap(i, j);
    }
    v.truncate(m);
    v.sort_unstable();
    v
}

/// Which side's scores.
#[derive(Debug, Clone, Copy)]
enum Side {
    Base,
    Candidate,
}

/// How the gate scores pairs of texts without a texts² matrix: dense vectors by blocked products, sparse
/// values through an inverted index, others (ColBERT, dense of mixed widths) pair by pair on the fly. Every
/// score and ranking is the one [`metrics::similarity_matrix`] and [`metrics::top_k`] give.
enum Scores<'a> {
    Dense { exact: [neighbours::ExactCosine<'a>; 2], unit: [neighbours::UnitRows<'a>; 2] },
    Sparse { values: [&'a [Vector]; 2] },
    Pairwise { values: [&'a [Vector]; 2] },
}

impl<'a> Scores<'a> {
    fn new(base: &'a [Vector], cand: &'a [Vector]) -> Self {
        let rows = |v: &'a [Vector]| -> Option<Vec<&'a [f32]>> { v.iter().map(|x| if let Vector::Dense(d) = x { Some(d.as_slice()) } else { None }).collect() };
        let unit = |v: &'a [Vector]| rows(v).and_then(|r| Some((neighbours::UnitRows::new(&r)?, r)));
        // The index sums in increasing id, as the lexical score does over strictly increasing ids.
        let sparse = |v: &[Vector]| v.iter().all(|x| matches!(x, Vector::Sparse(w) if w.windows(2).all(|p| p[0].0 < p[1].0)));
        match (unit(base), unit(cand)) {
            (Some((ub, rb)), Some((uc, rc))) => Scores::Dense { exact: [neighbours::ExactCosine::new(rb), neighbours::ExactCosine::new(rc)], unit: [ub, uc] },
            _ if sparse(base) && sparse(cand) => Scores::Sparse { values: [base, cand] },
            _ => Scores::Pairwise { values: [base, cand] },
        }
    }

    /// The exact f64 scores of pairs of texts on one side (symmetrized where the score is not symmetric).
    fn pairs(&self, side: Side, pairs: &[(usize, usize)]) -> Vec<f64> {
        match self {
            Scores::Dense { exact, .. } => exact[side as usize].many(pairs),
            Scores::Sparse { values } | Scores::Pairwise { values } => {
                let v = values[side as usize];
                pairs.iter().map(|&(i, j)| (score(&v[i], &v[j]) + score(&v[j], &v[i])) / 2.0).collect()
            }
        }
    }

    /// The `k` best of `cols` for each of `rows` (positions into `cols`), as [`metrics::top_k`] ranks them.
    fn top_k(&self, side: Side, rows: &[usize], cols: &[usize], k: usize, skip_self: bool) -> Vec<Vec<usize>> {
        let skip = |i: usize| if skip_self { cols.iter().position(|&j| j == i) } else { None };
        match self {
            Scores::Dense { unit, exact } => neighbours::top_k(&unit[side as usize], rows, cols, k, skip_self, &|i, j| exact[side as usize].get(i, j)),
            Scores::Sparse { values } => {
                let v = values[side as usize];
                let weights = |i: usize| if let Vector::Sparse(w) = &v[i] { w.as_slice() } else { &[] };
                let index = sparse::Inverted::new(&cols.iter().map(|&j| weights(j)).collect::<Vec<_>>());
                // Positions of the rows among the columns, found once (rows and cols are sorted or equal).
                let at: std::collections::HashMap<usize, usize> = if skip_self { cols.iter().enumerate().map(|(p, &j)| (j, p)).collect() } else { Default::default() };
                let queries: Vec<(&[(u32, f32)], Option<usize>)> = rows.iter().map(|&i| (weights(i), at.get(&i).copied())).collect();
                index.top_k_many(&queries, cols.len(), k)
            }
            Scores::Pairwise { values } => {
                use rayon::prelude::*;
                let v = values[side as usize];
                rows.par_iter()
                    .map(|&i| {
                        let row: Vec<f64> = cols.iter().map(|&j| score(&v[i], &v[j])).collect();
                        metrics::top_k(&row, k, skip(i))
                    })
                    .collect()
            }
        }
    }

    fn spearman(&self, n: usize, t: &Thresholds) -> metrics::RankCorrelation {
        metrics::pairwise_spearman(n, &|p| self.pairs(Side::Base, p), &|p| self.pairs(Side::Candidate, p), t.spearman_pairs, t.confidence, t.seed)
    }
}

/// The upper bound of a drop: minus the lower bound of candidate − baseline (+ 0.0 so no drop reads 0, not −0).
fn drop_bound(diff: Interval) -> f64 {
    -diff.low + 0.0
}


fn summarize_drift(texts: &[TextGate]) -> DriftSummary {
    // NaN sorts last (total order): it shows as the maximum relative L2 and, for cosine, as the median
    // only if most are NaN; the non-finite check fails the gate either way.
    let mut cos: Vec<f64> = texts.iter().filter_map(|t| t.drift.map(|d| d.cosine)).collect();
    let mut rel: Vec<f64> = texts.iter().filter_map(|t| t.drift.map(|d| d.rel_l2)).collect();
    cos.sort_by(f64::total_cmp);
    rel.sort_by(f64::total_cmp);
    DriftSummary {
        min_cosine: if cos.iter().any(|c| c.is_nan()) { f64::NAN } else { crate::compare::percentile(&cos, 0.0) },
        median_cosine: crate::compare::percentile(&cos, 0.5),
        median_rel_l2: crate::compare::percentile(&rel, 0.5),
        p95_rel_l2: crate::compare::percentile(&rel, 0.95),
        max_rel_l2: crate::compare::percentile(&rel, 1.0),
    }
}

fn gate_retrieval(r: &RetrievalSet, ids: &[String], scores: &Scores, t: &Thresholds) -> RetrievalGate {
    let k = t.retrieval_k.min(r.corpus.len());
    let rows: Vec<usize> = r.queries.iter().map(|(q, _)| *q).collect();
    let (top_base, top_cand) = (scores.top_k(Side::Base, &rows, &r.corpus, k, false), scores.top_k(Side::Candidate, &rows, &r.corpus, k, false));
    let queries: Vec<QueryGate> = r
        .queries
        .iter()
        .zip(top_base.iter().zip(&top_cand))
        .zip(&r.slices)
        .map(|(((q, judged), (rb, rc)), slice)| {
            QueryGate {
                id: ids[*q].clone(),
                slice: slice.clone(),
                ndcg_baseline: metrics::ndcg_at_k(rb, judged, k),
                ndcg_candidate: metrics::ndcg_at_k(rc, judged, k),
                recall_baseline: metrics::recall_at_k(rb, judged, k),
                recall_candidate: metrics::recall_at_k(rc, judged, k),
                mrr_baseline: metrics::mrr_at_k(rb, judged, k),
                mrr_candidate: metrics::mrr_at_k(rc, judged, k),
            }
        })
        .collect();
    // nDCG with seed, recall with seed + 1 (as before MRR joined them), MRR with seed + 2.
    let overall = slices::figures(&queries.iter().map(slices::per_query).collect::<Vec<_>>(), k, t, t.seed);
    RetrievalGate {
        dir: r.dir.clone(),
        k,
        ndcg_baseline: overall[0].baseline,
        ndcg_candidate: overall[0].candidate,
        ndcg_diff: overall[0].diff,
        recall_baseline: overall[1].baseline,
        recall_candidate: overall[1].candidate,
        recall_diff: overall[1].diff,
        corpus: r.corpus.len(),
        unjudged: r.unjudged,
        slice_field: t.slice_field.clone(),
        slices: slices::slices(&queries, k, t),
        overall,
        queries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(n: usize) -> (Vec<String>, Vec<Vector>) {
        let ids = (0..n).map(|i| format!("t{i}")).collect();
        let v = (0..n).map(|i| Vector::Dense(vec![1.0, i as f32, (i * i) as f32 / 7.0])).collect();
        (ids, v)
    }

    #[test]
    fn same_vectors_pass_every_check() {
        let (ids, base) = texts(6);
        let cand: Outputs = base.iter().cloned().map(Ok).collect();
        let p = gate_pipeline(PipelineKind::RawCls, &ids, &base, cand, None, Mode::Parity, &Thresholds::default());
        assert!(p.passed(), "{:?}", p.checks);
        assert_eq!(p.k, 5, "k is capped at n - 1");
        assert_eq!(p.drift.as_ref().unwrap().max_rel_l2, 0.0);
    }

    #[test]
    fn a_rejected_text_or_a_nan_fails_even_when_neighbours_agree() {
        let (ids, base) = texts(6);
        let mut cand: Outputs = base.iter().cloned().map(Ok).collect();
        cand[2] = Err("413 payload too large".into());
        let p = gate_pipeline(PipelineKind::RawCls, &ids, &base, cand, None, Mode::Parity, &Thresholds::default());
        assert!(!p.passed());
        assert_eq!(p.texts[2].rejected.as_deref(), Some("413 payload too large"));
        assert!(p.checks.iter().any(|c| c.name.starts_with("texts the candidate rejected") && !c.passed));

        let mut cand: Outputs = base.iter().cloned().map(Ok).collect();
        cand[4] = Ok(Vector::Dense(vec![f32::NAN, 0.0, 0.0]));
        let p = gate_pipeline(PipelineKind::RawCls, &ids, &base, cand, None, Mode::Parity, &Thresholds::default());
        assert!(!p.passed());
        assert!(p.texts[4].non_finite);
        assert!(p.drift.as_ref().unwrap().min_cosine.is_nan(), "a NaN is never hidden by the summary");
    }

    /// The gate's figures computed the way they were before blocked products: full f64 matrices.
    fn by_full_matrices(base: &[Vector], cand: &[Vector], r: &RetrievalSet, k: usize, rk: usize) -> (Vec<f64>, f64, Vec<(f64, f64)>) {
        let (sb, sc) = (metrics::similarity_matrix(base), metrics::similarity_matrix(cand));
        let jaccards = metrics::neighbour_overlap(&sb, &sc, k).into_iter().map(|o| o.jaccard).collect();
        let spearman = metrics::spearman(&metrics::upper_triangle(&sb), &metrics::upper_triangle(&sc));
        let rank = |s: &[Vec<f64>], q: usize| metrics::top_k(&r.corpus.iter().map(|&d| s[q][d]).collect::<Vec<_>>(), r.corpus.len(), None);
        let ndcg = r.queries.iter().map(|(q, j)| (metrics::ndcg_at_k(&rank(&sb, *q), j, rk), metrics::ndcg_at_k(&rank(&sc, *q), j, rk))).collect();
        (jaccards, spearman, ndcg)
    }

    #[test]
    fn blocked_gate_equals_the_full_matrix_gate() {
        // 1100 texts (three blocks) of width 16 from few distinct components: exact ties are common.
        let mut s = 11u64;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) % 9) as f32 - 4.0
        };
        let n = 1100;
        let base: Vec<Vector> = (0..n).map(|_| Vector::Dense((0..16).map(|_| next()).collect())).collect();
        let cand_v: Vec<Vector> = base
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Vector::Dense(d) if i % 3 == 0 => Vector::Dense(d.iter().map(|x| x + next() * 0.25).collect()),
                other => other.clone(),
            })
            .collect();
        let ids: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        let r = RetrievalSet {
            dir: PathBuf::from("synthetic"),
            queries: (0..40).map(|q| (q, vec![(q * 7 % 900, 1.0), (q * 13 % 900, 2.0)])).collect(),
            corpus: (200..n).collect(),
            unjudged: 0,
            slices: vec![None; 40],
        };
        let t = Thresholds { spearman_pairs: n * n, ..Thresholds::default() };
        let p = gate_pipeline(PipelineKind::RawCls, &ids, &base, cand_v.iter().cloned().map(Ok).collect(), Some(&r), Mode::Parity, &t);
        let (jaccards, spearman, ndcg) = by_full_matrices(&base, &cand_v, &r, 10, 10);
        assert_eq!(p.texts.iter().map(|t| t.jaccard.unwrap()).collect::<Vec<_>>(), jaccards);
        assert!(jaccards.iter().any(|&j| j < 1.0), "the candidate moves some neighbours");
        assert_eq!(p.spearman, spearman);
        assert!(!p.spearman_detail.sampled);
        let q = p.retrieval.unwrap();
        assert_eq!(q.queries.iter().map(|x| (x.ndcg_baseline, x.ndcg_candidate)).collect::<Vec<_>>(), ndcg);
        // Above the pair limit: a seeded sample whose interval holds the exact value.
        let t = Thresholds { spearman_pairs: 100_000, ..Thresholds::default() };
        let p = gate_pipeline(PipelineKind::RawCls, &ids, &base, cand_v.iter().cloned().map(Ok).collect(), None, Mode::Parity, &t);
        let c = p.spearman_detail;
        assert!(c.sampled && c.pairs == 100_000 && c.of_pairs == n * (n - 1) / 2);
        assert!(c.low <= spearman && spearman <= c.high, "{c:?} vs exact {spearman}");
        // A sample of texts: their Jaccard@k are the exact ones, the others are not reported.
        let t = Thresholds { neighbour_texts: Some(300), ..Thresholds::default() };
        let p = gate_pipeline(PipelineKind::RawCls, &ids, &base, cand_v.iter().cloned().map(Ok).collect(), None, Mode::Parity, &t);
        assert_eq!(p.neighbours_compared, 300);
        assert_eq!(p.texts.iter().filter(|t| t.jaccard.is_some()).count(), 300);
        for (t, j) in p.texts.iter().zip(&jaccards) {
            assert!(t.jaccard.is_none_or(|x| x == *j));
        }
        let i = p.jaccard_interval.unwrap();
        let full = jaccards.iter().sum::<f64>() / n as f64;
        assert!(i.low <= full && full <= i.high, "{i:?} vs {full}");
    }

    #[test]
    fn other_widths_are_not_comparable_but_still_judged() {
        let (ids, base) = texts(6);
        let cand: Outputs = base
            .iter()
            .map(|v| match v {
                Vector::Dense(d) => Ok(Vector::Dense(d.iter().chain(d).copied().collect())),
                other => Ok(other.clone()),
            })
            .collect();
        let p = gate_pipeline(PipelineKind::RawCls, &ids, &base, cand, None, Mode::Parity, &Thresholds::default());
        assert!(p.drift.is_none() && p.not_comparable.as_deref().unwrap_or("").contains("width"));
        // Doubling every vector keeps every cosine: the neighbours agree.
        assert!(p.passed(), "{:?}", p.checks);
    }
}
