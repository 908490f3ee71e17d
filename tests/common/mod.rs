//! Helpers shared by the integration tests: the real CLI, the bundled suites, tensor files.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A bundled suite directory.
pub fn suite(name: &str) -> PathBuf {
    root().join("fixtures/suites").join(name)
}

/// Every bundled suite whose model is committed (not the fetched real model) and of a type embcheck computes
/// (the suites of unimplemented types check systems only: tests/families.rs).
pub fn bundled_suites() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures/suites"))
        .expect("fixtures/suites")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("suite.toml").is_file())
        .filter(|p| {
            let toml = std::fs::read_to_string(p.join("suite.toml")).unwrap();
            !toml.contains("fixtures/external") && !toml.contains("../external/")
        })
        .filter(|p| {
            let spec = embcheck::fixture::SuiteSpec::load(p).unwrap();
            let config = std::fs::read_to_string(Path::new(&spec.model_location).join("config.json")).unwrap();
            let model_type = serde_json::from_str::<serde_json::Value>(&config).unwrap()["model_type"].as_str().unwrap_or("").to_string();
            embcheck::model::config::IMPLEMENTED.contains(&model_type.as_str())
        })
        .collect();
    out.sort();
    assert!(out.len() >= 3, "expected the bundled suites under fixtures/suites, found {out:?}");
    out
}

/// Runs the real `embcheck` binary.
pub fn embcheck(args: &[&str]) -> Output {
    embcheck_env(args, &[])
}

/// Runs the real `embcheck` binary with extra environment variables.
pub fn embcheck_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_embcheck"));
    cmd.args(args).current_dir(root()).env_remove("GITHUB_STEP_SUMMARY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run embcheck")
}

/// stdout + stderr, for assertion messages.
pub fn show(o: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// All f32 tensors and i64 tensors of a safetensors file, plus its metadata.
pub struct Tensors {
    pub f32s: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub i64s: HashMap<String, (Vec<usize>, Vec<i64>)>,
    pub metadata: HashMap<String, String>,
}

pub fn read_tensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut t = Tensors { f32s: HashMap::new(), i64s: HashMap::new(), metadata: meta.metadata().clone().unwrap_or_default() };
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        match view.dtype() {
            safetensors::Dtype::F32 => {
                let v = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
                t.f32s.insert(name, (shape, v));
            }
            safetensors::Dtype::I64 => {
                let v = view.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
                t.i64s.insert(name, (shape, v));
            }
            other => panic!("{}: unexpected dtype {other:?} of {name}", path.display()),
        }
    }
    t
}

pub fn write_tensors(path: &Path, t: &Tensors) {
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (k, (s, v)) in &t.f32s {
        owned.push((k.clone(), safetensors::Dtype::F32, s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect()));
    }
    for (k, (s, v)) in &t.i64s {
        owned.push((k.clone(), safetensors::Dtype::I64, s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(k, d, s, b)| (k.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, Some(t.metadata.clone()), path).unwrap();
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A copy of a bundled suite in a temporary directory, its model path made absolute.
pub fn suite_copy(name: &str, tmp: &Path) -> PathBuf {
    let src = suite(name);
    let dest = tmp.join(name);
    copy_dir(&src, &dest);
    let toml = std::fs::read_to_string(src.join("suite.toml")).unwrap();
    let model_line = toml.lines().find(|l| l.trim_start().starts_with("model")).expect("model line");
    let rel = model_line.split('"').nth(1).expect("quoted model");
    let abs = src.join(rel).canonicalize().expect("model dir");
    let fixed = toml.replace(model_line, &format!("model = {:?}", abs.to_string_lossy()));
    std::fs::write(dest.join("suite.toml"), fixed).unwrap();
    dest
}

/// Relative L2 of two vectors, in f64.
pub fn rel_l2(a: &[f32], e: &[f32]) -> f64 {
    assert_eq!(a.len(), e.len());
    let d: f64 = a.iter().zip(e).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum::<f64>().sqrt();
    let n: f64 = e.iter().map(|y| (*y as f64).powi(2)).sum::<f64>().sqrt();
    d / n
}

/// A stand-in for the protocol only: a minimal OpenAI-style embedding server on 127.0.0.1 answering from a
/// table text → vector; `GET /info` and anything else is 404. One request per connection (`Connection: close`).
pub fn serve_openai(table: std::collections::HashMap<String, Vec<f32>>) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/embeddings", listener.local_addr().unwrap());
    let table = std::sync::Arc::new(table);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let table = table.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap();
                        }
                    }
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body).unwrap();
                let (status, reply) = if request_line.starts_with("POST /v1/embeddings") {
                    let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let data: Vec<serde_json::Value> = req["input"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .enumerate()
                        .map(|(i, t)| serde_json::json!({"index": i, "embedding": table[t.as_str().unwrap()]}))
                        .collect();
                    ("200 OK", serde_json::json!({"object": "list", "model": "fake", "data": data}).to_string())
                } else {
                    ("404 Not Found", "{\"error\": \"not found\"}".to_string())
                };
                let mut s = stream;
                let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}", reply.len());
            });
        }
    });
    url
}
