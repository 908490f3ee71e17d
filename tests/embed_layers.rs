//! `embed --layers`: every stage's hidden states from embcheck's own encoder in the documented layers file
//! layout. The last stage is checked against the Python reference (raw-cls is its [CLS] row, as transformers
//! computed it); every layer's output against the output of the same model cut to that many layers, so no
//! stage is off by one.

mod common;

use std::path::{Path, PathBuf};

use common::{copy_dir, embcheck, read_tensors, rel_l2, root, show, suite, Tensors};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn layers(args: &[&str], out: &Path) -> Tensors {
    let all = [args, &["--layers", "--output", s(out)]].concat();
    let o = embcheck(&all);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    read_tensors(out)
}

/// A copy of `model` whose config.json keeps only its first `n` layers.
fn cut(model: &Path, n: usize, dest: &Path) -> PathBuf {
    copy_dir(model, dest);
    let path = dest.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let key = if config.get("n_layers").is_some() { "n_layers" } else { "num_hidden_layers" };
    config[key] = serde_json::json!(n);
    std::fs::write(&path, config.to_string()).unwrap();
    dest.to_path_buf()
}

#[test]
fn layers_file_holds_every_state_and_the_last_is_the_python_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = suite("tiny-bert-mean");
    let t = layers(&["embed", "--suite", s(&dir), "--pipeline", "raw-cls"], &tmp.path().join("l.safetensors"));
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root().join("fixtures/models/tiny-bert-mean/config.json")).unwrap()).unwrap();
    let (n_layers, hidden) = (config["num_hidden_layers"].as_u64().unwrap() as usize, config["hidden_size"].as_u64().unwrap() as usize);

    // The documented layout.
    assert_eq!(t.metadata["format"], "embcheck-layers/1");
    let stages: Vec<String> = serde_json::from_str(&t.metadata["stages"]).unwrap();
    let mut expected = vec!["embeddings".to_string()];
    for i in 0..n_layers {
        expected.push(format!("layers.{i}.attention"));
        expected.push(format!("layers.{i}.mlp"));
    }
    assert_eq!(stages, expected);
    let texts = embcheck::fixture::read_texts(&dir.join("texts.jsonl")).unwrap();
    let ids: Vec<String> = serde_json::from_str(&t.metadata["ids"]).unwrap();
    assert_eq!(ids, texts.iter().map(|x| x.id.clone()).collect::<Vec<_>>());
    let offsets = &t.i64s["offsets"].1;
    assert_eq!(offsets.len(), texts.len() + 1);
    assert_eq!(t.i64s["text_index"].1, (0..texts.len() as i64).collect::<Vec<_>>());
    let tokens = *offsets.last().unwrap() as usize;
    assert_eq!(t.i64s["input_ids"].0, [tokens]);
    assert_eq!(t.f32s.len(), stages.len(), "{:?}", t.f32s.keys());
    for st in &stages {
        assert_eq!(t.f32s[st].0, [tokens, hidden], "{st}");
    }

    // The token ids are the reference's (the Python tokenizer's), text by text.
    let reference = read_tensors(&dir.join("reference.safetensors"));
    assert_eq!(t.i64s["input_ids"].1, reference.i64s["raw-cls.input_ids"].1, "{:?}", reference.i64s.keys());
    // The last state's [CLS] rows are raw-cls: within f32 noise of transformers' own.
    let (shape, want) = &reference.f32s["raw-cls"];
    assert_eq!(shape, &[texts.len(), hidden]);
    let last = &t.f32s[&format!("layers.{}.mlp", n_layers - 1)].1;
    for (k, w) in want.chunks(hidden).enumerate() {
        let at = offsets[k] as usize * hidden;
        let got = &last[at..at + hidden];
        assert!(rel_l2(got, w) < 1e-5, "text {k}: rel L2 {}", rel_l2(got, w));
    }
    // …and no stage repeats the one before (each changes the rows).
    for w in stages.windows(2) {
        assert!(t.f32s[&w[1]].1 != t.f32s[&w[0]].1, "{} repeats {}", w[1], w[0]);
    }
}

#[test]
fn state_i_is_the_output_of_the_model_cut_to_i_layers() {
    let tmp = tempfile::tempdir().unwrap();
    for (model, layers_of) in [("tiny-bert-mean", 2), ("tiny-distilbert", 2), ("tiny-mpnet", 2), ("tiny-xlmr-spm", 2)] {
        let dir = root().join("fixtures/models").join(model);
        let input = suite("tiny-bert-mean").join("texts.jsonl");
        let common = ["embed", "--pipeline", "raw-cls", "--max-length", "64", "--input", s(&input)];
        let full = layers(&[&common[..], &["--model", s(&dir)]].concat(), &tmp.path().join(format!("{model}.safetensors")));
        for i in 0..=layers_of {
            let short_dir = cut(&dir, i, &tmp.path().join(format!("{model}-{i}")));
            let short = layers(&[&common[..], &["--model", s(&short_dir)]].concat(), &tmp.path().join(format!("{model}-{i}.safetensors")));
            // The output of the first i layers: the embeddings for i = 0, else layer i − 1's MLP block.
            let stage = if i == 0 { "embeddings".to_string() } else { format!("layers.{}.mlp", i - 1) };
            assert_eq!(short.f32s.len(), 1 + 2 * i, "{model} cut to {i} layers");
            assert!(short.f32s[&stage].1 == full.f32s[&stage].1, "{model}: {stage} is not the output of its first {i} layers");
        }
    }
}

#[test]
fn layers_refuses_what_it_cannot_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = suite("tiny-bert-mean");
    let o = embcheck(&["embed", "--suite", s(&dir), "--pipeline", "raw-cls", "--layers", "--output", s(&tmp.path().join("l.jsonl"))]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(show(&o).contains("--layers writes a .safetensors file"), "{}", show(&o));
    let o = embcheck(&["embed", "--suite", s(&dir), "--pipeline", "raw-cls", "--layers", "--against", "cmd:cat", "--output", s(&tmp.path().join("l.safetensors"))]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}
