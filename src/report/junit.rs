//! `junit.xml`, for CI test views: a testsuite per suite, a testcase per pipeline.

use std::fmt::Write;
use std::path::Path;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::format::{cosine, diagnosis, one_line, sci, stage, tokens};
use super::worst_rows;
use crate::compare::{more_line, PipelineResult};
use crate::error::{Error, Result};
use crate::suite::SuiteReport;

/// Failing texts listed in a failure's body; the rest are in `diff.csv`.
const FAILING_LISTED: usize = 200;

/// The XML. A skipped suite's testcases are marked skipped with the reason (when no pipeline ran, one
/// testcase named `all-pipelines` stands for them), never passed; a suite that could not be checked is one
/// `all-pipelines` testcase in error, with the message.
pub(super) fn render(suites: &[SuiteReport], path: &Path) -> Result<Vec<u8>> {
    let mut report = Report::new("embcheck");
    for s in suites {
        let mut ts = TestSuite::new(s.suite.as_str());
        ts.add_property(Property::new("model", s.model.as_str()));
        ts.add_property(Property::new("dtype", s.dtype.as_str()));
        if let Some(why) = &s.error {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_type("error").set_message(format!("suite could not be checked: {why}"));
            ts.add_test_case(case(&s.suite, "all-pipelines", status));
        } else if let Some(why) = &s.skipped {
            let mut names: Vec<&str> = s.pipelines.iter().map(|p| p.pipeline.name()).collect();
            if names.is_empty() {
                names.push("all-pipelines");
            }
            for name in names {
                let mut status = TestCaseStatus::skipped();
                status.set_type("skipped").set_message(format!("suite skipped, not verified: {why}"));
                ts.add_test_case(case(&s.suite, name, status));
            }
        } else {
            for p in &s.pipelines {
                let mut c = case(&s.suite, p.pipeline.name(), pipeline_status(p));
                if p.passed() {
                    let sm = &p.summary;
                    c.set_system_out(format!(
                        "{} texts within tolerance; min cosine {}; max rel L2 {}; max abs {}",
                        sm.rows,
                        cosine(sm.min_cosine),
                        sci(sm.max_rel_l2),
                        sci(sm.max_abs_diff)
                    ));
                }
                ts.add_test_case(c);
            }
        }
        report.add_test_suite(ts);
    }
    let mut out = Vec::new();
    report.serialize(&mut out).map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    Ok(out)
}

fn case(suite: &str, name: &str, status: TestCaseStatus) -> TestCase {
    let mut c = TestCase::new(name, status);
    c.set_classname(suite);
    c
}

fn pipeline_status(p: &PipelineResult) -> TestCaseStatus {
    let sm = &p.summary;
    if p.passed() {
        return TestCaseStatus::success();
    }
    let failing = worst_rows(p, FAILING_LISTED, 0);
    let worst = failing.first().map_or(String::new(), |r| format!("; worst text {}: {}", one_line(&r.id), stage(r)));
    let mut body = String::new();
    for r in &failing {
        let m = &r.metrics;
        let _ = writeln!(
            body,
            "{}: cosine {}, rel L2 {}, max abs {} (at {}), tokens {}, failed [{}]; {}",
            one_line(&r.id),
            cosine(m.cosine),
            sci(m.rel_l2),
            sci(m.max_abs_diff),
            m.max_abs_index,
            tokens(&r.tokens),
            r.failed.join(", "),
            diagnosis(r),
        );
    }
    if let Some(more) = more_line(failing.len(), sm.failed, "failing texts (every text is in diff.csv)") {
        let _ = writeln!(body, "{more}");
    }
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
    status
        .set_type("out-of-tolerance")
        .set_message(format!(
            "{}/{} texts out of tolerance; min cosine {}; max rel L2 {}; max abs {}{worst}",
            sm.failed,
            sm.rows,
            cosine(sm.min_cosine),
            sci(sm.max_rel_l2),
            sci(sm.max_abs_diff)
        ))
        .set_description(body);
    status
}
