//! The gate's reports, written under one directory: `gate.csv` (one row per pipeline × text: drift,
//! Jaccard@k, the neighbours lost and gained, a query's nDCG@k and recall@k on both sides), `gate.md`
//! (verdict, checks, the texts whose neighbours moved most), `gate.json` (everything), `junit.xml` (a
//! testcase per pipeline) and `gate.html` (one self-contained page).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::{Check, GateReport, PipelineGate};
use crate::error::{Error, Result};

/// Texts listed as "moved most" per pipeline in gate.md and the HTML page.
const WORST_LISTED: usize = 15;

/// Writes every gate report under `dir`; returns the paths written.
pub fn write_all(dir: &Path, report: &GateReport) -> Result<Vec<PathBuf>> {
    let files: [(&str, Vec<u8>); 5] = [
        ("gate.csv", csv(report, &dir.join("gate.csv"))?),
        ("gate.md", markdown(report).into_bytes()),
        ("gate.json", serde_json::to_vec_pretty(report).map_err(|e| Error::io(dir.join("gate.json"), std::io::Error::other(e)))?),
        ("junit.xml", junit(report, &dir.join("junit.xml"))?),
        ("gate.html", html(report).into_bytes()),
    ];
    let mut written = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(name);
        crate::atomic::write(&path, &bytes)?;
        written.push(path);
    }
    Ok(written)
}

fn num(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x == x.trunc() && x.abs() < 1e15 {
        // Counts and exact 0 / 1 read as such ("+ 0.0" turns −0 into 0).
        format!("{}", x + 0.0)
    } else {
        format!("{x:.6}")
    }
}

fn opt(x: Option<f64>) -> String {
    x.map_or(String::new(), |v| format!("{v}"))
}

/// One row per pipeline × text, every number at full precision.
pub fn csv(r: &GateReport, path: &Path) -> Result<Vec<u8>> {
    let err = |e: csv::Error| Error::io(path, std::io::Error::other(e));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "suite",
        "pipeline",
        "id",
        "drift_cosine",
        "drift_rel_l2",
        "jaccard_at_k",
        "k",
        "neighbours_lost",
        "neighbours_gained",
        "ndcg_baseline",
        "ndcg_candidate",
        "recall_baseline",
        "recall_candidate",
        "rejected",
        "non_finite",
    ])
    .map_err(err)?;
    for p in &r.pipelines {
        // By id: a linear search per text would be texts × queries at corpus scale.
        let by_id: std::collections::HashMap<&str, &super::QueryGate> =
            p.retrieval.iter().flat_map(|x| x.queries.iter().map(|q| (q.id.as_str(), q))).collect();
        for t in &p.texts {
            let q = by_id.get(t.id.as_str()).copied();
            w.write_record([
                r.suite.clone(),
                p.pipeline.name().to_string(),
                t.id.clone(),
                opt(t.drift.map(|d| d.cosine)),
                opt(t.drift.map(|d| d.rel_l2)),
                opt(t.jaccard),
                p.k.to_string(),
                t.lost.join(" "),
                t.gained.join(" "),
                opt(q.map(|q| q.ndcg_baseline)),
                opt(q.map(|q| q.ndcg_candidate)),
                opt(q.map(|q| q.recall_baseline)),
                opt(q.map(|q| q.recall_candidate)),
                t.rejected.clone().unwrap_or_default(),
                t.non_finite.to_string(),
            ])
            .map_err(err)?;
        }
    }
    w.into_inner().map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
}

fn verdict(passed: bool) -> &'static str {
    if passed {
        "PASS"
    } else {
        "FAIL"
    }
}

fn check_line(c: &Check) -> String {
    format!("{} {} = {} (limit {} {})", verdict(c.passed), c.name, num(c.value), c.op, c.limit)
}

