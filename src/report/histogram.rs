//! Log-binned histograms as inline SVG: values spanning 1e-16..1 show up as a shape, not one spike.
//!
//! Exact zeros (and values ≤ 0) go to a separate leftmost `0` bin and NaN/±inf to a rightmost one, so no
//! value is dropped or breaks the logarithm. Each bar is split at the tolerance: out-of-tolerance counts
//! are stacked in red on top of the rest.

use std::fmt::Write;

use super::html::esc;

/// A histogram to draw.
pub(super) struct Chart<'a> {
    /// The x axis label, e.g. `1 − cosine`.
    pub x_label: &'a str,
    /// What a value ≤ 0 means for this quantity.
    pub zero_note: &'a str,
    /// The tolerance on the x scale (no line when it is not positive and finite).
    pub tolerance: f64,
    /// The tolerance as the user wrote it, e.g. `cosine ≥ 0.999999` (1 − that has rounding noise).
    pub tolerance_label: String,
    /// Each value with whether it is out of tolerance (the row's own check, so NaN counts as out).
    pub values: Vec<(f64, bool)>,
}

/// Width of the drawing in px; two fit side by side on a 1200 px page.
const W: f64 = 540.0;
const H: f64 = 270.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 62.0;
/// Width of the `0` and NaN bins, and the gap that sets them apart from the log bins.
const SPECIAL: f64 = 26.0;
const GAP: f64 = 22.0;
/// The widest range shown; smaller values are counted in the first log bin.
const MAX_DECADES: i32 = 30;

/// Bars within tolerance.
pub(super) const OK_COLOR: &str = "#4a7bd0";
/// Bars out of tolerance.
pub(super) const OVER_COLOR: &str = "#d64545";
const TOL_COLOR: &str = "#9b1c1c";

/// Counts per bin: index 0 the `0` bin, 1..=n the log bins, n + 1 the NaN/inf bin.
struct Bins {
    lo: i32,
    hi: i32,
    per_decade: usize,
    /// (within tolerance, out of tolerance) per bin.
    counts: Vec<(usize, usize)>,
    below_range: usize,
    infinite: usize,
    nan: usize,
}

impl Bins {
    fn of(values: &[(f64, bool)], tolerance: f64) -> Self {
        let positive = values.iter().map(|v| v.0).filter(|v| v.is_finite() && *v > 0.0);
        let (min, max) = positive.fold((f64::INFINITY, 0f64), |(a, b), v| (a.min(v), b.max(v)));
        let (mut lo, mut hi) =
            if max > 0.0 { (min.log10().floor() as i32, max.log10().floor() as i32 + 1) } else { (0, -10) };
        if tolerance > 0.0 && tolerance.is_finite() {
            let t = tolerance.log10().floor() as i32;
            (lo, hi) = (lo.min(t), hi.max(t + 1));
        }
        if hi < lo {
            (lo, hi) = (-10, 0);
        }
        while hi - lo < 4 {
            lo -= 1;
            if hi - lo < 4 {
                hi += 1;
            }
        }
        lo = lo.max(hi - MAX_DECADES);
        let per_decade = match hi - lo {
            ..=8 => 4,
            9..=16 => 2,
            _ => 1,
        };
        let n = (hi - lo) as usize * per_decade;
        let mut b = Bins { lo, hi, per_decade, counts: vec![(0, 0); n + 2], below_range: 0, infinite: 0, nan: 0 };
        for &(v, over) in values {
            let i = if v.is_nan() || v.is_infinite() {
                if v.is_nan() {
                    b.nan += 1;
                } else {
                    b.infinite += 1;
                }
                n + 1
            } else if v <= 0.0 {
                0
            } else {
                let k = ((v.log10() - lo as f64) * per_decade as f64).floor();
                if k < 0.0 {
                    b.below_range += 1;
                }
                1 + (k.max(0.0) as usize).min(n - 1)
            };
            if over {
                b.counts[i].1 += 1;
            } else {
                b.counts[i].0 += 1;
            }
        }
        b
    }

    fn n(&self) -> usize {
        self.counts.len() - 2
    }

    /// The x position of log10(v) on the log axis.
    fn x(&self, log10: f64) -> f64 {
        let (x0, x1) = (LEFT + SPECIAL + GAP, W - RIGHT - SPECIAL - GAP);
        x0 + (log10 - self.lo as f64) / (self.hi - self.lo) as f64 * (x1 - x0)
    }

