//! `embcheck check --against`: a system under test as a file, a command or an HTTP server, each with the
//! right verdict and diagnosis. The systems compute with embcheck's own faithful pipeline (through
//! `embcheck embed`, or the library), with one thing changed: what changed must be what is diagnosed.
//! The HTTP server here is a stand-in for the protocol only (OpenAI and TEI's published API), named as such;
//! real servers are checked by scripts/check-systems.sh.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;

/// `(id, pass, diagnosis, detail)` per row of a diff.csv.
fn rows(reports: &Path, suite: &str) -> Vec<(String, bool, String)> {
    let path = reports.join(suite).join("diff.csv");
    let mut r = csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let h = r.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let (id, pass, diag) = (col("id"), col("pass"), col("diagnosis"));
    r.records().map(|rec| rec.unwrap()).map(|rec| (rec[id].to_string(), &rec[pass] == "true", rec[diag].to_string())).collect()
}

fn bin() -> String {
    env!("CARGO_BIN_EXE_embcheck").to_string()
}

/// Runs `check SUITE --against SOURCE --pipeline P`; returns exit code, rows, output.
fn check_against(suite: &str, source: &str, pipeline: &str, extra: &[&str], reports: &Path) -> (Option<i32>, Vec<(String, bool, String)>, String) {
    let dir = common::suite(suite);
    let mut args = vec!["check", dir.to_str().unwrap(), "--against", source, "--pipeline", pipeline, "--report-dir", reports.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = embcheck(&args);
    let rows = if reports.join(suite).join("diff.csv").is_file() { rows(reports, suite) } else { Vec::new() };
    (o.status.code(), rows, show(&o))
}

/// `embcheck embed` as a `cmd:` system: the faithful pipeline, changed by `flags`.
fn embed_cmd(model: &str, pipeline: &str, flags: &str) -> String {
    format!("cmd:{} embed --model {} --pipeline {pipeline} {flags} --input - --output -", bin(), root().join("fixtures/models").join(model).display())
}

fn assert_all_failing_are(rows: &[(String, bool, String)], keyword: &str, out: &str) {
    let failing: Vec<_> = rows.iter().filter(|r| !r.1).collect();
    assert!(!failing.is_empty(), "nothing failed\n{out}");
    for r in failing {
        assert_eq!(r.2, keyword, "{}: {:?} instead of {keyword}\n{out}", r.0, r.2);
    }
}

#[test]
fn a_faithful_command_passes_and_each_change_is_diagnosed() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r");
    let (code, _, out) = check_against("tiny-bert-mean", &embed_cmd("tiny-bert-mean", "sentence-transformers", ""), "sentence-transformers", &[], &rep);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("CHECK tiny-bert-mean: command"), "{out}");

    let cases: &[(&str, &str, &str, &str, &str)] = &[
        // (suite, system's pipeline, flags, checked pipeline, diagnosis)
        ("tiny-bert-mean", "sentence-transformers", "--max-length 12", "sentence-transformers", "truncation"),
        ("tiny-bert-mean", "normalized-cls", "", "sentence-transformers", "pooling"),
        ("tiny-xlmr-m3", "raw-cls", "--max-length 128", "normalized-cls", "normalization"),
        ("tiny-xlmr-m3", "sentence-transformers", "--max-length 128 --st-strip false", "sentence-transformers", "preprocessing"),
        ("tiny-xlmr-m3", "normalized-cls", "--max-length 128 --dtype f16", "normalized-cls", "precision"),
    ];
    let model = |suite: &str| if suite == "tiny-bert-mean" { "tiny-bert-mean" } else { "tiny-xlmr-m3" };
    for (suite, sys, flags, checked, keyword) in cases {
        // What is tested here is the diagnosis itself: a budget that lets it finish on a loaded machine.
        let (code, rows, out) = check_against(suite, &embed_cmd(model(suite), sys, flags), checked, &["--diagnosis-budget", "120"], &rep);
        assert_eq!(code, Some(1), "{sys} {flags}\n{out}");
        assert_all_failing_are(&rows, keyword, &out);
    }
}

