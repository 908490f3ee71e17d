//! The outcome of checking a suite, and the failure message `assert_passed` panics with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::compare::{more_line, PipelineResult, RowResult};
use crate::error::Error;
use crate::source::SourceInfo;

/// How many failing texts the failure message lists per pipeline.
const FAILING_LISTED: usize = 10;

/// The outcome of one suite.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteReport {
    /// The suite's name.
    pub suite: String,
    /// The suite directory.
    pub dir: PathBuf,
    /// The model as suite.toml names it.
    pub model: String,
    /// The dtype computed in.
    pub dtype: String,
    /// Where the vectors checked came from: embcheck's own pipeline, or a system under test.
    pub source: SourceInfo,
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
    /// What the reader must know to read the figures: what the system under test is expected to do (add a
    /// prompt, strip text), and what could not be diagnosed (no model at hand).
    pub notes: Vec<String>,
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

    /// Every failing text of every pipeline, in suite order (each with its [`crate::Diagnosis`]).
    pub fn failing_rows(&self) -> impl Iterator<Item = &RowResult> {
        self.pipelines.iter().flat_map(|p| p.rows.iter().filter(|r| !r.pass()))
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
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
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
            source: SourceInfo::default(),
            max_length: BTreeMap::new(),
            reference_metadata: BTreeMap::new(),
            pipelines: Vec::new(),
            skipped: None,
            changed_files: Vec::new(),
            error: Some(error.one_line()),
            notes: Vec::new(),
        }
    }
}

/// The row with the worst value of `f` (NaN counts as worst), ignoring rejected texts.
pub fn worst_row(rows: &[RowResult], f: fn(&RowResult) -> f64, highest: bool) -> Option<&RowResult> {
    rows.iter().filter(|r| !r.is_rejected()).max_by(|a, b| {
        let (x, y) = (f(a), f(b));
        let o = match (x.is_nan(), y.is_nan()) {
            (true, _) => std::cmp::Ordering::Greater,
            (_, true) => std::cmp::Ordering::Less,
            _ => x.total_cmp(&y),
        };
        if highest {
            o
        } else {
            o.reverse()
        }
    })
}

fn pipeline_failure(suite: &str, p: &PipelineResult) -> String {
    let s = &p.summary;
    let t = &p.tolerance;
    let mut out = format!(
        "\nNot equal to tolerance: suite {suite}, pipeline {} (min_cosine {}, max_rel_l2 {:e}, max_abs {:e})\n\n\
         Mismatched texts: {} / {} ({:.3}%)\n",
        p.pipeline,
        t.min_cosine,
        t.max_rel_l2,
        t.max_abs,
        s.failed,
        s.rows,
        100.0 * s.failed as f64 / s.rows.max(1) as f64,
    );
    if s.rejected > 0 {
        out.push_str(&format!("Rejected by the system under test: {}\n", s.rejected));
    }
    if let (Some(c), Some(a), Some(r)) = (
        worst_row(&p.rows, |r| r.metrics.cosine, false),
        worst_row(&p.rows, |r| r.metrics.max_abs_diff, true),
        worst_row(&p.rows, |r| r.metrics.rel_l2, true),
    ) {
        out.push_str(&format!(
            "Worst cosine: {:.9} (text {})\nMax absolute difference: {:.6e} (text {}, at {})\nMax relative L2 difference: {:.6e} (text {})\n",
            c.metrics.cosine, c.id, a.metrics.max_abs_diff, a.id, a.metrics.max_abs_index, r.metrics.rel_l2, r.id,
        ));
    }
    for r in p.rows.iter().filter(|r| !r.pass()).take(FAILING_LISTED) {
        out.push_str(&format!("  {}\n", r.failure_line()));
    }
    if let Some(more) = more_line(FAILING_LISTED, s.failed, "failing texts (SuiteReport::pipelines holds every row)") {
        out.push_str(&format!("  {more}\n"));
    }
    out
}
