//! The bisect matrix: embcheck's own encoder made into a faulty "port" with one classic port bug at a time,
//! each bug written into a copy of the model (weights or config.json) so that the port computes exactly what a
//! port with that bug computes. `bisect` must name the stage the bug was put in — layer, sub-layer — and, where
//! the bug is positional, exactly the tokens it touches; a faithful port must be located nowhere. Every row runs
//! through the file route (`embcheck embed --layers`, then `embcheck bisect --against FILE`, the real CLI) and
//! the closure route (`Suite::bisect_with`). The reference is the suite's layers.safetensors, recorded from the
//! Python model by scripts/generate_layers.py.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use common::{embcheck, show, suite};
use embcheck::bisect::{own_stages, Bisection, LayerStates, TextStates};
use embcheck::{Model, Suite};

/// The token positions a positional bug touches in a text with these ids.
type Positions = fn(&[u32], &Family) -> Vec<usize>;

/// A port bug, and where it must be found.
struct Bug {
    name: &'static str,
    /// Writes the bug into the model copy in `dir`.
    inject: fn(&Path, &Family),
    /// The stage it must be located at.
    stage: &'static str,
    /// Which token positions of a text with these ids it must name (`None`: not positional, any non-empty set).
    tokens: Option<Positions>,
}

/// What the injections need to know of the model.
struct Family {
    suite: &'static str,
    /// Position ids start here (BERT 0, XLM-R pad + 1).
    first_position: usize,
    /// XLM-R's padding id, which does not advance the position (transformers' `create_position_ids_from_input_ids`).
    pad: Option<u32>,
    heads: usize,
    hidden: usize,
    layer_norm_eps: f64,
}

const BERT: Family = Family { suite: "tiny-bert-mean", first_position: 0, pad: None, heads: 4, hidden: 32, layer_norm_eps: 1e-12 };
const XLMR: Family = Family { suite: "tiny-xlmr-m3", first_position: 2, pad: Some(1), heads: 4, hidden: 32, layer_norm_eps: 1e-5 };

/// Positions a port with a 32-row position table clamps: every token whose position id is past the 32nd.
const CLAMP: usize = 32;

/// Each token's position id as transformers computes it: BERT 0..n; XLM-R `pad + cumsum(id != pad)`, a pad
/// token keeping `pad`.
fn position_ids(ids: &[u32], f: &Family) -> Vec<usize> {
    match f.pad {
        None => (0..ids.len()).collect(),
        Some(pad) => {
            let mut seen = 0;
            ids.iter()
                .map(|&id| {
                    if id == pad {
                        pad as usize
                    } else {
                        seen += 1;
                        pad as usize + seen
                    }
                })
                .collect()
        }
    }
}

