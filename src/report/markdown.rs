//! `summary.md`, for people and for GitHub's job summary.

use std::fmt::Write;

use super::format::{cosine, diagnosis, one_line, percent, sci, stage, tokens, tolerance};
use super::{worst_by, worst_rows, Totals};
use crate::compare::{more_line, PipelineResult, RowResult};
use crate::suite::{Status, SuiteReport};

/// Failing texts listed per pipeline (all of them are in `diff.csv`).
const FAILING_SHOWN: usize = 10;
/// Worst texts listed for a passing pipeline.
const PASSING_SHOWN: usize = 5;

/// The Markdown summary of all suites (also appended to `$GITHUB_STEP_SUMMARY` by the CLI): a status line
/// per suite × pipeline, the totals, then each suite's section.
pub fn summary(suites: &[SuiteReport]) -> String {
    let t = Totals::of(suites);
    let mut out = String::new();
    let headline = match t.status() {
        "error" => "⛔ ERROR (a suite could not be checked)",
        "failed" => "❌ FAILED",
        "passed" => "✅ passed",
        _ => "⏭ nothing verified (every suite SKIPPED)",
    };
    let _ = writeln!(out, "# embcheck: {headline}\n");
    for s in suites {
        status_lines(&mut out, s);
    }
    let _ = writeln!(
        out,
        "\n**Totals:** suites {} passed, {} failed, {} skipped, {} errors · pipelines {} failed of {} · texts {} failed of {}\n",
        t.suites_passed, t.suites_failed, t.suites_skipped, t.suites_errored, t.pipelines_failed, t.pipelines, t.rows_failed, t.rows
    );
    for s in suites {
        section(&mut out, s, 2);
    }
    out
}

/// `<suite>/summary.md`: the suite's section on its own.
pub(super) fn suite_page(s: &SuiteReport) -> String {
    let mut out = String::new();
    section(&mut out, s, 1);
    out
}

fn status_lines(out: &mut String, s: &SuiteReport) {
    let name = md(&s.suite);
    if let Some(why) = &s.error {
        let _ = writeln!(out, "- ⛔ **ERROR** {name}: {}", md(why));
        return;
    }
    if let Some(why) = &s.skipped {
        let _ = writeln!(out, "- ⏭ **SKIPPED** {name}: {}", md(why));
        return;
    }
    for p in &s.pipelines {
        let sm = &p.summary;
        let figures = format!("min cosine {}, max rel L2 {}", cosine(sm.min_cosine), sci(sm.max_rel_l2));
        if p.passed() {
            let _ = writeln!(out, "- ✅ pass {name} / {}: {} texts, {figures}", p.pipeline, sm.rows);
        } else {
            let worst = worst_rows(p, 1, 0);
            let worst = worst.first().map_or(String::new(), |r| format!(" · worst {} ({})", md(&r.id), stage(r)));
            let _ = writeln!(
                out,
                "- ❌ **FAIL** {name} / {}: **{} / {}** texts out of tolerance, {figures}{worst}",
                p.pipeline, sm.failed, sm.rows
            );
        }
    }
}

/// A suite's section with its heading at `level`.
fn section(out: &mut String, s: &SuiteReport, level: usize) {
    let h = "#".repeat(level);
    let (icon, word) = match s.status() {
        Status::Passed => ("✅", "passed"),
        Status::Failed => ("❌", "FAILED"),
        Status::Skipped => ("⏭", "SKIPPED"),
        Status::Error => ("⛔", "ERROR"),
    };
    let _ = writeln!(out, "{h} {icon} {} — {word}\n", md(&s.suite));
    if let Some(why) = &s.error {
        let _ = writeln!(out, "> **⛔ ERROR — this suite could not be checked, it did not pass.**  \n> {}\n", md(why));
        return;
    }
    if let Some(why) = &s.skipped {
        let _ = writeln!(out, "> **⚠️ SKIPPED — this suite was not verified, it did not pass.**  \n> {}\n", md(why));
    }
    let mut facts = format!("model {} · dtype {}", md(&s.model), md(&s.dtype));
    if !s.max_length.is_empty() {
        let lengths: Vec<String> = s.max_length.iter().map(|(p, n)| format!("{} {n}", md(p))).collect();
        let _ = write!(facts, " · max length {}", lengths.join(", "));
    }
    let _ = writeln!(out, "{facts}\n");
    for change in &s.changed_files {
        let _ = writeln!(out, "> ⚠️ model file changed since the reference was made: {}\n", md(change));
    }
    if s.source.is_external() {
        let details: Vec<String> = s.source.details.iter().map(|(k, v)| format!("{}={}", md(k), md(v))).collect();
        let _ = writeln!(out, "System under test: {} `{}` {}\n", md(&s.source.kind), s.source.location.replace('`', "'"), details.join(" "));
    }
    for n in &s.notes {
        let _ = writeln!(out, "> Note: {}\n", md(n));
    }
    if !s.reference_metadata.is_empty() {
        let _ = writeln!(out, "<details><summary>Reference metadata</summary>\n\n| key | value |\n|---|---|");
        for (k, v) in &s.reference_metadata {
            let _ = writeln!(out, "| {} | {} |", md(k), md(v));
        }
        let _ = writeln!(out, "\n</details>\n");
    }
    if s.pipelines.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "| pipeline | result | texts | failed | min cosine | max rel L2 | p50 rel L2 | p99 rel L2 | max abs diff | token mismatches | tolerance |\n\
         |---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|"
    );
    for p in &s.pipelines {
        let sm = &p.summary;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.pipeline,
            if p.passed() { "✅ pass" } else { "❌ **FAIL**" },
            sm.rows,
            sm.failed,
            cosine(sm.min_cosine),
            sci(sm.max_rel_l2),
            sci(sm.p50_rel_l2),
            sci(sm.p99_rel_l2),
            sci(sm.max_abs_diff),
            sm.token_mismatches,
            tolerance(&p.tolerance, p.pipeline.output()),
        );
    }
    let _ = writeln!(out);
    for p in &s.pipelines {
        pipeline_detail(out, p, &"#".repeat(level + 1));
    }
}