    /// The left and right x of bin `i`.
    fn span(&self, i: usize) -> (f64, f64) {
        let n = self.n();
        if i == 0 {
            (LEFT, LEFT + SPECIAL)
        } else if i == n + 1 {
            (W - RIGHT - SPECIAL, W - RIGHT)
        } else {
            let step = 1.0 / self.per_decade as f64;
            let l = self.lo as f64 + (i - 1) as f64 * step;
            (self.x(l), self.x(l + step))
        }
    }

    /// Label of the NaN/inf bin.
    fn special_label(&self) -> &'static str {
        if self.infinite > 0 {
            "NaN/∞"
        } else {
            "NaN"
        }
    }
}

/// `1e-8`, with `1` and `10` for the two decades people read without exponents.
fn decade(d: i32) -> String {
    match d {
        0 => "1".into(),
        1 => "10".into(),
        _ => format!("1e{d}"),
    }
}

/// A round step for about four grid lines up to `max`.
fn nice_step(max: usize) -> usize {
    let raw = (max as f64 / 4.0).max(1.0);
    let p = 10f64.powi(raw.log10().floor() as i32);
    let m = [1.0, 2.0, 5.0, 10.0].into_iter().find(|m| m * p >= raw).unwrap_or(10.0);
    (m * p) as usize
}

/// The SVG and notes for its caption (plain text: what the special bins hold).
pub(super) fn svg(chart: &Chart) -> (String, Vec<String>) {
    let b = Bins::of(&chart.values, chart.tolerance);
    let n = b.n();
    let base = H - BOTTOM;
    let plot_h = base - TOP;
    let tallest = b.counts.iter().map(|c| c.0 + c.1).max().unwrap_or(0);
    let step = nice_step(tallest);
    let y_max = (tallest.div_ceil(step) * step).max(step) as f64;
    // Nonzero counts stay visible: one failing text among thousands must not vanish.
    let height = |c: usize| if c == 0 { 0.0 } else { (c as f64 / y_max * plot_h).max(2.0) };

    let mut s = open(chart.x_label, y_max, step);
    // Bars.
    let narrow = (b.span(1).1 - b.span(1).0) < 18.0;
    for (i, &(ok, over)) in b.counts.iter().enumerate() {
        let (x0, x1) = b.span(i);
        let (x, w) = (x0 + 0.5, (x1 - x0 - 1.0).max(1.0));
        let range = if i == 0 {
            format!("≤ 0 ({})", chart.zero_note)
        } else if i == n + 1 {
            b.special_label().to_string()
        } else {
            let l = b.lo as f64 + (i - 1) as f64 / b.per_decade as f64;
            format!(
                "{} – {}",
                super::format::sci(10f64.powf(l)),
                super::format::sci(10f64.powf(l + 1.0 / b.per_decade as f64))
            )
        };
        let _ = write!(s, "<g><title>{}: {} texts, {over} out of tolerance</title>", esc(&range), ok + over);
        let (h_ok, h_over) = (height(ok), height(over));
        if i == 0 || i == n + 1 {
            // The special bins get a faint backdrop so an empty one still reads as a bin.
            let _ = write!(s, r#"<rect x="{x:.1}" y="{TOP}" width="{w:.1}" height="{plot_h}" class="special"/>"#);
        }
        if ok > 0 {
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{h_ok:.1}" fill="{OK_COLOR}"/>"#,
                base - h_ok
            );
        }
        if over > 0 {
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{h_over:.1}" fill="{OVER_COLOR}"/>"#,
                base - h_ok - h_over
            );
        }
        let total = ok + over;
        let special = i == 0 || i == n + 1;
        if total > 0 && (special || over > 0 || !narrow) {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" class="count{}" text-anchor="middle">{total}</text>"#,
                (x0 + x1) / 2.0,
                base - h_ok - h_over - 3.0,
                if over > 0 { " over" } else { "" }
            );
        }
        s.push_str("</g>");
    }
    axes(&mut s);
    let every = ((b.hi - b.lo) as f64 / 8.0).ceil().max(1.0) as i32;
    let mut d = b.lo;
    while d <= b.hi {
        let x = b.x(d as f64);
        let _ = write!(
            s,
            r#"<line x1="{x:.1}" x2="{x:.1}" y1="{base}" y2="{}" class="axis"/><text x="{x:.1}" y="{}" class="tick" text-anchor="middle">{}</text>"#,
            base + 5.0,
            base + 18.0,
            decade(d)
        );
        d += every;
    }
    for (i, label) in [(0, "0"), (n + 1, b.special_label())] {
        let (x0, x1) = b.span(i);
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" class="tick special-label" text-anchor="middle">{label}</text>"#,
            (x0 + x1) / 2.0,
            base + 18.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{}" class="label" text-anchor="middle">{} (log scale)</text>"#,
        (b.x(b.lo as f64) + b.x(b.hi as f64)) / 2.0,
        H - 16.0,
        esc(chart.x_label)
    );
    // Tolerance.
    let t = chart.tolerance;
    if t > 0.0 && t.is_finite() {
        limit_line(&mut s, b.x(t.log10()), &format!("tolerance: {}", chart.tolerance_label));
    }
    s.push_str("</svg>");

    let mut notes = Vec::new();
    let zeros = b.counts[0].0 + b.counts[0].1;
    notes.push(format!("bin “0”: {zeros} texts at ≤ 0 ({})", chart.zero_note));
    notes.push(format!("bin “{}”: {} NaN, {} infinite", b.special_label(), b.nan, b.infinite));
    if b.below_range > 0 {
        notes.push(format!("{} texts below {} are counted in the first bin", b.below_range, decade(b.lo)));
    }
    if !(t > 0.0 && t.is_finite()) {
        notes.push(format!("tolerance {} is not on the log axis", chart.tolerance_label));
    }
    notes.push(format!("{} bins per decade", b.per_decade));
    (s, notes)
}