fn bugs() -> Vec<Bug> {
    vec![
        Bug { name: "faithful", inject: |_, _| {}, stage: "", tokens: None },
        Bug {
            // 1e-12 (BERT) where the model says 1e-5, or 1e-5 where it says 1e-12: every LayerNorm, the first in the embeddings.
            name: "LayerNorm epsilon",
            inject: |dir, f| set_config(dir, "layer_norm_eps", serde_json::json!(if f.layer_norm_eps < 1e-6 { 1e-5 } else { 1e-12 })),
            stage: "embeddings",
            tokens: None,
        },
        Bug {
            name: "tanh GELU for erf GELU",
            inject: |dir, _| set_config(dir, "hidden_act", serde_json::json!("gelu_pytorch_tanh")),
            stage: "layers.0.mlp",
            tokens: None,
        },
        Bug {
            // XLM-R counted from 0 instead of pad + 1; BERT from 2 instead of 0: every row of the table moves.
            name: "position ids from the wrong start",
            inject: |dir, f| {
                edit_weights(dir, |w| {
                    let t = &w["embeddings.position_embeddings.weight"];
                    let rows = t.dim(0).unwrap();
                    let moved: Vec<Tensor> = (0..rows)
                        .map(|r| {
                            let from = if f.first_position > 0 { r.saturating_sub(f.first_position) } else { (r + 2).min(rows - 1) };
                            t.i(from).unwrap()
                        })
                        .collect();
                    w.insert("embeddings.position_embeddings.weight".into(), Tensor::stack(&moved, 0).unwrap());
                })
            },
            stage: "embeddings",
            tokens: Some(|ids, _| (0..ids.len()).collect()),
        },
        Bug {
            name: "position table clamped at 32 rows",
            inject: |dir, f| {
                edit_weights(dir, |w| {
                    let t = &w["embeddings.position_embeddings.weight"];
                    let last = f.first_position + CLAMP - 1;
                    let rows: Vec<Tensor> = (0..t.dim(0).unwrap()).map(|r| t.i(r.min(last)).unwrap()).collect();
                    w.insert("embeddings.position_embeddings.weight".into(), Tensor::stack(&rows, 0).unwrap());
                })
            },
            stage: "embeddings",
            tokens: Some(|ids, f| {
                let last = f.first_position + CLAMP - 1;
                position_ids(ids, f).iter().enumerate().filter(|(_, &p)| p > last).map(|(k, _)| k).collect()
            }),
        },
        Bug {
            name: "token-type embeddings left out",
            inject: |dir, _| {
                edit_weights(dir, |w| {
                    let t = w["embeddings.token_type_embeddings.weight"].zeros_like().unwrap();
                    w.insert("embeddings.token_type_embeddings.weight".into(), t);
                })
            },
            stage: "embeddings",
            tokens: Some(|ids, _| (0..ids.len()).collect()),
        },
        Bug {
            // Scores not divided by √d in layer 1: the same as its queries √d times larger.
            name: "missing 1/√d (layer 1)",
            inject: |dir, f| {
                let scale = ((f.hidden / f.heads) as f64).sqrt();
                edit_weights(dir, |w| {
                    for k in ["encoder.layer.1.attention.self.query.weight", "encoder.layer.1.attention.self.query.bias"] {
                        let t = (&w[k] * scale).unwrap();
                        w.insert(k.into(), t);
                    }
                })
            },
            stage: "layers.1.attention",
            tokens: None,
        },
        Bug {
            // Heads split as [d, heads] instead of [heads, d] (and merged back the same way) in layer 0.
            name: "head split transposed (layer 0)",
            inject: |dir, f| {
                let perm = transposed_heads(f);
                edit_weights(dir, |w| {
                    let idx = Tensor::new(perm.as_slice(), &Device::Cpu).unwrap();
                    for p in ["query", "key", "value"] {
                        for (k, dim) in [(format!("encoder.layer.0.attention.self.{p}.weight"), 0), (format!("encoder.layer.0.attention.self.{p}.bias"), 0)] {
                            let t = w[&k].index_select(&idx, dim).unwrap();
                            w.insert(k, t);
                        }
                    }
                    let k = "encoder.layer.0.attention.output.dense.weight";
                    let t = w[k].index_select(&idx, 1).unwrap();
                    w.insert(k.into(), t);
                })
            },
            stage: "layers.0.attention",
            tokens: None,
        },
    ]
}

/// Heads split as [d, heads] instead of [heads, d]: feature (head, j) of the model is read from (j, head) of
/// the port's layout.
fn transposed_heads(f: &Family) -> Vec<u32> {
    let (heads, d) = (f.heads, f.hidden / f.heads);
    (0..heads).flat_map(|hd| (0..d).map(move |j| (j * heads + hd) as u32)).collect()
}

fn set_config(dir: &Path, key: &str, value: serde_json::Value) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v[key] = value;
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

fn edit_weights(dir: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let path = dir.join("model.safetensors");
    let mut w = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    edit(&mut w);
    candle_core::safetensors::save(&w, &path).unwrap();
}

/// A copy of `model` with `bug` written into it.
fn port_model(model: &Path, bug: &Bug, family: &Family) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(model).unwrap() {
        let e = e.unwrap();
        copy(&e.path(), &dir.path().join(e.file_name()));
    }
    (bug.inject)(dir.path(), family);
    dir
}

fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}

/// Checks one bisection against the bug's expected stage and tokens.
fn expect(b: &Bisection, bug: &Bug, family: &Family, reference: &LayerStates, route: &str) {
    let what = format!("{} / {} / {route}:\n{}", family.suite, bug.name, embcheck::report::bisect::terminal(b));
    if bug.stage.is_empty() {
        assert!(b.passed(), "a faithful port must be located nowhere: {what}");
        return;
    }
    let first = b.first.as_ref().unwrap_or_else(|| panic!("nothing located: {what}"));
    assert_eq!(first.stage, bug.stage, "{what}");
    for t in &b.texts {
        let ids = &reference.texts.iter().find(|r| r.index == t.index).unwrap().ids;
        let n = ids.len();
        match (bug.tokens, &t.located) {
            (Some(expected), located) => {
                let want = expected(ids, family);
                match located {
                    Some(l) => {
                        assert_eq!(l.stage, bug.stage, "text {}: {what}", t.index);
                        assert_eq!(l.tokens, want, "text {} ({n} tokens): {what}", t.index);
                    }
                    None => assert!(want.is_empty(), "text {} ({n} tokens) should be located at tokens {want:?}: {what}", t.index),
                }
            }
            (None, Some(l)) => {
                assert_eq!(l.stage, bug.stage, "text {}: {what}", t.index);
                assert!(!l.tokens.is_empty(), "{what}");
            }
            (None, None) => {}
        }
    }
}

