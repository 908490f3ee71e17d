//! `summary.json`, for scripts.

use serde::Serialize;

use super::Totals;
use crate::error::{Error, Result};
use crate::suite::{Status, SuiteReport};

/// The document: `{"status": "error|failed|passed|skipped-only", "totals": {...}, "suites": [...]}`; a suite
/// that could not be checked has `"status": "error"` and its message in `"error"`.
///
/// JSON has no NaN or Infinity, and serde_json writes every non-finite float as `null`. So a `null` metric
/// (`cosine`, `rel_l2`, a summary's `min_cosine`, ...) means NaN or ±inf; the row's `metrics.finite`,
/// `metrics.same_shape` and `failed` say which check it broke, and `diff.csv` keeps the exact value. A
/// `null` `jaccard` or `score_diff` can also mean "does not apply" (a dense pipeline).
#[derive(Serialize)]
struct Document<'a> {
    status: &'static str,
    totals: Totals,
    suites: Vec<SuiteEntry<'a>>,
}

/// A suite with its status beside the report's own fields.
#[derive(Serialize)]
struct SuiteEntry<'a> {
    status: Status,
    #[serde(flatten)]
    report: &'a SuiteReport,
}

/// The pretty-printed document.
pub(super) fn render(suites: &[SuiteReport]) -> Result<Vec<u8>> {
    let totals = Totals::of(suites);
    let doc = Document {
        status: totals.status(),
        totals,
        suites: suites.iter().map(|s| SuiteEntry { status: s.status(), report: s }).collect(),
    };
    let mut out = serde_json::to_vec_pretty(&doc).map_err(|e| Error::Usage(format!("summary.json: {e}")))?;
    out.push(b'\n');
    Ok(out)
}
