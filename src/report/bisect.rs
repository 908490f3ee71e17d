//! `embcheck bisect`'s reports, written under one directory in the look of the other reports: `bisect.csv`
//! (one row per text × stage × token: every error at full precision), `bisect.json` (the whole
//! [`Bisection`] but the per-token errors), `bisect.html` (the verdict, the per-stage table and a plot of the
//! error along the model) — and the terminal text.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::html::{badge, esc, head};
use crate::bisect::{describe_stage, Bisection, JUMP, NOISE};
use crate::error::{Error, Result};

/// Texts whose tokens the one-line verdict lists.
const VERDICT_TEXTS: usize = 4;

/// Writes bisect.csv, bisect.json and bisect.html under `dir`; returns the paths written.
pub fn write_all(dir: &Path, b: &Bisection) -> Result<Vec<PathBuf>> {
    let files: [(&str, Vec<u8>); 3] = [
        ("bisect.csv", csv(b, &dir.join("bisect.csv"))?),
        ("bisect.json", serde_json::to_vec_pretty(b).map_err(|e| Error::io(dir.join("bisect.json"), std::io::Error::other(e)))?),
        ("bisect.html", html(b).into_bytes()),
    ];
    super::write_named(dir, files.into())
}

/// The verdict in one line.
pub fn verdict(b: &Bisection) -> String {
    let uncompared = b.texts.iter().filter(|t| t.error.is_some()).count();
    let verdict = located(b);
    if uncompared == 0 {
        verdict
    } else {
        format!("{uncompared} of {} texts not compared (their tokens differ); the others: {verdict}", b.texts.len())
    }
}

fn located(b: &Bisection) -> String {
    match &b.first {
        Some(f) => {
            let compared = b.texts.iter().filter(|t| t.error.is_none()).count();
            let located = format!("{} of {compared} texts", f.texts.len());
            let shown = if f.texts.iter().all(|(_, tokens, of)| tokens.len() == *of) {
                format!("{located}, at every token")
            } else {
                let mut texts: Vec<String> = f.texts.iter().take(VERDICT_TEXTS).map(|(i, tokens, of)| format!("text {i}: {}", tokens_phrase(tokens, *of))).collect();
                if f.texts.len() > VERDICT_TEXTS {
                    texts.push(format!("{} more in bisect.csv", f.texts.len() - VERDICT_TEXTS));
                }
                format!("{located}; {}", texts.join("; "))
            };
            format!("first divergence: {} ({}) in {shown}", f.place, f.stage)
        }
        None => match &b.accumulation {
            Some(a) => format!("no fault located: {a}"),
            None => format!("no divergence: every stage within {NOISE:.0e} relative L2"),
        },
    }
}

fn tokens_phrase(tokens: &[usize], of: usize) -> String {
    if tokens.len() == of {
        format!("all {of} tokens")
    } else {
        let shown: Vec<String> = tokens.iter().take(12).map(usize::to_string).collect();
        let more = if tokens.len() > 12 { format!(" … ({} in all)", tokens.len()) } else { String::new() };
        format!("tokens {}{more} of {of}", shown.join(", "))
    }
}

/// The terminal text: the verdict, then the error per stage.
pub fn terminal(b: &Bisection) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "bisect {}: {} against the suite's per-layer reference", b.suite, b.source);
    let _ = writeln!(s, "  {:<22} {:>12} {:>12}  worst (text, token)", "stage", "max rel L2", "median");
    let located = b.first.as_ref().map(|f| f.stage.as_str());
    for st in &b.summary {
        let mark = if Some(st.stage.as_str()) == located { "  ← first divergence" } else { "" };
        let _ = writeln!(
            s,
            "  {:<22} {:>12.3e} {:>12.3e}  ({}, {}){mark}",
            describe_stage(&st.stage),
            st.max_rel_l2,
            st.median_rel_l2,
            st.worst.0,
            st.worst.1
        );
    }
    if !b.missing_stages.is_empty() {
        let _ = writeln!(s, "  not given by the port: {}", b.missing_stages.join(", "));
    }
    for t in b.texts.iter().filter(|t| t.error.is_some()) {
        let _ = writeln!(s, "  text {}: {}", t.index, t.error.as_deref().unwrap_or(""));
    }
    let _ = writeln!(s, "{}", verdict(b));
    s
}

fn csv(b: &Bisection, path: &Path) -> Result<Vec<u8>> {
    let err = |e: csv::Error| Error::io(path, std::io::Error::other(e));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["suite", "text", "stage", "place", "token", "rel_l2", "text_max_rel_l2", "first_divergence"]).map_err(err)?;
    for t in b.texts.iter().filter(|t| t.error.is_none()) {
        for (s, stage) in b.stages.iter().enumerate() {
            let first = t.located.as_ref().is_some_and(|l| l.stage == *stage);
            for (k, e) in t.per_token[s].iter().enumerate() {
                w.write_record([
                    b.suite.as_str(),
                    &t.index.to_string(),
                    stage,
                    &describe_stage(stage),
                    &k.to_string(),
                    &format!("{e:e}"),
                    &format!("{:e}", t.per_stage[s]),
                    if first { "yes" } else { "" },
                ])
                .map_err(err)?;
            }
        }
    }
    w.into_inner().map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
}

