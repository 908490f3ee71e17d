//! How numbers and row facts read in the reports. Non-finite values always print as `NaN`, `inf`, `-inf`.

use crate::compare::{RowResult, Stage, TokenMatch, Tolerance};
use crate::pipeline::OutputKind;

/// `NaN`, `inf` or `-inf`.
fn non_finite(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x > 0.0 {
        "inf".into()
    } else {
        "-inf".into()
    }
}

/// The exact value (it parses back to the same f64), written like Python's `repr`: plain between 1e-4 and
/// 1e16, with an exponent outside (Rust's `{}` alone would write 1e-300 with 300 digits).
pub(super) fn exact(x: f64) -> String {
    let a = x.abs();
    if !x.is_finite() {
        non_finite(x)
    } else if a == 0.0 || (1e-4..1e16).contains(&a) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// Three significant digits with a two-digit signed exponent, as numpy prints: `1.23e-02`.
pub(super) fn sci(x: f64) -> String {
    if !x.is_finite() {
        return non_finite(x);
    }
    let s = format!("{x:.2e}");
    let (mantissa, exp) = s.split_once('e').expect("LowerExp has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// A cosine to nine decimals, enough to show three digits of a 1e-6 distance from 1.
pub(super) fn cosine(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.9}")
    } else {
        non_finite(x)
    }
}

/// A norm or other plain number to six significant digits.
pub(super) fn short(x: f64) -> String {
    if !x.is_finite() {
        non_finite(x)
    } else if x == 0.0 || (1e-3..1e6).contains(&x.abs()) {
        let digits = (5 - x.abs().log10().floor() as i32).clamp(0, 8) as usize;
        trim_zeros(format!("{x:.digits$}"))
    } else {
        sci(x)
    }
}

/// A percentage like numpy's `{:.3g}`: `7.5`, `33.3`, `0.0123`, `100`.
pub(super) fn percent(part: usize, whole: usize) -> String {
    let p = 100.0 * part as f64 / whole.max(1) as f64;
    if p == 0.0 {
        return "0".into();
    }
    let digits = (2 - p.log10().floor() as i32).max(0) as usize;
    trim_zeros(format!("{p:.digits$}"))
}

fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A tolerance as written in suite.toml: `1e-5`, `0.999999` (exact, exponent below 1e-3).
pub(super) fn tolerance_number(x: f64) -> String {
    if x.is_finite() && x != 0.0 && x.abs() < 1e-3 {
        format!("{x:e}")
    } else {
        exact(x)
    }
}

/// The tolerance in one line: `cosine ≥ 0.999999, rel L2 ≤ 1e-5, abs ≤ 1e-4` (+ Jaccard for sparse).
pub(super) fn tolerance(t: &Tolerance, kind: OutputKind) -> String {
    let n = tolerance_number;
    let mut s = format!("cosine ≥ {}, rel L2 ≤ {}, abs ≤ {}", n(t.min_cosine), n(t.max_rel_l2), n(t.max_abs));
    if kind == OutputKind::Sparse {
        s.push_str(&format!(", Jaccard ≥ {}", n(t.min_jaccard)));
    }
    s
}

/// `same`, `unknown`, or where and how the token ids differ.
pub(super) fn tokens(t: &TokenMatch) -> String {
    match t {
        TokenMatch::Same => "same".into(),
        TokenMatch::Unknown => "unknown".into(),
        TokenMatch::Differ { position, actual, expected, actual_len, expected_len } => {
            let id = |x: &Option<u32>| x.map_or("end".to_string(), |v| v.to_string());
            format!(
                "differ at {position} (ours {}, reference {}; {actual_len} vs {expected_len} tokens)",
                id(actual),
                id(expected)
            )
        }
    }
}

/// The diagnosis keyword: empty for a passing row, `unknown` for a failing row nobody diagnosed.
pub(super) fn stage(r: &RowResult) -> &'static str {
    match &r.diagnosis {
        // A passing row shows only the verdict that let it pass (`f32 noise`).
        Some(d) if r.pass() && d.stage == Stage::F32Noise => d.stage.keyword(),
        _ if r.pass() => "",
        Some(d) => d.stage.keyword(),
        None => "unknown",
    }
}

/// `keyword: evidence` as every report words it ([`crate::compare::Diagnosis`]'s `Display`), or empty for a
/// passing row.
pub(super) fn diagnosis(r: &RowResult) -> String {
    match &r.diagnosis {
        Some(d) if r.pass() && d.stage == Stage::F32Noise => d.to_string(),
        _ if r.pass() => String::new(),
        Some(d) => d.to_string(),
        None => "unknown: not diagnosed".into(),
    }
}

/// The diagnosis's evidence, or empty.
pub(super) fn detail(r: &RowResult) -> &str {
    r.diagnosis.as_ref().map_or("", |d| d.detail.as_str())
}

/// Text for a one-line context: control characters (newlines, tabs) become spaces.
pub(super) fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_numpy_and_round_trip() {
        assert_eq!(sci(0.0123), "1.23e-02");
        assert_eq!(sci(4.0e5), "4.00e+05");
        assert_eq!(sci(f64::NAN), "NaN");
        assert_eq!(percent(3, 40), "7.5");
        assert_eq!(percent(1, 3), "33.3");
        assert_eq!(percent(40, 40), "100");
        assert_eq!(exact(1e-9), "1e-9");
        assert_eq!(exact(0.25), "0.25");
        assert_eq!(exact(f64::NAN), "NaN");
        assert_eq!(exact(f64::INFINITY), "inf");
        for x in [1.234_567_890_123e-7, 0.999_999_912_345_678_9, 3.0e200] {
            assert_eq!(exact(x).parse::<f64>().unwrap(), x);
        }
        assert_eq!(short(1.0), "1");
        assert_eq!(short(12.345678), "12.3457");
    }
}