#[test]
fn a_text_the_command_rejects_fails_alone_and_a_command_that_cannot_start_is_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r");
    // The faithful output, with the line of one text replaced by an error and another line malformed.
    let good = tmp.path().join("good.jsonl");
    let o = embcheck(&["embed", "--model", "fixtures/models/tiny-bert-mean", "--pipeline", "sentence-transformers", "--input",
        "fixtures/suites/tiny-bert-mean/texts.jsonl", "--output", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    let lines: Vec<String> = std::fs::read_to_string(&good).unwrap().lines().map(str::to_string).collect();
    let first_id: String = serde_json::from_str::<serde_json::Value>(&lines[0]).unwrap()["id"].as_str().unwrap().into();
    let mut edited = lines.clone();
    edited[0] = serde_json::json!({"id": first_id, "error": "input too long"}).to_string();
    edited.remove(1);
    let script = tmp.path().join("answers.jsonl");
    std::fs::write(&script, edited.join("\n")).unwrap();
    let (code, rows, out) = check_against("tiny-bert-mean", &format!("cmd:cat > /dev/null; cat {}", script.display()), "sentence-transformers", &[], &rep);
    assert_eq!(code, Some(1), "{out}");
    let failing: Vec<_> = rows.iter().filter(|r| !r.1).collect();
    assert_eq!(failing.len(), 2, "the rejected text and the unanswered one\n{out}");
    assert!(failing.iter().all(|r| r.2 == "rejected"), "{failing:?}");
    let csv = std::fs::read_to_string(rep.join("tiny-bert-mean/diff.csv")).unwrap();
    assert!(csv.contains("input too long") && csv.contains("gave no output for this text"), "{csv}");

    // A line that answers no text: the program's output cannot be trusted (exit 2, the line named).
    edited.insert(1, "{not json".into());
    std::fs::write(&script, edited.join("\n")).unwrap();
    let (code, _, out) = check_against("tiny-bert-mean", &format!("cmd:cat > /dev/null; cat {}", script.display()), "sentence-transformers", &[], &rep);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("line 2: invalid JSON"), "{out}");

    let (code, _, out) = check_against("tiny-bert-mean", "cmd:exit 3", "sentence-transformers", &[], &rep);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("exit status: 3 after answering 0 of 42 texts"), "{out}");
    let (code, _, out) = check_against("tiny-bert-mean", "cmd:cat > /dev/null", "sentence-transformers", &[], &rep);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("answered no text"), "{out}");
}

