//! Where weights come from: hub ids through a hub cache laid out on disk (no network), sharded safetensors.

mod common;

use common::*;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// `<cache>/models--embcheck--tiny/{refs/main, snapshots/<commit>/...}`.
fn lay_out_cache(cache: &std::path::Path) {
    let repo = cache.join("models--embcheck--tiny");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    copy_dir(&root().join("fixtures/models/tiny-bert-mean"), &repo.join("snapshots").join(COMMIT));
}

fn embed(model: &str, out: &std::path::Path, cache: &std::path::Path) -> std::process::Output {
    let input = suite("tiny-bert-mean").join("texts.jsonl");
    embcheck_env(
        &["embed", "--model", model, "--pipeline", "sentence-transformers", "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap()],
        &[("HF_HUB_CACHE", cache.to_str().unwrap()), ("HF_HUB_OFFLINE", "1")],
    )
}

#[test]
fn hub_id_resolves_through_the_cache_like_the_local_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    lay_out_cache(&cache);
    let local = tmp.path().join("local.safetensors");
    let input = suite("tiny-bert-mean").join("texts.jsonl");
    let o = embcheck(&[
        "embed",
        "--model",
        "fixtures/models/tiny-bert-mean",
        "--pipeline",
        "sentence-transformers",
        "--input",
        input.to_str().unwrap(),
        "--output",
        local.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", show(&o));
    for id in ["embcheck/tiny", "embcheck/tiny@main", &format!("embcheck/tiny@{COMMIT}")] {
        let out = tmp.path().join("hub.safetensors");
        let o = embed(id, &out, &cache);
        assert!(o.status.success(), "{id}: {}", show(&o));
        assert_eq!(read_tensors(&out).f32s["embeddings"], read_tensors(&local).f32s["embeddings"], "{id}");
    }
}

#[test]
fn missing_hub_model_offline_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    lay_out_cache(&cache);
    let out = tmp.path().join("x.safetensors");
    for id in ["embcheck/absent", "embcheck/tiny@v9"] {
        let o = embed(id, &out, &cache);
        assert_eq!(o.status.code(), Some(2), "{}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("HF_HUB_OFFLINE") && err.contains(id), "{err}");
    }
    assert!(!out.exists());
}

/// A model whose weights are split into shards named by `model.safetensors.index.json`.
#[test]
fn sharded_safetensors_give_the_same_vectors() {
    let tmp = tempfile::tempdir().unwrap();
    let sharded = tmp.path().join("sharded");
    copy_dir(&root().join("fixtures/models/tiny-xlmr-m3"), &sharded);
    let single = sharded.join("model.safetensors");
    let t = read_tensors(&single);
    std::fs::remove_file(&single).unwrap();
    let mut names: Vec<&String> = t.f32s.keys().collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for (k, part) in names.chunks(names.len() / 2 + 1).enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", k + 1);
        let shard = Tensors {
            f32s: part.iter().map(|n| ((*n).clone(), t.f32s[*n].clone())).collect(),
            i64s: Default::default(),
            metadata: [("format".to_string(), "pt".to_string())].into(),
        };
        write_tensors(&sharded.join(&file), &shard);
        for n in part {
            weight_map.insert((*n).clone(), serde_json::Value::String(file.clone()));
        }
    }
    assert!(t.i64s.is_empty());
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(sharded.join("model.safetensors.index.json"), index.to_string()).unwrap();

    let input = suite("tiny-xlmr-m3").join("texts.jsonl");
    let mut outs = Vec::new();
    for model in [root().join("fixtures/models/tiny-xlmr-m3"), sharded] {
        let out = tmp.path().join(format!("{}.safetensors", outs.len()));
        let o = embcheck(&[
            "embed", "--model", model.to_str().unwrap(), "--pipeline", "normalized-cls",
            "--input", input.to_str().unwrap(), "--output", out.to_str().unwrap(), "--max-length", "128",
        ]);
        assert!(o.status.success(), "{}", show(&o));
        outs.push(read_tensors(&out).f32s["embeddings"].clone());
    }
    assert_eq!(outs[0], outs[1]);
}
