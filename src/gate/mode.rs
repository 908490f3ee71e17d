//! Which question a gate answers. **Parity**: is the candidate the baseline's model served another way
//! (another stack, precision, server, hardware)? Then its vectors must agree: drift and neighbour agreement
//! gate. **Upgrade**: is the candidate, another model, at least as good? Then retrieval quality gates
//! (non-inferiority, see [`super::upgrade`]); neighbour churn, drift and whether the spaces compare are
//! the re-index impact, reported and not gated.

use serde::Serialize;

/// The question a gate answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The same model through another stack, precision, server or hardware.
    Parity,
    /// Another model.
    Upgrade,
}

impl Mode {
    /// `parity` or `upgrade`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Parity => "parity",
            Mode::Upgrade => "upgrade",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "parity" => Ok(Mode::Parity),
            "upgrade" => Ok(Mode::Upgrade),
            other => Err(format!("unknown mode {other:?}: expected parity or upgrade")),
        }
    }
}

/// What is known of both sides when no `--mode` is given.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// The baseline model's weights file and its sha256, as the suite's reference records them.
    pub baseline_weights: Option<(String, String)>,
    /// The sha256 of the candidate's file of the same name, when the candidate is a model on disk.
    pub candidate_weights_sha: Option<String>,
    /// The baseline's model id (the last part of the suite's `model`).
    pub baseline_id: String,
    /// The candidate's model id, where it names one (a hub id, a server's `--model-name`).
    pub candidate_id: Option<String>,
    /// The width of the baseline's and of the candidate's dense vectors.
    pub widths: Option<(usize, usize)>,
}

/// The mode and why.
#[derive(Debug, Clone, Serialize)]
pub struct ModeChoice {
    /// The mode.
    pub mode: Mode,
    /// Why: `--mode` given, or what decided it (a clause: "the candidate's vectors have width 768, …").
    pub reason: String,
}

/// The last part of a model's name: `org/name@rev` and `../x/name` both give `name`, lowercased.
pub fn model_id(name: &str) -> String {
    let name = name.split('@').next().unwrap_or(name).trim_end_matches('/');
    name.rsplit(['/', '\\']).next().unwrap_or(name).to_lowercase()
}

/// The mode `known` implies, or a message asking for `--mode` when it implies none. Same weights or the
/// same model id → parity; another width → upgrade. Other weights of the same width and no id say
/// nothing: a quantized copy and a fine-tune look alike.
pub fn decide(k: &Known) -> Result<ModeChoice, String> {
    let choice = |mode, reason: String| Ok(ModeChoice { mode, reason });
    if let (Some((file, base)), Some(cand)) = (&k.baseline_weights, &k.candidate_weights_sha) {
        if base == cand {
            return choice(Mode::Parity, format!("the candidate's {file} has the baseline's sha256 ({}…): the same weights", &base[..12.min(base.len())]));
        }
    }
    if let Some((b, c)) = k.widths {
        if b != c {
            return choice(Mode::Upgrade, format!("the candidate's vectors have width {c}, the baseline's {b}: another model"));
        }
    }
    if let Some(id) = &k.candidate_id {
        if model_id(id) == model_id(&k.baseline_id) {
            return choice(Mode::Parity, format!("the candidate names the baseline's model id ({})", model_id(id)));
        }
    }
    Err("cannot tell whether the candidate is the baseline's model served another way or another model: pass --mode parity or --mode upgrade".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Known {
        Known { baseline_id: "../../external/all-MiniLM-L6-v2".into(), ..Known::default() }
    }

    #[test]
    fn same_weights_or_id_is_parity_another_width_is_upgrade_else_ask() {
        let w = |s: &str| Some(("model.safetensors".to_string(), s.to_string()));
        let k = Known { baseline_weights: w("abc"), candidate_weights_sha: Some("abc".into()), widths: Some((384, 768)), ..known() };
        assert_eq!(decide(&k).unwrap().mode, Mode::Parity, "the weights decide first");
        let k = Known { baseline_weights: w("abc"), candidate_weights_sha: Some("abd".into()), widths: Some((384, 768)), ..known() };
        assert_eq!(decide(&k).unwrap().mode, Mode::Upgrade);
        let k = Known { candidate_id: Some("sentence-transformers/all-minilm-l6-v2@main".into()), widths: Some((384, 384)), ..known() };
        assert_eq!(decide(&k).unwrap().mode, Mode::Parity);
        let k = Known { baseline_weights: w("abc"), candidate_weights_sha: Some("abd".into()), widths: Some((384, 384)), ..known() };
        assert!(decide(&k).unwrap_err().contains("--mode"));
        let k = Known { candidate_id: Some("bge-small-en".into()), widths: Some((384, 384)), ..known() };
        assert!(decide(&k).is_err(), "another name of the same width is not proof of another model");
    }
}