fn write_npy(path: &Path, rows: &[Vec<f32>]) {
    let dim = rows[0].len();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {dim}), }}", rows.len());
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    for r in rows {
        for x in r {
            b.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn files_are_matched_by_id_or_by_order_and_bad_ids_are_input_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r");
    let jsonl = tmp.path().join("v.jsonl");
    let o = embcheck(&["embed", "--model", "fixtures/models/tiny-xlmr-m3", "--pipeline", "raw-cls", "--max-length", "128", "--input",
        "fixtures/suites/tiny-xlmr-m3/texts.jsonl", "--output", jsonl.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    let (code, _, out) = check_against("tiny-xlmr-m3", jsonl.to_str().unwrap(), "raw-cls", &[], &rep);
    assert_eq!(code, Some(0), "{out}");
    let (code, rows, out) = check_against("tiny-xlmr-m3", jsonl.to_str().unwrap(), "normalized-cls", &[], &rep);
    assert_eq!(code, Some(1), "{out}");
    assert_all_failing_are(&rows, "normalization", &out);

    // Shuffled lines are matched by id.
    let mut lines: Vec<String> = std::fs::read_to_string(&jsonl).unwrap().lines().map(str::to_string).collect();
    lines.reverse();
    let shuffled = tmp.path().join("shuffled.jsonl");
    std::fs::write(&shuffled, lines.join("\n")).unwrap();
    let (code, _, out) = check_against("tiny-xlmr-m3", shuffled.to_str().unwrap(), "raw-cls", &[], &rep);
    assert_eq!(code, Some(0), "{out}");

    // A missing, a duplicate and an unknown id: each an input error naming it.
    let ids: Vec<String> = lines.iter().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect();
    let variants: Vec<(Vec<String>, String)> = vec![
        (lines[1..].to_vec(), ids[0].clone()),
        ([lines.clone(), vec![lines[3].clone()]].concat(), ids[3].clone()),
        ([lines[1..].to_vec(), vec![lines[0].replace(&format!("\"{}\"", ids[0]), "\"no-such-id\"")]].concat(), "no-such-id".into()),
    ];
    for (content, named) in variants {
        let p = tmp.path().join("bad.jsonl");
        std::fs::write(&p, content.join("\n")).unwrap();
        let (code, _, out) = check_against("tiny-xlmr-m3", p.to_str().unwrap(), "raw-cls", &[], &rep);
        assert_eq!(code, Some(2), "{out}");
        assert!(out.contains(&named) && out.contains("bad.jsonl"), "{named}\n{out}");
    }

    // .npy has no ids: row order, exact count.
    let values: Vec<Vec<f32>> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect();
    let npy = tmp.path().join("v.npy");
    write_npy(&npy, &values);
    let (code, _, out) = check_against("tiny-xlmr-m3", npy.to_str().unwrap(), "raw-cls", &[], &rep);
    assert_eq!(code, Some(0), "{out}");
    write_npy(&npy, &values[1..]);
    let (code, _, out) = check_against("tiny-xlmr-m3", npy.to_str().unwrap(), "raw-cls", &[], &rep);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("41 rows and no ids"), "{out}");

    // diff takes the same formats.
    write_npy(&npy, &values);
    let o = embcheck(&["diff", npy.to_str().unwrap(), jsonl.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let narrow: Vec<Vec<f32>> = values.iter().map(|v| v[..v.len() - 1].to_vec()).collect();
    write_npy(&npy, &narrow);
    let o = embcheck(&["diff", npy.to_str().unwrap(), jsonl.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(show(&o).contains("dimensions differ"), "{}", show(&o));
}

/// A STAND-IN embedding server for the protocol only: OpenAI `/v1/embeddings` and TEI's `/embed`,
/// `/embed_sparse`, `/tokenize`, `/info` as TEI's OpenAPI document defines them, with vectors read from a
/// file `embcheck embed` wrote (real values, looked up by text). As TEI does, `/embed` L2-normalizes unless
/// the request says `"normalize": false`, and `/tokenize` does not truncate (its ids come from `tokenize_ids`
/// when given, a file made without truncation); `"truncate": false` is answered 422 for the texts the values
/// file cut (the longest ids of the file), as TEI refuses a text over its max length. It answers
/// `fail_status` (422 by default: a validation error that singles out the text) for texts containing
/// `fail_on`, 429 to the first `busy` requests, and 401 without the header `x-key: secret` when `auth`.
struct StandIn {
    url: String,
}

#[derive(Clone, Default)]
struct Behaviour {
    fail_on: Option<String>,
    fail_status: Option<u16>,
    busy: usize,
    auth: bool,
    /// Values of the same texts made without truncation: what `/tokenize` answers from.
    tokenize_ids: Option<PathBuf>,
}

impl StandIn {
    fn start(values: &Path, texts: &Path, b: Behaviour) -> StandIn {
        // Each text's line of a values file, by text.
        let read = |values: &Path| -> std::collections::HashMap<String, serde_json::Value> {
            std::fs::read_to_string(texts)
                .unwrap()
                .lines()
                .zip(std::fs::read_to_string(values).unwrap().lines())
                .map(|(t, v)| {
                    let t: serde_json::Value = serde_json::from_str(t).unwrap();
                    (t["text"].as_str().unwrap().to_string(), serde_json::from_str(v).unwrap())
                })
                .collect()
        };
        let by_text = read(values);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let untruncated = b.tokenize_ids.as_deref().map_or_else(|| by_text.clone(), read);
        let cut = by_text.values().filter_map(|v| v["token_ids"].as_array().map(Vec::len)).max().unwrap_or(0);
        let (by_text, untruncated) = (Arc::new(by_text), Arc::new(untruncated));
        let busy = Arc::new(AtomicUsize::new(b.busy));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (by_text, untruncated, busy, b) = (by_text.clone(), untruncated.clone(), busy.clone(), b.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut first = String::new();
                    reader.read_line(&mut first).unwrap();
                    let (mut len, mut authed) = (0usize, false);
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        let l = h.to_ascii_lowercase();
                        if let Some(v) = l.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                        authed |= l.trim() == "x-key: secret";
                        if h.trim().is_empty() {
                            break;
                        }
                    }
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
                    let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                    let inputs: Vec<String> = req.get("input").or(req.get("inputs")).and_then(|v| v.as_array())
                        .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect()).unwrap_or_default();
                    let (code, answer) = if b.auth && !authed {
                        (401, serde_json::json!({"error": "unauthorized"}))
                    } else if path != "/info" && busy.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                        (429, serde_json::json!({"error": "busy"}))
                    } else if b.fail_on.as_ref().is_some_and(|f| inputs.iter().any(|t| t.contains(f.as_str()))) {
                        (b.fail_status.unwrap_or(422), serde_json::json!({"error": "Input validation error", "error_type": "Validation"}))
                    } else if path.starts_with("/embed") && req["truncate"] == serde_json::json!(false)
                        && inputs.iter().any(|t| by_text[t]["token_ids"].as_array().map_or(0, Vec::len) >= cut)
                    {
                        (422, serde_json::json!({"error": "Input validation error: inputs must have less tokens", "error_type": "Validation"}))
                    } else {
                        match path.as_str() {
                            "/info" => (200, serde_json::json!({"model_id": "stand-in/tiny", "model_sha": "abc123", "max_client_batch_size": 32})),
                            "/v1/embeddings" => (200, serde_json::json!({"object": "list", "data": inputs.iter().enumerate().rev()
                                .map(|(i, t)| serde_json::json!({"object": "embedding", "index": i, "embedding": by_text[t]["embedding"]})).collect::<Vec<_>>()})),
                            "/embed" => {
                                // TEI normalizes unless told not to.
                                let normalize = req.get("normalize").and_then(|n| n.as_bool()).unwrap_or(true);
                                (200, serde_json::json!(inputs.iter().map(|t| {
                                    let v: Vec<f64> = by_text[t]["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
                                    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
                                    if normalize { v.iter().map(|x| x / n).collect() } else { v }
                                }).collect::<Vec<_>>()))
                            }
                            "/embed_sparse" => (200, serde_json::json!(inputs.iter().map(|t| by_text[t]["sparse"].as_object().unwrap().iter()
                                .map(|(k, w)| serde_json::json!({"index": k.parse::<u32>().unwrap(), "value": w})).collect::<Vec<_>>()).collect::<Vec<_>>())),
                            "/tokenize" if untruncated.contains_key(inputs.first().map(String::as_str).unwrap_or("")) => (200, serde_json::json!(inputs.iter()
                                .map(|t| untruncated[t]["token_ids"].as_array().unwrap().iter().map(|id| serde_json::json!({"id": id, "text": "", "special": false, "start": null, "stop": null})).collect::<Vec<_>>()).collect::<Vec<_>>())),
                            _ => (404, serde_json::json!({"error": "not found"})),
                        }
                    };
                    let body = answer.to_string();
                    let _ = write!(stream, "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                });
            }
        });
        StandIn { url }
    }
}

fn embed_jsonl(tmp: &Path, model: &str, pipeline: &str, suite: &str, flags: &[&str]) -> (PathBuf, PathBuf) {
    let out = tmp.join(format!("{model}-{pipeline}.jsonl"));
    let texts = common::suite(suite).join("texts.jsonl");
    let mut args = vec!["embed", "--model", model, "--pipeline", pipeline, "--input", texts.to_str().unwrap(), "--output", out.to_str().unwrap()];
    args.extend_from_slice(flags);
    let o = embcheck(&args);
    assert!(o.status.success(), "{}", show(&o));
    (out, texts)
}

#[test]
fn servers_over_http_openai_and_tei_protocols() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r");
    let (values, texts) = embed_jsonl(tmp.path(), "fixtures/models/tiny-bert-mean", "sentence-transformers", "tiny-bert-mean", &[]);

    let s = StandIn::start(&values, &texts, Behaviour::default());
    let (code, _, out) = check_against("tiny-bert-mean", &s.url, "sentence-transformers", &["--api", "openai"], &rep);
    assert_eq!(code, Some(0), "{out}");
    let (code, _, out) = check_against("tiny-bert-mean", &s.url, "sentence-transformers", &[], &rep);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("api=tei") && out.contains("model_id=stand-in/tiny"), "detected TEI from /info\n{out}");
    let json = std::fs::read_to_string(rep.join("summary.json")).unwrap();
    assert!(json.contains("abc123"), "the server's revision is in the report");

    // One text answered 422: that text fails with the server's message, the others pass.
    let s = StandIn::start(&values, &texts, Behaviour { fail_on: Some("quick brown".into()), ..Default::default() });
    let (code, rows, out) = check_against("tiny-bert-mean", &s.url, "sentence-transformers", &["--api", "openai"], &rep);
    assert_eq!(code, Some(1), "{out}");
    let failing: Vec<_> = rows.iter().filter(|r| !r.1).collect();
    assert!(!failing.is_empty() && failing.len() < 3 && failing.iter().all(|r| r.2 == "rejected"), "{failing:?}\n{out}");
    assert!(rows.iter().filter(|r| r.1).count() >= rows.len() - 2, "{out}");
    // Answered 500 (which singles out no text): the batch holding it fails, nothing is sent again alone.
    let s = StandIn::start(&values, &texts, Behaviour { fail_on: Some("quick brown".into()), fail_status: Some(500), ..Default::default() });
    let (code, rows, out) = check_against("tiny-bert-mean", &s.url, "sentence-transformers", &["--api", "openai", "--client-batch-size", "8"], &rep);
    assert_eq!(code, Some(1), "{out}");
    let failing = rows.iter().filter(|r| !r.1).count();
    assert!((1..=16).contains(&failing), "{failing} failed\n{out}");

    // TEI normalizes unless told not to: raw-cls values pass only because embcheck asks for them as they are.
    let (raw, _) = embed_jsonl(tmp.path(), "fixtures/models/tiny-bert-mean", "raw-cls", "tiny-bert-mean", &[]);
    let s = StandIn::start(&raw, &texts, Behaviour::default());
    let (code, _, out) = check_against("tiny-bert-mean", &s.url, "raw-cls", &["--api", "tei"], &rep);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("normalize=false") && out.contains("truncate=true"), "{out}");

    // 429 is retried; a header's value comes from the environment and is never printed.
    let s = StandIn::start(&values, &texts, Behaviour { busy: 2, auth: true, ..Default::default() });
    let dir = common::suite("tiny-bert-mean");
    let args = ["check", dir.to_str().unwrap(), "--against", &s.url, "--pipeline", "sentence-transformers", "--api", "tei", "--header", "x-key=EMBCHECK_TEST_KEY", "--report-dir", rep.to_str().unwrap()];
    let o = embcheck_env(&args, &[("EMBCHECK_TEST_KEY", "secret")]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(!show(&o).contains("secret") && !std::fs::read_to_string(rep.join("summary.json")).unwrap().contains("secret"));
    let o = embcheck_env(&args, &[]);
    assert_eq!(o.status.code(), Some(2), "an unset variable is a usage error\n{}", show(&o));

    // Nothing listening: exit 2, one line.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, _, out) = check_against("tiny-bert-mean", &format!("http://127.0.0.1:{port}"), "sentence-transformers", &[], &rep);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("cannot reach"), "{out}");
}

#[test]
fn tei_sparse_and_token_ids_from_tokenize() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r");
    let (values, texts) = embed_jsonl(tmp.path(), "fixtures/models/tiny-xlmr-m3", "m3-sparse", "tiny-xlmr-m3", &["--max-length", "128"]);
    let s = StandIn::start(&values, &texts, Behaviour::default());
    let (code, _, out) = check_against("tiny-xlmr-m3", &s.url, "m3-sparse", &["--api", "tei"], &rep);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("gave no token ids"), "ids came from /tokenize\n{out}");
    // TEI's /tokenize does not truncate while /embed does: where the vectors agree, longer ids from
    // /tokenize are a note, not a failure.
    let kept = tmp.path().join("m3-sparse-128.jsonl");
    std::fs::copy(&values, &kept).unwrap();
    let (untruncated, _) = embed_jsonl(tmp.path(), "fixtures/models/tiny-xlmr-m3", "m3-sparse", "tiny-xlmr-m3", &["--max-length", "2560"]);
    let s = StandIn::start(&kept, &texts, Behaviour { tokenize_ids: Some(untruncated), ..Default::default() });
    let (code, _, out) = check_against("tiny-xlmr-m3", &s.url, "m3-sparse", &["--api", "tei"], &rep);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("other token ids from the server's tokenize endpoint"), "{out}");
    // Truncated at 12 tokens: the ids from /tokenize prove it.
    let (values, texts) = embed_jsonl(tmp.path(), "fixtures/models/tiny-xlmr-m3", "m3-sparse", "tiny-xlmr-m3", &["--max-length", "12"]);
    let s = StandIn::start(&values, &texts, Behaviour::default());
    let (code, rows, out) = check_against("tiny-xlmr-m3", &s.url, "m3-sparse", &["--diagnosis-budget", "120"], &rep);
    assert_eq!(code, Some(1), "{out}");
    assert_all_failing_are(&rows, "truncation", &out);
}

#[test]
fn an_unusual_cut_off_without_token_ids_is_found_among_the_texts_own() {
    let tmp = tempfile::tempdir().unwrap();
    let (values, _) = embed_jsonl(tmp.path(), "fixtures/models/tiny-bert-mean", "sentence-transformers", "tiny-bert-mean", &["--max-length", "11"]);
    // The system says nothing of its tokens: only recomputation can show where it cut.
    let stripped: Vec<String> = std::fs::read_to_string(&values)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("token_ids");
            v.to_string()
        })
        .collect();
    let file = tmp.path().join("no-ids.jsonl");
    std::fs::write(&file, stripped.join("\n")).unwrap();
    let (code, rows, out) = check_against("tiny-bert-mean", file.to_str().unwrap(), "sentence-transformers", &["--diagnosis-budget", "120"], &tmp.path().join("r"));
    assert_eq!(code, Some(1), "{out}");
    assert_all_failing_are(&rows, "truncation", &out);
    assert!(out.contains("max length 11"), "{out}");
}
