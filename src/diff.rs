//! Two vectors files (`.safetensors`, `.npy`, `.jsonl`) compared with `check`'s metrics and tolerances: what
//! `embcheck diff` runs, for a user's own tests as well.
//!
//! ```no_run
//! use embcheck::diff::{diff_files, DiffOptions};
//!
//! let result = diff_files("mine.jsonl".as_ref(), "theirs.safetensors".as_ref(), &DiffOptions::default())?;
//! assert!(result.passed(), "{} texts out of tolerance", result.summary.failed);
//! # Ok::<(), embcheck::Error>(())
//! ```

use std::path::Path;

use candle_core::DType;

use crate::compare::{compare_pipeline, NoAlternatives, PipelineResult, Side, Tolerance, ToleranceOverride};
use crate::error::{Error, Result};
use crate::fixture::TextItem;
use crate::pipeline::{OutputKind, PipelineKind, Vector};
use crate::source::{file, Split};

/// How to read and judge the two files.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// Read the tensors named after this pipeline (a suite's reference file), and report under its name.
    pub pipeline: Option<PipelineKind>,
    /// The dtype whose default tolerances apply.
    pub dtype: DType,
    /// Tolerances given explicitly (validated here).
    pub tolerance: ToleranceOverride,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions { pipeline: None, dtype: DType::F32, tolerance: ToleranceOverride::default() }
    }
}

/// Compares `actual` with `expected`: rows matched by id when both files name them, else by order (then the
/// counts must agree). Values of different kinds or widths, and an error row in `expected`, are input errors.
pub fn diff_files(actual: &Path, expected: &Path, opts: &DiffOptions) -> Result<PipelineResult> {
    let pipeline = opts.pipeline;
    let a = file::read(actual, pipeline)?;
    let e = file::read(expected, pipeline)?;
    if a.kind != e.kind {
        return Err(Error::input(actual, format!("holds {:?} values, {} holds {:?} values", a.kind, expected.display(), e.kind)));
    }
    let (ids, a_rows) = match (&a.ids, &e.ids) {
        (Some(_), Some(e_ids)) => {
            let texts: Vec<TextItem> = e_ids.iter().map(|id| TextItem { id: id.clone(), text: String::new() }).collect();
            (e_ids.clone(), file::read_matched(actual, pipeline.unwrap_or(label(a.kind)), &texts)?)
        }
        _ => {
            if a.rows.len() != e.rows.len() {
                return Err(Error::input(actual, format!("has {} rows, {} has {}", a.rows.len(), expected.display(), e.rows.len())));
            }
            let ids = e.ids.clone().or(a.ids.clone()).unwrap_or_else(|| (0..e.rows.len()).map(|i| format!("t{i:04}")).collect());
            (ids, a.rows)
        }
    };
    let (a_split, e_split) = (Split::of(&a_rows), Split::of(&e.rows));
    if let Some((i, m)) = e_split.rejected.iter().enumerate().find_map(|(i, m)| m.as_ref().map(|m| (i, m))) {
        return Err(Error::input(expected, format!("row {i} ({}) is an error, not a value: {m}", ids[i])));
    }
    if a.kind == OutputKind::Dense && Vector::widths(&a_split.vectors) != Vector::widths(&e_split.vectors) {
        return Err(Error::input(
            actual,
            format!(
                "vectors of width {:?}, {} has width {:?}: the dimensions differ",
                Vector::widths(&a_split.vectors),
                expected.display(),
                Vector::widths(&e_split.vectors)
            ),
        ));
    }
    crate::fixture::suite::validate_tolerance(&opts.tolerance).map_err(|m| Error::Usage(format!("--{}", m.replace('_', "-"))))?;
    let tol = Tolerance::default_for(opts.dtype, a.kind).with(&opts.tolerance);
    compare_pipeline(
        pipeline.unwrap_or(label(a.kind)),
        &ids,
        Side { vectors: &a_split.vectors, tokens: a_split.tokens.as_deref(), rejected: Some(&a_split.rejected) },
        Side::new(&e_split.vectors, e_split.tokens.as_deref()),
        tol,
        &mut NoAlternatives,
    )
}

/// The pipeline a file's values are reported under when no pipeline is given.
fn label(kind: OutputKind) -> PipelineKind {
    match kind {
        OutputKind::Dense => PipelineKind::NormalizedCls,
        OutputKind::Sparse => PipelineKind::M3Sparse,
        OutputKind::Multi => PipelineKind::M3Colbert,
    }
}