/// The texts whose neighbours moved most (lowest Jaccard@k first, ties in suite order).
fn worst(p: &PipelineGate) -> Vec<&super::TextGate> {
    let mut v: Vec<&super::TextGate> = p.texts.iter().filter(|t| t.jaccard.is_some_and(|j| j < 1.0 || j.is_nan())).collect();
    v.sort_by(|a, b| a.jaccard.unwrap_or(1.0).total_cmp(&b.jaccard.unwrap_or(1.0)));
    v.truncate(WORST_LISTED);
    v
}

/// How Spearman was computed, in one sentence.
fn spearman_line(p: &PipelineGate, level: f64) -> String {
    let c = &p.spearman_detail;
    if c.sampled {
        format!(
            "Spearman {} on a seeded sample of {} of the {} pairs, {:.0}% interval [{}, {}]",
            num(c.value),
            c.pairs,
            c.of_pairs,
            level * 100.0,
            num(c.low),
            num(c.high)
        )
    } else {
        format!("Spearman {} over all {} pairs (exact)", num(c.value), c.pairs)
    }
}

/// A terminal summary, a few lines per pipeline.
pub fn terminal(r: &GateReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "GATE {}: candidate {} {}", r.suite, r.candidate.kind, r.candidate.location);
    for n in &r.notes {
        let _ = writeln!(s, "NOTE {}: {n}", r.suite);
    }
    for p in &r.pipelines {
        let _ = writeln!(s, "{} {} {}", verdict(p.passed()), r.suite, p.pipeline);
        for c in &p.checks {
            let _ = writeln!(s, "    {}", check_line(c));
        }
        if p.spearman_detail.sampled {
            let _ = writeln!(s, "    {}", spearman_line(p, r.thresholds.confidence));
        }
        if let Some(d) = &p.drift {
            let _ = writeln!(s, "    drift: min cosine {}, median rel L2 {:.3e}, max rel L2 {:.3e}", num(d.min_cosine), d.median_rel_l2, d.max_rel_l2);
        }
        if let Some(why) = &p.not_comparable {
            let _ = writeln!(s, "    drift not measured: {why}");
        }
        for t in worst(p).iter().take(5) {
            let _ = writeln!(s, "    {}: Jaccard@{} {}, lost [{}], gained [{}]", t.id, p.k, num(t.jaccard.unwrap_or(f64::NAN)), t.lost.join(", "), t.gained.join(", "));
        }
    }
    s
}