fn run_matrix(family: &Family, bugs: Vec<Bug>) {
    let dir = suite(family.suite);
    let s = Suite::load(&dir).unwrap();
    let reference = s.layer_reference().unwrap();
    let model_dir = PathBuf::from(s.model_location());
    for bug in bugs {
        let port = port_model(&model_dir, &bug, family);
        // The closure route: the port in the caller's own code.
        let model = Model::load(port.path().to_str().unwrap(), DType::F32).unwrap();
        let b = s.bisect_with(&mut |ids: &[u32]| own_stages(&model, ids)).unwrap();
        expect(&b, &bug, family, &reference, "closure");
        // The file route: the real CLI, `embed --layers` then `bisect --against`.
        let out_dir = tempfile::tempdir().unwrap();
        let file = out_dir.path().join("port.safetensors");
        let o = embcheck(&["embed", "--suite", dir.to_str().unwrap(), "--model", port.path().to_str().unwrap(), "--layers", "--output", file.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        let report = out_dir.path().join("reports");
        let o = embcheck(&["bisect", dir.to_str().unwrap(), "--against", file.to_str().unwrap(), "--report-dir", report.to_str().unwrap()]);
        let json: Bisection = serde_json::from_slice(&std::fs::read(report.join("bisect.json")).unwrap()).unwrap();
        assert_eq!(o.status.code(), Some(if bug.stage.is_empty() { 0 } else { 1 }), "{}", show(&o));
        expect(&json, &bug, family, &reference, "file");
        eprintln!("{} / {}: {}", family.suite, bug.name, embcheck::report::bisect::verdict(&b));
    }
}

#[test]
fn every_port_bug_is_located_on_bert() {
    run_matrix(&BERT, bugs());
}

#[test]
fn every_port_bug_is_located_on_xlmr() {
    run_matrix(&XLMR, bugs());
}

#[test]
fn every_port_bug_is_located_on_modernbert() {
    run_matrix(&MODERNBERT, modernbert_bugs());
}

const MODERNBERT: Family = Family { suite: "tiny-modernbert", first_position: 0, pad: None, heads: 4, hidden: 32, layer_norm_eps: 1e-5 };
/// tiny-modernbert's `local_attention` 16: layers 1 and 2 (not global: every 3rd from 0 is) see ±8 tokens.
const HALF_WINDOW: usize = 8;

/// Rows of ModernBERT's fused `Wqkv` [3H, H] for q (0), k (1) or v (2), reordered per head by `perm` (a
/// permutation of 0..H): feature `perm[o]` of the model becomes feature `o`.
fn permute_qkv_rows(w: &mut HashMap<String, Tensor>, layer: usize, parts: &[usize], perm: &[u32], f: &Family) {
    let key = format!("layers.{layer}.attn.Wqkv.weight");
    let h = f.hidden as u32;
    let mut rows: Vec<u32> = (0..3 * h).collect();
    for &p in parts {
        for (o, &src) in perm.iter().enumerate() {
            rows[p * f.hidden + o] = p as u32 * h + src;
        }
    }
    let idx = Tensor::new(rows.as_slice(), &Device::Cpu).unwrap();
    let t = w[&key].index_select(&idx, 0).unwrap();
    w.insert(key, t);
}

/// The classic ModernBERT port bugs, written into the weights or config.json.
fn modernbert_bugs() -> Vec<Bug> {
    vec![
        Bug { name: "faithful", inject: |_, _| {}, stage: "", tokens: None },
        Bug {
            name: "LayerNorm epsilon 1e-12 for 1e-5",
            inject: |dir, _| set_config(dir, "norm_eps", serde_json::json!(1e-12)),
            stage: "embeddings",
            tokens: None,
        },
        Bug {
            name: "tanh GELU in the GeGLU for erf GELU",
            inject: |dir, _| set_config(dir, "hidden_activation", serde_json::json!("gelu_pytorch_tanh")),
            stage: "layers.0.mlp",
            tokens: None,
        },
        Bug {
            // Rotating pairs (x0, x1), (x2, x3), … instead of (x_j, x_j+d/2): the same as the model with its q and k
            // features reordered within each head (even features first) under the right rotation.
            name: "RoPE on interleaved pairs (layer 0)",
            inject: |dir, f| {
                let d = f.hidden / f.heads;
                let perm: Vec<u32> = (0..f.heads)
                    .flat_map(|hd| (0..d).map(move |j| (hd * d + if j < d / 2 { 2 * j } else { 2 * (j - d / 2) + 1 }) as u32))
                    .collect();
                edit_weights(dir, |w| permute_qkv_rows(w, 0, &[0, 1], &perm, f));
            },
            stage: "layers.0.attention",
            tokens: None,
        },
        Bug {
            name: "RoPE base: the local theta in the global layers",
            inject: |dir, _| set_config(dir, "global_rope_theta", serde_json::json!(10000.0)),
            stage: "layers.0.attention",
            tokens: None,
        },
        Bug {
            // Local layers attending to every token: only tokens with a key past ±8 of them change.
            name: "sliding window ignored",
            inject: |dir, _| set_config(dir, "local_attention", serde_json::json!(16384)),
            stage: "layers.1.attention",
            tokens: Some(|ids, _| {
                let n = ids.len();
                (0..n).filter(|&t| t > HALF_WINDOW || t + HALF_WINDOW < n - 1).collect()
            }),
        },
        Bug {
            name: "missing 1/√d (layer 1)",
            inject: |dir, f| {
                let scale = ((f.hidden / f.heads) as f64).sqrt();
                edit_weights(dir, |w| {
                    let key = "layers.1.attn.Wqkv.weight";
                    let t = &w[key];
                    let q = (t.narrow(0, 0, f.hidden).unwrap() * scale).unwrap();
                    let rest = t.narrow(0, f.hidden, 2 * f.hidden).unwrap();
                    w.insert(key.into(), Tensor::cat(&[q, rest], 0).unwrap());
                })
            },
            stage: "layers.1.attention",
            tokens: None,
        },
        Bug {
            name: "head split transposed (layer 0)",
            inject: |dir, f| {
                let perm = transposed_heads(f);
                edit_weights(dir, |w| {
                    permute_qkv_rows(w, 0, &[0, 1, 2], &perm, f);
                    let idx = Tensor::new(perm.as_slice(), &Device::Cpu).unwrap();
                    let t = w["layers.0.attn.Wo.weight"].index_select(&idx, 1).unwrap();
                    w.insert("layers.0.attn.Wo.weight".into(), t);
                })
            },
            stage: "layers.0.attention",
            tokens: None,
        },
    ]
}

/// A port that attends to padding (no attention mask): computed in padded batches whose pad tokens are fed as
/// real tokens. Only the texts shorter than their batch's longest change, from layer 0's attention on, at
/// every token.
#[test]
fn attention_to_padding_is_located_at_layer_0_attention_on_the_padded_texts() {
    for family in [&BERT, &XLMR] {
        let s = Suite::load(suite(family.suite)).unwrap();
        let reference = s.layer_reference().unwrap();
        let model = Model::load(s.model_location(), DType::F32).unwrap();
        let mut texts = Vec::new();
        let mut padded = Vec::new();
        for batch in reference.texts.chunks(4) {
            let longest = batch.iter().map(|t| t.ids.len()).max().unwrap();
            for t in batch {
                let mut ids = t.ids.clone();
                ids.resize(longest, model.pad_id);
                let stages = own_stages(&model, &ids).unwrap();
                let h = reference.hidden;
                let states = stages.iter().map(|(_, v)| v[..t.ids.len() * h].to_vec()).collect();
                texts.push(TextStates { index: t.index, ids: t.ids.clone(), states });
                if t.ids.len() < longest {
                    padded.push(t.index);
                }
            }
        }
        let stages = own_stages(&model, &reference.texts[0].ids).unwrap().into_iter().map(|(n, _)| n).collect();
        let port = LayerStates { stages, hidden: reference.hidden, texts, metadata: Default::default() };
        let b = embcheck::bisect::compare(family.suite, "padding attended", &reference, &port).unwrap();
        let what = embcheck::report::bisect::terminal(&b);
        assert_eq!(b.first.as_ref().map(|f| f.stage.as_str()), Some("layers.0.attention"), "{what}");
        let located: Vec<usize> = b.texts.iter().filter(|t| t.located.is_some()).map(|t| t.index).collect();
        assert_eq!(located, padded, "exactly the texts that were padded: {what}");
    }
}

/// A port that tokenizes otherwise (here: cut at 16 tokens) is a tokenization problem, not a layer: said per
/// text, those texts not bisected, the run not passed (exit 1).
#[test]
fn other_tokens_are_reported_not_bisected() {
    let dir = suite("tiny-bert-mean");
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("cut.safetensors");
    let o = embcheck(&["embed", "--suite", dir.to_str().unwrap(), "--layers", "--max-length", "16", "--output", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let report = out_dir.path().join("reports");
    let o = embcheck(&["bisect", dir.to_str().unwrap(), "--against", file.to_str().unwrap(), "--report-dir", report.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let b: Bisection = serde_json::from_slice(&std::fs::read(report.join("bisect.json")).unwrap()).unwrap();
    let reference = Suite::load(&dir).unwrap().layer_reference().unwrap();
    for (t, r) in b.texts.iter().zip(&reference.texts) {
        assert_eq!(t.error.is_some(), r.ids.len() > 16, "text {}: {:?}", t.index, t.error);
    }
    assert!(b.first.is_none(), "the texts that tokenize alike are faithful");
    assert!(String::from_utf8_lossy(&o.stdout).contains("tokens differ from position 15"), "{}", show(&o));
}
