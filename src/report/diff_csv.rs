//! `diff.csv`: one row per text × pipeline, every number exact.

use std::io::Write;

use super::format::{detail, exact, stage};
use crate::compare::PipelineResult;
use crate::error::{Error, Result};

/// The columns, in order. The first thirteen are a stable interface; later ones may be added to.
const HEADER: [&str; 20] = [
    "suite",
    "pipeline",
    "id",
    "cosine",
    "l2",
    "rel_l2",
    "max_abs_diff",
    "max_abs_index",
    "norm_actual",
    "norm_expected",
    "tokens_match",
    "pass",
    "diagnosis",
    "first_token_diff",
    "jaccard",
    "rows_actual",
    "rows_expected",
    "score_diff",
    "failed_checks",
    "detail",
];

/// Writes one CSV with a row per text of each of `results` to `w` (used for `diff.csv` and by
/// `embcheck diff`).
///
/// Floats are exact (they parse back to the same f64), non-finite ones as `NaN`, `inf`, `-inf`.
/// `tokens_match` is `true`, `false` or empty (no token ids); `diagnosis` is the stage keyword, empty for a
/// passing row; `first_token_diff` the first position where the token ids differ; `failed_checks` the
/// failed checks joined with `;`. Empty cells mean "does not apply".
pub fn write_csv<W: Write>(w: W, suite: &str, results: &[&PipelineResult]) -> Result<()> {
    // Keep the OS error as it is (a closed pipe must stay recognizable as one).
    let fail = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io("CSV output", io),
        other => Error::io("CSV output", std::io::Error::other(format!("{other:?}"))),
    };
    let mut out = csv::Writer::from_writer(w);
    out.write_record(HEADER).map_err(fail)?;
    for p in results {
        for r in &p.rows {
            let m = &r.metrics;
            let opt = |x: Option<f64>| x.map_or(String::new(), exact);
            let first_diff = match r.tokens {
                crate::compare::TokenMatch::Differ { position, .. } => position.to_string(),
                _ => String::new(),
            };
            let (rows_actual, rows_expected) =
                m.rows.map_or((String::new(), String::new()), |(a, e)| (a.to_string(), e.to_string()));
            out.write_record([
                suite,
                p.pipeline.name(),
                &r.id,
                &exact(m.cosine),
                &exact(m.l2),
                &exact(m.rel_l2),
                &exact(m.max_abs_diff),
                &m.max_abs_index.to_string(),
                &exact(m.norm_actual),
                &exact(m.norm_expected),
                r.tokens.as_str(),
                if r.pass() { "true" } else { "false" },
                stage(r),
                &first_diff,
                &opt(m.jaccard),
                &rows_actual,
                &rows_expected,
                &opt(r.score_diff),
                &r.failed.join(";"),
                detail(r),
            ])
            .map_err(fail)?;
        }
    }
    out.flush().map_err(|e| Error::io("CSV output", e))
}