/// gate.md.
pub fn markdown(r: &GateReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# embcheck gate: {} — {}\n", r.suite, verdict(r.passed()));
    let _ = writeln!(s, "- baseline: the suite's Python references (model `{}`)", r.baseline_model);
    let _ = writeln!(s, "- candidate: {} `{}`", r.candidate.kind, r.candidate.location);
    for (k, v) in &r.candidate.details {
        let _ = writeln!(s, "  - {k}: {v}");
    }
    for n in &r.notes {
        let _ = writeln!(s, "- note: {n}");
    }
    for p in &r.pipelines {
        let _ = writeln!(s, "\n## {} — {}\n", p.pipeline, verdict(p.passed()));
        let _ = writeln!(s, "| check | value | limit | |\n|---|---|---|---|");
        for c in &p.checks {
            let _ = writeln!(s, "| {} | {} | {} {} | {} |", c.name, num(c.value), c.op, c.limit, verdict(c.passed));
        }
        let _ = writeln!(s, "\nNeighbours: mean Jaccard@{} {}, lowest {}; {} of {} texts kept all their neighbours.", p.k, num(p.jaccard_mean), num(p.jaccard_min), p.texts.iter().filter(|t| t.jaccard.is_some_and(|j| j >= 1.0)).count(), p.neighbours_compared);
        if let Some(i) = &p.jaccard_interval {
            let _ = writeln!(s, "\nNeighbours compared for a seeded sample of {} of {} texts; {:.0}% interval of the mean Jaccard@{}: [{}, {}].", p.neighbours_compared, p.texts.len(), r.thresholds.confidence * 100.0, p.k, num(i.low), num(i.high));
        }
        let _ = writeln!(s, "\n{}.", spearman_line(p, r.thresholds.confidence));
        match (&p.drift, &p.not_comparable) {
            (Some(d), _) => {
                let _ = writeln!(
                    s,
                    "\nDrift per text: cosine min {}, median {}; relative L2 median {:.3e}, p95 {:.3e}, max {:.3e}.",
                    num(d.min_cosine),
                    num(d.median_cosine),
                    d.median_rel_l2,
                    d.p95_rel_l2,
                    d.max_rel_l2
                );
            }
            (None, Some(why)) => {
                let _ = writeln!(s, "\nDrift not measured: the spaces do not compare ({why}); agreement and quality still do.");
            }
            _ => {}
        }
        if let Some(q) = &p.retrieval {
            let _ = writeln!(s, "\nRetrieval ({} queries, {} passages, `{}`):\n", q.queries.len(), q.corpus, q.dir.display());
            let _ = writeln!(s, "| metric | baseline | candidate | difference | {:.0}% interval |\n|---|---|---|---|---|", r.thresholds.confidence * 100.0);
            let _ = writeln!(s, "| nDCG@{} | {} | {} | {} | [{}, {}] |", q.k, num(q.ndcg_baseline), num(q.ndcg_candidate), num(q.ndcg_diff.mean), num(q.ndcg_diff.low), num(q.ndcg_diff.high));
            let _ = writeln!(s, "| recall@{} | {} | {} | {} | [{}, {}] |", q.k, num(q.recall_baseline), num(q.recall_candidate), num(q.recall_diff.mean), num(q.recall_diff.low), num(q.recall_diff.high));
        }
        let w = worst(p);
        if !w.is_empty() {
            let _ = writeln!(s, "\nTexts whose neighbours moved most (all in gate.csv):\n\n| text | Jaccard@{} | lost | gained |\n|---|---|---|---|", p.k);
            for t in w {
                let _ = writeln!(s, "| {} | {} | {} | {} |", md_cell(&t.id), num(t.jaccard.unwrap_or(f64::NAN)), md_cell(&t.lost.join(", ")), md_cell(&t.gained.join(", ")));
            }
        }
    }
    s
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn junit(r: &GateReport, path: &Path) -> Result<Vec<u8>> {
    let mut report = Report::new("embcheck-gate");
    let mut ts = TestSuite::new(format!("gate {}", r.suite));
    ts.add_property(Property::new("baseline", r.baseline_model.as_str()));
    ts.add_property(Property::new("candidate", r.candidate.location.as_str()));
    for p in &r.pipelines {
        let body: String = p.checks.iter().map(|c| check_line(c) + "\n").collect();
        let status = if p.passed() {
            TestCaseStatus::success()
        } else {
            let failed: Vec<String> = p.checks.iter().filter(|c| !c.passed).map(check_line).collect();
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
            st.set_type("gate").set_message(failed.join("; ")).set_description(body.clone());
            st
        };
        let mut c = TestCase::new(p.pipeline.name(), status);
        c.set_classname(format!("gate.{}", r.suite));
        if p.passed() {
            c.set_system_out(body);
        }
        ts.add_test_case(c);
    }
    report.add_test_suite(ts);
    let mut out = Vec::new();
    report.serialize(&mut out).map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    Ok(out)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A bar per bucket of Jaccard@k (0–0.1, …, 0.9–1, and exactly 1), as inline SVG.
fn jaccard_histogram(p: &PipelineGate) -> String {
    let mut counts = [0usize; 11];
    for j in p.texts.iter().filter_map(|t| t.jaccard) {
        let b = if j >= 1.0 { 10 } else if j.is_nan() { 0 } else { ((j * 10.0) as usize).min(9) };
        counts[b] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1);
    let mut svg = String::from("<svg width=\"460\" height=\"140\" role=\"img\" aria-label=\"Jaccard histogram\">");
    for (i, &c) in counts.iter().enumerate() {
        let h = 100.0 * c as f64 / max as f64;
        let label = if i == 10 { "1".to_string() } else { format!("{:.1}", i as f64 / 10.0) };
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"{y:.1}\" width=\"34\" height=\"{h:.1}\" fill=\"#4a7\"><title>{label}: {c}</title></rect><text x=\"{x}\" y=\"130\" font-size=\"10\">{label}</text><text x=\"{x}\" y=\"{ty:.1}\" font-size=\"10\">{c}</text>",
            x = 5 + i * 41,
            y = 110.0 - h,
            ty = 107.0 - h,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// gate.html: one self-contained page.
pub fn html(r: &GateReport) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>embcheck gate {}</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px}}.FAIL{{color:#b00}}.PASS{{color:#070}}</style></head><body>",
        esc(&r.suite)
    );
    let v = verdict(r.passed());
    let _ = write!(s, "<h1>embcheck gate: {} — <span class=\"{v}\">{v}</span></h1>", esc(&r.suite));
    let _ = write!(s, "<p>baseline: the suite's Python references (model <code>{}</code>); candidate: {} <code>{}</code></p>", esc(&r.baseline_model), esc(&r.candidate.kind), esc(&r.candidate.location));
    for n in &r.notes {
        let _ = write!(s, "<p>note: {}</p>", esc(n));
    }
    for p in &r.pipelines {
        let v = verdict(p.passed());
        let _ = write!(s, "<h2>{} — <span class=\"{v}\">{v}</span></h2><table><tr><th>check</th><th>value</th><th>limit</th><th></th></tr>", p.pipeline);
        for c in &p.checks {
            let v = verdict(c.passed);
            let _ = write!(s, "<tr><td>{}</td><td>{}</td><td>{} {}</td><td class=\"{v}\">{v}</td></tr>", esc(&c.name), num(c.value), esc(c.op), c.limit);
        }
        s.push_str("</table>");
        let _ = write!(s, "<h3>Jaccard@{} of each text's neighbours</h3>{}", p.k, jaccard_histogram(p));
        let _ = write!(s, "<p>{}</p>", esc(&spearman_line(p, r.thresholds.confidence)));
        if let Some(d) = &p.drift {
            let _ = write!(s, "<p>Drift: cosine min {}, median {}; relative L2 median {:.3e}, p95 {:.3e}, max {:.3e}</p>", num(d.min_cosine), num(d.median_cosine), d.median_rel_l2, d.p95_rel_l2, d.max_rel_l2);
        } else if let Some(why) = &p.not_comparable {
            let _ = write!(s, "<p>Drift not measured: {}</p>", esc(why));
        }
        if let Some(q) = &p.retrieval {
            let _ = write!(
                s,
                "<p>Retrieval ({} queries, {} passages): nDCG@{k} {} → {} (difference {}, interval [{}, {}]); recall@{k} {} → {} (difference {}, interval [{}, {}])</p>",
                q.queries.len(),
                q.corpus,
                num(q.ndcg_baseline),
                num(q.ndcg_candidate),
                num(q.ndcg_diff.mean),
                num(q.ndcg_diff.low),
                num(q.ndcg_diff.high),
                num(q.recall_baseline),
                num(q.recall_candidate),
                num(q.recall_diff.mean),
                num(q.recall_diff.low),
                num(q.recall_diff.high),
                k = q.k
            );
        }
        let w = worst(p);
        if !w.is_empty() {
            let _ = write!(s, "<h3>Texts whose neighbours moved most</h3><table><tr><th>text</th><th>Jaccard@{}</th><th>lost</th><th>gained</th></tr>", p.k);
            for t in w {
                let _ = write!(s, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&t.id), num(t.jaccard.unwrap_or(f64::NAN)), esc(&t.lost.join(", ")), esc(&t.gained.join(", ")));
            }
            s.push_str("</table>");
        }
    }
    s.push_str("</body></html>\n");
    s
}
