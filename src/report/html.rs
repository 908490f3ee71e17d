//! `<suite>/report.html`: one self-contained page (inline CSS and SVG, nothing fetched) per suite.

use std::fmt::Write;

use super::format::{cosine, detail, exact, percent, sci, short, stage, tokens, tolerance, tolerance_number};
use super::histogram::{self, Chart};
use super::markdown::allclose_message;
use super::worst_rows;
use crate::compare::{more_line, PipelineResult};
use crate::suite::{Status, SuiteReport};

/// Failing texts listed per pipeline (all of them are in `diff.csv`).
const FAILING_SHOWN: usize = 50;
/// Worst texts listed for a passing pipeline.
const PASSING_SHOWN: usize = 10;

pub(super) const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1f2328; max-width: 1180px; margin: 20px auto; padding: 0 16px; }
h1 { font-size: 24px; margin: 0 0 6px; }
h2 { font-size: 19px; margin: 0 0 10px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: #57606a; margin: 0 0 10px; }
.badge { display: inline-block; padding: 1px 10px; border-radius: 12px; color: #fff; font-size: 13px;
         font-weight: 700; vertical-align: middle; letter-spacing: .03em; }
h1 .badge { font-size: 15px; padding: 2px 12px; }
.pass { background: #1a7f37; } .fail { background: #cf222e; } .skip { background: #9a6700; }
.banner { border: 2px solid #9a6700; background: #fff8c5; border-radius: 6px; padding: 14px 18px;
          font-size: 17px; margin: 14px 0; }
.toc { list-style: none; padding: 0; margin: 8px 0 0; }
.toc li { margin: 3px 0; }
a { color: #0550ae; }
section { border-top: 2px solid #d0d7de; margin-top: 26px; padding-top: 14px; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; vertical-align: top; }
th { background: #f6f8fa; text-align: left; font-weight: 600; white-space: nowrap; }
td.n { text-align: right; white-space: nowrap; font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
td.id { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; white-space: nowrap; }
td.id.long { white-space: normal; min-width: 200px; overflow-wrap: anywhere; }
td.detail { min-width: 220px; }
tr.failing td.id { border-left: 3px solid #cf222e; }
.kw { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #ffebe9; color: #82071e;
      border-radius: 4px; padding: 0 5px; white-space: nowrap; }
.scroll { overflow-x: auto; }
pre { background: #fff5f5; border: 1px solid #f3b4b4; border-radius: 6px; padding: 10px 12px; overflow-x: auto;
      font-size: 12.5px; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; margin: 12px 0; }
figure { margin: 0; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 8px 6px; }
figure h4 { margin: 0 0 2px; font-size: 13.5px; }
figcaption { font-size: 12px; color: #57606a; max-width: 540px; }
.swatch { display: inline-block; width: 10px; height: 10px; vertical-align: -1px; margin-right: 3px; }
svg.hist { display: block; max-width: 100%; height: auto; font-family: system-ui, -apple-system, "Segoe UI", Arial, sans-serif; }
svg .grid { stroke: #eaeef2; } svg .axis { stroke: #57606a; }
svg .tick { font-size: 11px; fill: #424a53; } svg .special-label { font-weight: 700; }
svg .label { font-size: 12px; fill: #1f2328; } svg .special { fill: #f3f4f6; }
svg .count { font-size: 10px; fill: #424a53; } svg .count.over { fill: #9b1c1c; font-weight: 700; }
svg .tol { font-size: 11px; font-weight: 700; fill: #9b1c1c; }
footer { margin: 30px 0 10px; color: #57606a; font-size: 12px; }
"#;

/// Escapes text for HTML content and attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The start of every page: the document head (title escaped here) with the shared style, and `<body>`.
pub(super) fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(title)
    )
}

/// A PASS or FAIL badge.
pub(super) fn badge(passed: bool) -> &'static str {
    if passed {
        r#"<span class="badge pass">PASS</span>"#
    } else {
        r#"<span class="badge fail">FAIL</span>"#
    }
}

/// The page for one suite.
pub(super) fn page(s: &SuiteReport) -> String {
    let (class, word) = match s.status() {
        Status::Passed => ("pass", "PASSED"),
        Status::Failed => ("fail", "FAILED"),
        Status::Skipped => ("skip", "SKIPPED"),
        Status::Error => ("fail", "ERROR"),
    };
    let mut o = String::new();
    o.push_str(&head(&format!("embcheck · {} · {word}", s.suite)));
    let _ = writeln!(o, r#"<header><h1>{} <span class="badge {class}">{word}</span></h1>"#, esc(&s.suite));
    let mut meta = format!("model <b>{}</b> · dtype <b>{}</b>", esc(&s.model), esc(&s.dtype));
    if !s.max_length.is_empty() {
        let l: Vec<String> = s.max_length.iter().map(|(p, n)| format!("{} {n}", esc(p))).collect();
        let _ = write!(meta, " · max length {}", l.join(", "));
    }
    if s.source.is_external() {
        let details: Vec<String> = s.source.details.iter().map(|(k, v)| format!("{}={}", esc(k), esc(v))).collect();
        let _ = write!(meta, " · system under test: {} <b>{}</b> {}", esc(&s.source.kind), esc(&s.source.location), details.join(" "));
    }
    let _ = writeln!(o, r#"<p class="meta">{meta}</p>"#);
    for n in &s.notes {
        let _ = writeln!(o, r#"<p class="meta">Note: {}</p>"#, esc(n));
    }
    if let Some(why) = &s.error {
        let _ = writeln!(
            o,
            r#"<div class="banner"><b>ERROR — this suite could not be checked; it did not pass.</b><br>{}</div>"#,
            esc(why)
        );
    }
    if let Some(why) = &s.skipped {
        let _ = writeln!(
            o,
            r#"<div class="banner"><b>SKIPPED — this suite was not verified; it did not pass.</b><br>{}</div>"#,
            esc(why)
        );
    }
    if s.pipelines.len() > 1 {
        o.push_str(r#"<ul class="toc">"#);
        for p in &s.pipelines {
            let _ = write!(
                o,
                r##"<li>{} <a href="#p-{name}">{name}</a>: {} / {} texts out of tolerance</li>"##,
                badge(p.passed()),
                p.summary.failed,
                p.summary.rows,
                name = p.pipeline.name()
            );
        }
        o.push_str("</ul>");
    }
    if !s.reference_metadata.is_empty() {
        o.push_str("<details><summary>Reference metadata</summary><table>");
        for (k, v) in &s.reference_metadata {
            let _ = write!(o, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
        }
        o.push_str("</table></details>");
    }
    o.push_str("</header>\n");
    if s.skipped.is_none() && s.error.is_none() && s.pipelines.is_empty() {
        o.push_str("<p>No pipelines were selected.</p>");
    }
    for p in &s.pipelines {
        pipeline_section(&mut o, p);
    }
    o.push_str(
        "<footer>Written by embcheck. Every text's numbers, at full precision, are in diff.csv beside this page.</footer>\n\
         </body></html>\n",
    );
    o
}

fn pipeline_section(o: &mut String, p: &PipelineResult) {
    let sm = &p.summary;
    let t = &p.tolerance;
    let _ = writeln!(o, r#"<section id="p-{name}"><h2>{} {name}</h2>"#, badge(p.passed()), name = p.pipeline.name());
    let _ = writeln!(
        o,
        "<table><tr><th>texts</th><th>failed</th><th>min cosine</th><th>max rel L2</th><th>p50 rel L2</th>\
         <th>p99 rel L2</th><th>max abs diff</th><th>token mismatches</th><th>tolerance</th></tr>\
         <tr><td class=n>{}</td><td class=n>{} ({}%)</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td>\
         <td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr></table>",
        sm.rows,
        sm.failed,
        percent(sm.failed, sm.rows),
        cosine(sm.min_cosine),
        sci(sm.max_rel_l2),
        sci(sm.p50_rel_l2),
        sci(sm.p99_rel_l2),
        sci(sm.max_abs_diff),
        sm.token_mismatches,
        esc(&tolerance(t, p.pipeline.output())),
    );
    if p.rows.is_empty() {
        o.push_str("</section>\n");
        return;
    }
    if !p.passed() {
        let _ = writeln!(o, "<pre>{}</pre>", esc(&allclose_message(p)));
    }

    o.push_str(r#"<div class="charts">"#);
    let charts = [
        (
            "Cosine distance",
            Chart {
                x_label: "1 − cosine",
                zero_note: "cosine rounds to exactly 1",
                tolerance: 1.0 - t.min_cosine,
                tolerance_label: format!("cosine ≥ {}", tolerance_number(t.min_cosine)),
                values: p.rows.iter().map(|r| (1.0 - r.metrics.cosine, r.failed.contains(&"cosine"))).collect(),
            },
        ),
        (
            "Relative L2 difference",
            Chart {
                x_label: "‖a − e‖ / ‖e‖",
                zero_note: "identical values",
                tolerance: t.max_rel_l2,
                tolerance_label: tolerance_number(t.max_rel_l2),
                values: p.rows.iter().map(|r| (r.metrics.rel_l2, r.failed.contains(&"rel_l2"))).collect(),
            },
        ),
    ];
    for (title, chart) in &charts {
        let (svg, notes) = histogram::svg(chart);
        let _ = write!(
            o,
            r#"<figure><h4>{title}</h4>{svg}<figcaption><span class="swatch" style="background:{ok}"></span>within tolerance
               <span class="swatch" style="background:{over}"></span>out of tolerance (beyond the dashed line) · {}</figcaption></figure>"#,
            esc(&notes.join(" · ")),
            ok = histogram::OK_COLOR,
            over = histogram::OVER_COLOR,
        );
    }
    o.push_str("</div>\n");

    let rows = worst_rows(p, FAILING_SHOWN, PASSING_SHOWN);
    let heading = if p.passed() {
        format!("Largest relative L2 ({} of {} texts, all within tolerance)", rows.len(), sm.rows)
    } else {
        format!("Failing texts, worst first ({} of {})", rows.len(), sm.failed)
    };
    let _ = writeln!(
        o,
        "<h3>{heading}</h3><div class=scroll><table><tr><th>id</th><th>cosine</th><th>1 − cosine</th><th>rel L2</th>\
         <th>max abs diff</th><th title=\"component of the max abs diff\">at</th><th>‖a‖ / ‖e‖</th><th>tokens</th><th>failed checks</th>\
         <th>diagnosis</th></tr>"
    );
    let rows_shown = rows.len();
    for r in rows {
        let m = &r.metrics;
        // The same words as every other report (`keyword: evidence`), the keyword set off.
        let diagnosis = match stage(r) {
            "" => String::new(),
            kw => format!(r#"<span class="kw">{kw}</span>: {}"#, esc(detail(r))),
        };
        let _ = writeln!(
            o,
            "<tr{}><td class=\"id{}\">{}</td><td class=n title=\"{}\">{}</td><td class=n>{}</td><td class=n>{}</td>\
             <td class=n>{}</td><td class=n>{}</td><td class=n>{} / {}</td><td>{}</td><td>{}</td>\
             <td class=detail>{diagnosis}</td></tr>",
            if r.pass() { "" } else { r#" class="failing""# },
            // Short ids stay on one line; long ones may wrap anywhere rather than widen the table.
            if r.id.chars().count() > 40 { " long" } else { "" },
            esc(&r.id),
            esc(&exact(m.cosine)),
            cosine(m.cosine),
            sci(1.0 - m.cosine),
            sci(m.rel_l2),
            sci(m.max_abs_diff),
            m.max_abs_index,
            short(m.norm_actual),
            short(m.norm_expected),
            esc(&tokens(&r.tokens)),
            esc(&r.failed.join(", ")),
        );
    }
    o.push_str("</table></div>");
    if !p.passed() {
        if let Some(more) = more_line(rows_shown, sm.failed, "failing texts (every text is in diff.csv)") {
            let _ = write!(o, "<p>{}</p>", esc(&more));
        }
    }
    o.push_str("</section>\n");
}

/// `index.html`: the run at a glance — totals, then each suite with its status, pipelines and a link to its
/// page (`dirs[i]` is the folder suite `i` was written to).
pub(super) fn index(suites: &[SuiteReport], dirs: &[String]) -> String {
    let t = super::Totals::of(suites);
    let (class, word) = match t.status() {
        "passed" => ("pass", "PASSED"),
        "skipped-only" => ("skip", "NOTHING VERIFIED"),
        "error" => ("fail", "ERROR"),
        _ => ("fail", "FAILED"),
    };
    let mut o = String::new();
    o.push_str(&head(&format!("embcheck · {} suites · {word}", t.suites)));
    let _ = writeln!(o, r#"<header><h1>embcheck check <span class="badge {class}">{word}</span></h1>"#);
    let _ = writeln!(
        o,
        r#"<p class="meta">{} suites: <b>{}</b> passed, <b>{}</b> failed, <b>{}</b> skipped, <b>{}</b> errors · {} of {} pipelines failed · {} of {} texts out of tolerance</p>"#,
        t.suites, t.suites_passed, t.suites_failed, t.suites_skipped, t.suites_errored, t.pipelines_failed, t.pipelines, t.rows_failed, t.rows
    );
    o.push_str(
        r#"<p class="meta">Also here: <a href="summary.md">summary.md</a> · <a href="summary.json">summary.json</a> · <a href="junit.xml">junit.xml</a></p></header>"#,
    );
    o.push_str("\n<section><table><tr><th>suite</th><th>status</th><th>model · system under test</th><th>pipelines</th><th>files</th></tr>\n");
    for (s, dir) in suites.iter().zip(dirs) {
        let (class, word) = match s.status() {
            Status::Passed => ("pass", "PASS"),
            Status::Failed => ("fail", "FAIL"),
            Status::Skipped => ("skip", "SKIP"),
            Status::Error => ("fail", "ERROR"),
        };
        let pipelines: Vec<String> = if let Some(why) = s.error.as_ref().or(s.skipped.as_ref()) {
            vec![esc(why)]
        } else {
            s.pipelines
                .iter()
                .map(|p| format!("{} {}: {} / {} failed", badge(p.passed()), esc(p.pipeline.name()), p.summary.failed, p.summary.rows))
                .collect()
        };
        let href = esc(dir);
        let mut checked = format!("<code>{}</code>", esc(&s.model));
        if s.source.is_external() {
            let _ = write!(checked, "<br>{} <code>{}</code>", esc(&s.source.kind), esc(&s.source.location));
        }
        let _ = writeln!(
            o,
            r#"<tr class="{}"><td class="id"><a href="{href}/report.html">{}</a></td><td><span class="badge {class}">{word}</span></td><td class="detail">{checked}</td><td>{}</td><td><a href="{href}/report.html">page</a> · <a href="{href}/diff.csv">diff.csv</a> · <a href="{href}/summary.md">summary.md</a></td></tr>"#,
            if class == "pass" { "" } else { "failing" },
            esc(&s.suite),
            pipelines.join("<br>")
        );
    }
    o.push_str("</table></section>\n<footer>Written by embcheck.</footer>\n</body></html>\n");
    o
}
