//! The gate's reports, written under one directory: `gate.csv` (one row per pipeline × text: drift,
//! Jaccard@k, the neighbours lost and gained, a query's nDCG@k and recall@k on both sides), `gate.md`
//! (verdict, checks, the texts whose neighbours moved most), `gate.json` (everything), `junit.xml` (a
//! testcase per pipeline) and `gate.html` (one self-contained page).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::html::{badge, esc, head};
use super::markdown::md;
use crate::gate::slices::MetricDiff;
use crate::gate::{Check, GateReport, Mode, PipelineGate, RetrievalGate, TextGate, Verdict};
use crate::error::{Error, Result};

/// Texts listed as "moved most" per pipeline in gate.md and the HTML page.
const WORST_LISTED: usize = 15;

/// Writes every gate report under `dir`; returns the paths written.
pub fn write_all(dir: &Path, report: &GateReport) -> Result<Vec<PathBuf>> {
    let files: [(&str, Vec<u8>); 6] = [
        ("gate.csv", csv(report, &dir.join("gate.csv"))?),
        ("gate.md", markdown(report).into_bytes()),
        ("gate.json", serde_json::to_vec_pretty(report).map_err(|e| Error::io(dir.join("gate.json"), std::io::Error::other(e)))?),
        ("junit.xml", junit(report, &dir.join("junit.xml"))?),
        ("gate.html", html(report).into_bytes()),
        ("index.html", index(report).into_bytes()),
    ];
    super::write_named(dir, files.into())
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
        "slice",
        "mrr_baseline",
        "mrr_candidate",
    ])
    .map_err(err)?;
    for p in &r.pipelines {
        // By id: a linear search per text would be texts × queries at corpus scale.
        let by_id: std::collections::HashMap<&str, &crate::gate::QueryGate> =
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
                q.and_then(|q| q.slice.clone()).unwrap_or_default(),
                opt(q.map(|q| q.mrr_baseline)),
                opt(q.map(|q| q.mrr_candidate)),
            ])
            .map_err(err)?;
        }
    }
    w.into_inner().map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
}

fn check_line(c: &Check) -> String {
    let mut line = format!("{} {} = {} (limit {} {})", c.verdict().word(), c.name, num(c.value), c.op, c.limit);
    if let Some(n) = &c.note {
        let _ = write!(line, ": {n}");
    }
    line
}

/// What a check's note is about: its name up to the metric (`lang=de: nDCG@10 drop`).
fn scope(c: &Check) -> &str {
    c.name.split(", upper bound").next().unwrap_or(&c.name)
}

/// A verdict's badge: PASS, FAIL, or INCONCLUSIVE in the colour of a skipped check.
fn vbadge(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => badge(true),
        Verdict::Fail => badge(false),
        Verdict::Inconclusive => r#"<span class="badge skip">INCONCLUSIVE</span>"#,
        Verdict::Unresolved => r#"<span class="badge skip">NOT RESOLVED</span>"#,
    }
}

/// The question, in one line for every report.
fn mode_line(r: &GateReport) -> String {
    let what = match r.mode.mode {
        Mode::Parity => "parity — is this the baseline's model served another way? Drift and neighbour agreement gate",
        Mode::Upgrade => "upgrade — is this other model at least as good? Retrieval quality gates (non-inferiority); neighbours and drift are the re-index impact, not gated",
    };
    format!("question: {what}. Why {}: {}", r.mode.mode.name(), r.mode.reason)
}

/// Rows of a metric table: (scope, metric, baseline, candidate, drop, drop interval low, high, status).
fn metric_rows(q: &RetrievalGate) -> Vec<[String; 8]> {
    let row = |scope: &str, m: &MetricDiff, status: String| {
        let (mean, low, high) = drop_of(&m.diff);
        [scope.to_string(), m.metric.clone(), num(m.baseline), num(m.candidate), num(mean), num(low), num(high), status]
    };
    let mut out: Vec<[String; 8]> = q.overall.iter().map(|m| row(&format!("all ({})", q.queries.len()), m, String::new())).collect();
    for s in &q.slices {
        let status = if s.gated { String::new() } else { format!("reported, not gated (< {} queries)", s.min_queries) };
        out.extend(s.metrics.iter().map(|m| row(&format!("{}={} ({})", q.slice_field, s.slice, s.queries), m, status.clone())));
    }
    out
}