/// bisect.html: the verdict, a plot of the error along the model (log scale, the noise level dashed) and the
/// per-stage table.
pub fn html(b: &Bisection) -> String {
    let passed = b.passed();
    let mut s = head(&format!("embcheck bisect · {} · {}", b.suite, if passed { "no divergence" } else { "diverges" }));
    let _ = writeln!(s, r#"<header><h1>bisect {} {}</h1>"#, esc(&b.suite), badge(passed));
    let _ = writeln!(s, r#"<p class="meta">port: {} · reference: the suite's per-layer states from the Python model</p>"#, esc(&b.source));
    let _ = writeln!(s, r#"<p class="banner">{}</p></header>"#, esc(&verdict(b)));
    let _ = writeln!(s, "<section><h2>Error along the model</h2>{}", plot(b));
    let _ = writeln!(
        s,
        r#"<p class="meta">Each stage's largest relative L2 error over every token of every text (median over texts dashed).
           A stage is where the port goes wrong when its error exceeds {NOISE:.0e} and {JUMP} times the stage before's:
           f32 rounding grows slowly from stage to stage, a wrong operation jumps.</p>"#
    );
    s.push_str(r#"<table><tr><th>stage</th><th>place</th><th>max rel L2</th><th>median over texts</th><th>worst text</th><th>worst token</th></tr>"#);
    let located = b.first.as_ref().map(|f| f.stage.as_str());
    for st in &b.summary {
        let class = if Some(st.stage.as_str()) == located { r#" class="failing""# } else { "" };
        let _ = write!(
            s,
            r#"<tr{class}><td class="id">{}</td><td>{}</td><td class="n">{:.3e}</td><td class="n">{:.3e}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
            esc(&st.stage),
            esc(&describe_stage(&st.stage)),
            st.max_rel_l2,
            st.median_rel_l2,
            st.worst.0,
            st.worst.1
        );
    }
    s.push_str("</table>");
    if !b.missing_stages.is_empty() {
        let _ = write!(s, r#"<p class="meta">Not given by the port: {}</p>"#, esc(&b.missing_stages.join(", ")));
    }
    s.push_str("</section>");
    let _ = writeln!(s, r#"<footer>Every token's error is in bisect.csv; everything else in bisect.json.</footer></body></html>"#);
    s
}

/// The error per stage as an SVG line on a log scale.
fn plot(b: &Bisection) -> String {
    let (w, h, left, bottom, top, right) = (760.0, 300.0, 70.0, 90.0, 16.0, 16.0);
    let n = b.summary.len().max(1);
    let values: Vec<f64> = b.summary.iter().flat_map(|s| [s.max_rel_l2, s.median_rel_l2]).filter(|v| *v > 0.0 && v.is_finite()).collect();
    let lo = values.iter().copied().fold(NOISE / 10.0, f64::min).log10().floor().max(-12.0);
    let hi = values.iter().copied().fold(NOISE * 10.0, f64::max).log10().ceil().min(3.0);
    let x = |i: usize| left + (w - left - right) * (i as f64 + 0.5) / n as f64;
    let y = |v: f64| {
        let l = if v > 0.0 && v.is_finite() { v.log10().clamp(lo, hi) } else if v.is_infinite() { hi } else { lo };
        top + (h - top - bottom) * (hi - l) / (hi - lo).max(1.0)
    };
    let mut s = format!(r#"<svg class="hist" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="error per stage">"#);
    for d in (lo as i32)..=(hi as i32) {
        let yy = y(10f64.powi(d));
        let _ = write!(s, r#"<line class="grid" x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">1e{d}</text>"#, w - right, left - 6.0, yy + 4.0);
    }
    let yn = y(NOISE);
    let _ = write!(s, r#"<line x1="{left}" x2="{}" y1="{yn:.1}" y2="{yn:.1}" stroke="{}" stroke-dasharray="6 4"/><text class="tol" x="{}" y="{:.1}" text-anchor="end">noise level {NOISE:.0e}</text>"#, w - right, super::histogram::OVER_COLOR, w - right, yn - 4.0);
    for (series, dash, width) in [(0, "", 2.0), (1, r#" stroke-dasharray="3 3""#, 1.2)] {
        let pts: Vec<String> = b
            .summary
            .iter()
            .enumerate()
            .map(|(i, st)| format!("{:.1},{:.1}", x(i), y(if series == 0 { st.max_rel_l2 } else { st.median_rel_l2 })))
            .collect();
        let _ = write!(s, r##"<polyline fill="none" stroke="#0550ae" stroke-width="{width}"{dash} points="{}"/>"##, pts.join(" "));
    }
    let located = b.first.as_ref().map(|f| f.stage.as_str());
    for (i, st) in b.summary.iter().enumerate() {
        let fault = Some(st.stage.as_str()) == located;
        let color = if fault { super::histogram::OVER_COLOR } else { "#0550ae" };
        let _ = write!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="{}" fill="{color}"><title>{}: {:.3e}</title></circle><text class="tick{}" transform="translate({:.1},{}) rotate(-40)" text-anchor="end">{}</text>"#,
            x(i),
            y(st.max_rel_l2),
            if fault { 6 } else { 3 },
            esc(&st.stage),
            st.max_rel_l2,
            if fault { " special-label" } else { "" },
            x(i),
            h - bottom + 14.0,
            esc(&describe_stage(&st.stage))
        );
    }
    let _ = write!(s, r#"<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{}"/><text class="label" transform="translate(16,{}) rotate(-90)" text-anchor="middle">relative L2 (log)</text></svg>"#, h - bottom, (h - bottom + top) / 2.0);
    s
}