fn pipeline_detail(out: &mut String, p: &PipelineResult, h: &str) {
    if p.rows.is_empty() {
        return;
    }
    let sm = &p.summary;
    let failing = !p.passed();
    let _ = writeln!(out, "{h} {} {}\n", if failing { "❌" } else { "✅" }, p.pipeline);
    if failing {
        let _ = writeln!(out, "```text\n{}```\n", allclose_message(p));
    }
    let rows = worst_rows(p, FAILING_SHOWN, PASSING_SHOWN);
    let shown = rows.len();
    let what = if failing {
        format!("Failing texts, worst first ({} of {}; every text is in diff.csv)", rows.len(), sm.failed)
    } else {
        format!("Largest relative L2 ({} of {} texts, all within tolerance)", rows.len(), sm.rows)
    };
    let _ = writeln!(
        out,
        "{what}:\n\n| id | cosine | rel L2 | max abs diff | tokens | failed checks | diagnosis |\n\
         |---|--:|--:|--:|---|---|---|"
    );
    for r in rows {
        let m = &r.metrics;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            md(&r.id),
            cosine(m.cosine),
            sci(m.rel_l2),
            sci(m.max_abs_diff),
            md(&tokens(&r.tokens)),
            r.failed.join(", "),
            md(&diagnosis(r)),
        );
    }
    if failing {
        if let Some(more) = more_line(shown, sm.failed, "failing texts (every text is in diff.csv)") {
            let _ = writeln!(out, "\n{more}");
        }
    }
    let _ = writeln!(out);
}

/// The failure in the words of numpy's `assert_allclose`, with texts for elements.
pub(super) fn allclose_message(p: &PipelineResult) -> String {
    let sm = &p.summary;
    // The worst text by `f`; when its value is NaN, also the worst of the texts that have a number, which
    // says how far the rest drifted.
    let extreme = |f: fn(&RowResult) -> f64, lowest: bool, show: fn(f64) -> String, component: bool| {
        let describe = |r: &RowResult| {
            let at = if component { format!(", component {}", r.metrics.max_abs_index) } else { String::new() };
            format!("{} (text {}{at})", show(f(r)), one_line(&r.id))
        };
        let Some(worst) = worst_by(&p.rows, f, lowest) else { return "none".to_string() };
        let mut s = describe(worst);
        if f(worst).is_nan() {
            if let Some(r) = worst_by(p.rows.iter().filter(|r| !f(r).is_nan()), f, lowest) {
                s.push_str(&format!("; among texts without NaN: {}", describe(r)));
            }
        }
        s
    };
    let mut s = format!("Not equal to tolerance {}\n\n", tolerance(&p.tolerance, p.pipeline.output()));
    let _ = writeln!(s, "Mismatched elements: {} / {} ({}%)", sm.failed, sm.rows, percent(sm.failed, sm.rows));
    let _ = writeln!(s, "Max absolute difference: {}", extreme(|r| r.metrics.max_abs_diff, false, sci, true));
    let _ = writeln!(s, "Max relative difference (L2): {}", extreme(|r| r.metrics.rel_l2, false, sci, false));
    let _ = writeln!(s, "Min cosine: {}", extreme(|r| r.metrics.cosine, true, cosine, false));
    if sm.token_mismatches > 0 {
        let _ = writeln!(s, "Token mismatches: {} / {}", sm.token_mismatches, sm.rows);
    }
    s
}

/// Text made inert in Markdown (and in a table cell): the characters that start markup are escaped, line
/// breaks become spaces. The gate's Markdown uses it too.
pub(super) fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in one_line(s).chars() {
        if "\\`*_[]<>|~#&$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_in_ids_is_escaped() {
        assert_eq!(super::md("a|b <i>x_y</i>\n"), r"a\|b \<i\>x\_y\</i\> ");
    }
}