/// The texts whose neighbours moved most (lowest Jaccard@k first, ties in suite order).
fn worst(p: &PipelineGate) -> Vec<&TextGate> {
    let mut v: Vec<&TextGate> = p.texts.iter().filter(|t| t.jaccard.is_some_and(|j| j < 1.0 || j.is_nan())).collect();
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
    let _ = writeln!(s, "GATE {}: {}", r.suite, mode_line(r));
    for n in &r.notes {
        let _ = writeln!(s, "NOTE {}: {n}", r.suite);
    }
    for p in &r.pipelines {
        let _ = writeln!(s, "{} {} {}", p.verdict().word(), r.suite, p.pipeline);
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
        if let Some(q) = &p.retrieval {
            for x in q.slices.iter().filter(|x| !x.gated) {
                let (d, ..) = drop_of(&x.metrics[0].diff);
                let _ = writeln!(s, "    {}={}: {} quer{}, {} drop {} (reported, not gated: fewer than {})", q.slice_field, x.slice, x.queries, if x.queries == 1 { "y" } else { "ies" }, x.metrics[0].metric, num(d), x.min_queries);
            }
        }
        if let Some(i) = &p.reindex {
            let _ = writeln!(s, "    re-index impact: {}", reindex_line(i));
            let _ = writeln!(s, "    shared index: {}", i.shared_index.why);
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
    let _ = writeln!(s, "# embcheck gate: {} — {}\n", r.suite, r.verdict().word());
    let _ = writeln!(s, "- {}", mode_line(r));
    let _ = writeln!(s, "- baseline: the suite's Python references (model `{}`)", r.baseline_model);
    let _ = writeln!(s, "- candidate: {} `{}`", r.candidate.kind, r.candidate.location);
    for (k, v) in &r.candidate.details {
        let _ = writeln!(s, "  - {k}: {v}");
    }
    for n in &r.notes {
        let _ = writeln!(s, "- note: {n}");
    }
    for p in &r.pipelines {
        let _ = writeln!(s, "\n## {} — {}\n", p.pipeline, p.verdict().word());
        let _ = writeln!(s, "| check | value | limit | |\n|---|---|---|---|");
        for c in &p.checks {
            let _ = writeln!(s, "| {} | {} | {} {} | {} |", md(&c.name), num(c.value), c.op, c.limit, c.verdict().word());
        }
        for c in p.checks.iter().filter(|c| c.note.is_some()) {
            let _ = writeln!(s, "\n- {}: {}", md(scope(c)), md(c.note.as_deref().unwrap_or_default()));
        }
        if let Some(i) = &p.reindex {
            let _ = writeln!(s, "\nRe-index impact (reported, not gated): {}. Shared index: {}.", reindex_line(i), i.shared_index.why);
            if p.drift.is_some() || p.not_comparable.is_some() {
                let _ = writeln!(s, "\nNeighbour churn and drift below are part of the re-index impact.");
            }
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
            let _ = writeln!(s, "| queries | metric | baseline | candidate | drop (baseline − candidate) | {:.0}% interval of the drop | |\n|---|---|---|---|---|---|---|", r.thresholds.confidence * 100.0);
            for [scope, metric, b, c, d, lo, hi, status] in metric_rows(q) {
                let _ = writeln!(s, "| {} | {metric} | {b} | {c} | {d} | [{lo}, {hi}] | {status} |", md(&scope));
            }
        }
        let w = worst(p);
        if !w.is_empty() {
            let _ = writeln!(s, "\nTexts whose neighbours moved most (all in gate.csv):\n\n| text | Jaccard@{} | lost | gained |\n|---|---|---|---|", p.k);
            for t in w {
                let _ = writeln!(s, "| {} | {} | {} | {} |", md(&t.id), num(t.jaccard.unwrap_or(f64::NAN)), md(&t.lost.join(", ")), md(&t.gained.join(", ")));
            }
        }
    }
    s
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
        } else if p.verdict() == Verdict::Inconclusive {
            let open: Vec<String> = p.checks.iter().filter(|c| c.verdict() == Verdict::Inconclusive).map(check_line).collect();
            let mut st = TestCaseStatus::skipped();
            st.set_type("inconclusive").set_message(open.join("; "));
            st
        } else {
            let failed: Vec<String> = p.checks.iter().filter(|c| c.verdict() == Verdict::Fail).map(check_line).collect();
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

/// The drop baseline − candidate of a candidate − baseline interval: its mean and interval, the one sign
/// convention of every gate report (a check's limit is on the drop's upper bound).
use crate::gate::upgrade::drop_of;

/// The re-index impact in one sentence.
fn reindex_line(i: &crate::gate::upgrade::ReindexImpact) -> String {
    let time = i.seconds_per_1000_texts.map_or("the candidate's time not measured (its vectors came from a file)".to_string(), |t| format!("the candidate took {t:.2} s per 1,000 texts"));
    format!(
        "{} of {} passages ({:.0}%) change their top-{} neighbours among the passages (mean Jaccard@{} {}); {time}",
        i.passages_changed,
        i.passages,
        100.0 * i.passages_changed as f64 / i.passages.max(1) as f64,
        i.k,
        i.k,
        num(i.passage_jaccard_mean)
    )
}

/// gate.html: one self-contained page, in the look of the check reports.
pub fn html(r: &GateReport) -> String {
    let (class, word) = header_word(r.verdict());
    let mut s = String::new();
    s.push_str(&head(&format!("embcheck gate · {} · {word}", r.suite)));
    let _ = writeln!(s, r#"<header><h1>gate {} <span class="badge {class}">{word}</span></h1>"#, esc(&r.suite));
    let _ = writeln!(s, r#"<p class="meta"><b>{}</b></p>"#, esc(&mode_line(r)));
    let details: Vec<String> = r.candidate.details.iter().map(|(k, v)| format!("{}={}", esc(k), esc(v))).collect();
    let _ = writeln!(
        s,
        r#"<p class="meta">baseline: the suite's Python references (model <b>{}</b>) · candidate: {} <b>{}</b> {}</p>"#,
        esc(&r.baseline_model),
        esc(&r.candidate.kind),
        esc(&r.candidate.location),
        details.join(" ")
    );
    for n in &r.notes {
        let _ = writeln!(s, r#"<p class="meta">Note: {}</p>"#, esc(n));
    }
    if r.pipelines.len() > 1 {
        s.push_str(r#"<ul class="toc">"#);
        for p in &r.pipelines {
            let failed = p.checks.iter().filter(|c| c.verdict() == Verdict::Fail).count();
            let _ = write!(s, r##"<li>{} <a href="#p-{name}">{name}</a>: {failed} of {} checks failed</li>"##, vbadge(p.verdict()), p.checks.len(), name = p.pipeline.name());
        }
        s.push_str("</ul>");
    }
    s.push_str("</header>\n");
    for p in &r.pipelines {
        let _ = writeln!(s, r#"<section id="p-{}"><h2>{} {}</h2>"#, p.pipeline.name(), p.pipeline, vbadge(p.verdict()));
        s.push_str("<table><tr><th>check</th><th>value</th><th>limit</th><th></th></tr>");
        for c in &p.checks {
            let _ = write!(
                s,
                r#"<tr class="{}"><td>{}</td><td class="n">{}</td><td class="n">{} {}</td><td>{}</td></tr>"#,
                if c.verdict() == Verdict::Fail { "failing" } else { "" },
                esc(&c.name),
                num(c.value),
                esc(c.op),
                c.limit,
                vbadge(c.verdict())
            );
        }
        s.push_str("</table>");
        for c in p.checks.iter().filter(|c| c.note.is_some()) {
            let _ = write!(s, r#"<p class="meta"><b>{}</b>: {}</p>"#, esc(scope(c)), esc(c.note.as_deref().unwrap_or_default()));
        }
        if let Some(i) = &p.reindex {
            let _ = write!(s, "<h3>Re-index impact (reported, not gated)</h3><p class=\"meta\">{}.<br>Shared index: {}.</p>", esc(&reindex_line(i)), esc(&i.shared_index.why));
        }
        let jaccards: Vec<f64> = p.texts.iter().filter_map(|t| t.jaccard).collect();
        // In an upgrade neighbours are reported, not limited: no limit drawn (0 puts every text above it).
        let (limit, limit_label) = match r.mode.mode {
            Mode::Parity => (r.thresholds.min_jaccard_at_k, format!("limit: mean ≥ {}", r.thresholds.min_jaccard_at_k)),
            Mode::Upgrade => (0.0, "not gated (upgrade)".to_string()),
        };
        let below = jaccards.iter().filter(|j| j.is_nan() || **j < limit).count();
        let caption = match r.mode.mode {
            Mode::Parity => format!(
                r#"<span class="swatch" style="background:{ok}"></span>at or above {limit}
               <span class="swatch" style="background:{over}"></span>below {limit} ({below} of {n} texts).
               The gate's limit is on the mean ({mean})"#,
                ok = super::histogram::OK_COLOR,
                over = super::histogram::OVER_COLOR,
                n = jaccards.len(),
                mean = num(p.jaccard_mean),
            ),
            Mode::Upgrade => format!("Neighbour churn is part of an upgrade's re-index impact, reported and not gated: mean {}", num(p.jaccard_mean)),
        };
        let _ = write!(
            s,
            r#"<div class="charts"><figure><h4>Neighbours kept: Jaccard@{k} per text</h4>{}<figcaption>
               {caption}; every text's neighbours are in gate.csv.</figcaption></figure></div>"#,
            super::histogram::unit_svg(&jaccards, &format!("Jaccard@{} (neighbours shared / neighbours of either)", p.k), limit, &limit_label),
            k = p.k,
        );
        let _ = write!(s, r#"<p class="meta">{}</p>"#, esc(&spearman_line(p, r.thresholds.confidence)));
        if let Some(d) = &p.drift {
            let _ = write!(
                s,
                r#"<p class="meta">Drift per text: cosine min {}, median {}; relative L2 median {:.3e}, p95 {:.3e}, max {:.3e}</p>"#,
                num(d.min_cosine),
                num(d.median_cosine),
                d.median_rel_l2,
                d.p95_rel_l2,
                d.max_rel_l2
            );
        } else if let Some(why) = &p.not_comparable {
            let _ = write!(s, r#"<p class="meta">Drift not measured: the spaces do not compare ({}); agreement and quality still do.</p>"#, esc(why));
        }
        if let Some(q) = &p.retrieval {
            let _ = write!(
                s,
                "<h3>Retrieval ({} queries, {} passages)</h3><table><tr><th>queries</th><th>metric</th><th>baseline</th><th>candidate</th><th>drop (baseline − candidate)</th><th>{:.0}% interval of the drop</th><th></th></tr>",
                q.queries.len(),
                q.corpus,
                r.thresholds.confidence * 100.0
            );
            for [scope, metric, b, c, d, lo, hi, status] in metric_rows(q) {
                let _ = write!(
                    s,
                    r#"<tr><td class="id">{}</td><td>{}</td><td class="n">{b}</td><td class="n">{c}</td><td class="n">{d}</td><td class="n">[{lo}, {hi}]</td><td class="detail">{}</td></tr>"#,
                    esc(&scope),
                    esc(&metric),
                    esc(&status)
                );
            }
            s.push_str("</table>");
        }
        let w = worst(p);
        if !w.is_empty() {
            let _ = write!(s, "<h3>Texts whose neighbours moved most</h3><div class=\"scroll\"><table><tr><th>text</th><th>Jaccard@{}</th><th>lost</th><th>gained</th></tr>", p.k);
            for t in w {
                let j = t.jaccard.unwrap_or(f64::NAN);
                let _ = write!(
                    s,
                    r#"<tr class="{}"><td class="id">{}</td><td class="n">{}</td><td class="detail">{}</td><td class="detail">{}</td></tr>"#,
                    if j >= limit { "" } else { "failing" },
                    esc(&t.id),
                    num(j),
                    esc(&t.lost.join(", ")),
                    esc(&t.gained.join(", "))
                );
            }
            s.push_str("</table></div>");
        }
        s.push_str("</section>\n");
    }
    s.push_str("<footer>Written by embcheck gate. Every text's figures, at full precision, are in gate.csv beside this page.</footer>\n</body></html>\n");
    s
}

/// index.html: the run at a glance, as for `check` — the verdict, each pipeline, and the files written.
fn index(r: &GateReport) -> String {
    let (class, word) = header_word(r.verdict());
    let mut s = String::new();
    s.push_str(&head(&format!("embcheck gate · {} · {word}", r.suite)));
    let _ = writeln!(s, r#"<header><h1>embcheck gate <span class="badge {class}">{word}</span></h1>"#);
    let _ = writeln!(
        s,
        r#"<p class="meta">baseline <b>{}</b> · candidate {} <b>{}</b></p></header><section><ul class="toc">"#,
        esc(&r.suite),
        esc(&r.candidate.kind),
        esc(&r.candidate.location)
    );
    for p in &r.pipelines {
        let failed = p.checks.iter().filter(|c| c.verdict() == Verdict::Fail).count();
        let _ = write!(s, r##"<li>{} <a href="gate.html#p-{name}">{name}</a>: {failed} of {} checks failed</li>"##, vbadge(p.verdict()), p.checks.len(), name = p.pipeline.name());
    }
    s.push_str(
        r#"</ul><p class="meta">Files: <a href="gate.html">gate.html</a> · <a href="gate.md">gate.md</a> · <a href="gate.csv">gate.csv</a> · <a href="gate.json">gate.json</a> · <a href="junit.xml">junit.xml</a></p></section>"#,
    );
    s.push_str("\n<footer>Written by embcheck gate.</footer>\n</body></html>\n");
    s
}

/// The page header's badge class and word.
fn header_word(v: Verdict) -> (&'static str, &'static str) {
    match v {
        Verdict::Pass | Verdict::Unresolved => ("pass", "PASSED"),
        Verdict::Inconclusive => ("skip", "INCONCLUSIVE"),
        Verdict::Fail => ("fail", "FAILED"),
    }
}