/// A histogram of values in [0, 1] (one bar per tenth and one for exactly 1), for the gate's Jaccard@k:
/// bars of texts below `limit` in the failing colour, the limit drawn, both axes titled.
pub(super) fn unit_svg(values: &[f64], x_label: &str, limit: f64, limit_label: &str) -> String {
    // (at or above the limit, below it) per bar; NaN counts as 0 and below.
    let mut counts = [(0usize, 0usize); 11];
    for &v in values {
        let b = if v >= 1.0 { 10 } else if v.is_nan() || v < 0.0 { 0 } else { ((v * 10.0) as usize).min(9) };
        if v >= limit {
            counts[b].0 += 1;
        } else {
            counts[b].1 += 1;
        }
    }
    let base = H - BOTTOM;
    let plot_h = base - TOP;
    let tallest = counts.iter().map(|c| c.0 + c.1).max().unwrap_or(0);
    let step = nice_step(tallest);
    let y_max = (tallest.div_ceil(step) * step).max(step) as f64;
    let height = |c: usize| if c == 0 { 0.0 } else { (c as f64 / y_max * plot_h).max(2.0) };
    // Ten bars for [0, 1) and, after a gap, one for exactly 1.
    let slot = (W - LEFT - RIGHT - GAP - SPECIAL) / 10.0;
    let x_of = |v: f64| LEFT + v * 10.0 * slot;
    let span = |i: usize| if i == 10 { (W - RIGHT - SPECIAL, W - RIGHT) } else { (x_of(i as f64 / 10.0), x_of((i + 1) as f64 / 10.0)) };

    let mut s = open(x_label, y_max, step);
    for (i, &(ok, below)) in counts.iter().enumerate() {
        let (x0, x1) = span(i);
        let (x, w) = (x0 + 0.5, (x1 - x0 - 1.0).max(1.0));
        let range = if i == 10 { "exactly 1".to_string() } else { format!("{:.1} – {:.1}", i as f64 / 10.0, (i + 1) as f64 / 10.0) };
        let _ = write!(s, "<g><title>{range}: {} texts, {below} below the limit</title>", ok + below);
        let (h_ok, h_below) = (height(ok), height(below));
        if i == 10 {
            let _ = write!(s, r#"<rect x="{x:.1}" y="{TOP}" width="{w:.1}" height="{plot_h}" class="special"/>"#);
        }
        if ok > 0 {
            let _ = write!(s, r#"<rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{h_ok:.1}" fill="{OK_COLOR}"/>"#, base - h_ok);
        }
        if below > 0 {
            let _ = write!(s, r#"<rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="{h_below:.1}" fill="{OVER_COLOR}"/>"#, base - h_ok - h_below);
        }
        if ok + below > 0 {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}" class="count{}" text-anchor="middle">{}</text>"#,
                (x0 + x1) / 2.0,
                base - h_ok - h_below - 3.0,
                if below > 0 { " over" } else { "" },
                ok + below
            );
        }
        s.push_str("</g>");
    }
    axes(&mut s);
    for t in 0..=10 {
        let x = x_of(t as f64 / 10.0);
        let label = if t % 2 == 0 { format!("{:.1}", t as f64 / 10.0) } else { String::new() };
        let _ = write!(s, r#"<line x1="{x:.1}" x2="{x:.1}" y1="{base}" y2="{}" class="axis"/><text x="{x:.1}" y="{}" class="tick" text-anchor="middle">{label}</text>"#, base + 5.0, base + 18.0);
    }
    let (x0, x1) = span(10);
    let _ = write!(s, r#"<text x="{:.1}" y="{}" class="tick special-label" text-anchor="middle">1</text>"#, (x0 + x1) / 2.0, base + 18.0);
    let _ = write!(s, r#"<text x="{:.1}" y="{}" class="label" text-anchor="middle">{}</text>"#, (LEFT + W - RIGHT) / 2.0, H - 16.0, esc(x_label));
    if (0.0..=1.0).contains(&limit) {
        limit_line(&mut s, if limit >= 1.0 { x0 } else { x_of(limit) }, limit_label);
    }
    s.push_str("</svg>");
    s
}

/// Opens a histogram's SVG: its grid and y ticks up to `y_max` in steps of `step`.
fn open(x_label: &str, y_max: f64, step: usize) -> String {
    let (base, plot_h) = (H - BOTTOM, H - BOTTOM - TOP);
    let mut s = String::new();
    let _ = write!(s, r#"<svg class="hist" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="histogram of {}">"#, esc(x_label));
    let mut c = 0;
    while c as f64 <= y_max {
        let y = base - c as f64 / y_max * plot_h;
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{}" y="{:.1}" class="tick" text-anchor="end">{c}</text>"#,
            W - RIGHT,
            LEFT - 8.0,
            y + 4.0
        );
        c += step;
    }
    s
}

/// The x and y axes and the y axis's title.
fn axes(s: &mut String) {
    let (base, plot_h) = (H - BOTTOM, H - BOTTOM - TOP);
    let _ = write!(s, r#"<line x1="{}" x2="{}" y1="{base}" y2="{base}" class="axis"/>"#, LEFT - 2.0, W - RIGHT);
    let _ = write!(s, r#"<line x1="{}" x2="{}" y1="{TOP}" y2="{base}" class="axis"/>"#, LEFT - 2.0, LEFT - 2.0);
    let _ = write!(
        s,
        r#"<text x="14" y="{:.1}" class="label" text-anchor="middle" transform="rotate(-90 14 {:.1})">texts</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
}

/// A dashed vertical line at `x` (a tolerance or limit), labelled on the side with room.
fn limit_line(s: &mut String, x: f64, label: &str) {
    let base = H - BOTTOM;
    let right_half = x > (LEFT + W) / 2.0;
    let _ = write!(
        s,
        r#"<line x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{base}" stroke="{TOL_COLOR}" stroke-width="1.5" stroke-dasharray="5 3"/><text x="{:.1}" y="{}" class="tol" text-anchor="{}">{}</text>"#,
        TOP - 14.0,
        if right_half { x - 5.0 } else { x + 5.0 },
        TOP - 4.0,
        if right_half { "end" } else { "start" },
        esc(label)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_histogram_colours_texts_below_the_limit() {
        let svg = unit_svg(&[0.0, 0.0, 0.5, 0.85, 1.0, 1.0, 1.0, f64::NAN], "Jaccard@10", 0.8, "limit: mean ≥ 0.8");
        // Three bars hold texts below 0.8 (0 twice and NaN, 0.5): drawn in the failing colour, counts marked.
        assert_eq!(svg.matches(OVER_COLOR).count(), 2, "{svg}");
        assert!(svg.contains("0.0 – 0.1: 3 texts, 3 below the limit"), "{svg}");
        assert!(svg.contains("exactly 1: 3 texts, 0 below the limit"), "{svg}");
        assert!(svg.contains("limit: mean ≥ 0.8") && svg.contains(">texts</text>") && svg.contains(">Jaccard@10</text>"), "{svg}");
    }

    #[test]
    fn zeros_nan_and_infinities_get_their_own_bins() {
        let values =
            vec![(0.0, false), (-1e-16, false), (f64::NAN, true), (f64::INFINITY, true), (1e-7, false), (1e-2, true)];
        let b = Bins::of(&values, 1e-5);
        assert_eq!(b.counts[0], (2, 0));
        assert_eq!(b.counts[b.n() + 1], (0, 2));
        assert_eq!(b.counts.iter().map(|c| c.0 + c.1).sum::<usize>(), values.len());
        assert!(b.lo <= -7 && b.hi >= -1);
    }

    #[test]
    fn no_positive_values_still_draws() {
        let (out, _) = svg(&Chart {
            x_label: "x",
            zero_note: "equal",
            tolerance: 0.0,
            tolerance_label: "0".into(),
            values: vec![(0.0, false); 3],
        });
        assert!(out.starts_with("<svg") && out.ends_with("</svg>"));
        let (out, _) = svg(&Chart {
            x_label: "x",
            zero_note: "equal",
            tolerance: 1e-6,
            tolerance_label: "1e-6".into(),
            values: vec![],
        });
        assert!(out.contains("tolerance: 1e-6"));
    }
}
