//! A gate that runs unattended: hostile servers, programs and flags, each with the right exit code and
//! message, no secret in any output or report, and no case running past its timeout or deadline by more than
//! a few seconds. The servers here are HOSTILE STAND-INS on 127.0.0.1, written to misbehave one way each;
//! they speak the OpenAI / TEI protocols only as far as each case needs. Every wait in them is bounded.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// One request as the hostile server saw it.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

impl Req {
    fn inputs(&self) -> Vec<String> {
        self.body.get("input").or(self.body.get("inputs")).and_then(Value::as_array).map_or_else(Vec::new, |a| {
            a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()
        })
    }
}

/// What the hostile server answers.
enum Reply {
    Json(u16, Value),
    /// Status, extra headers, body.
    Raw(u16, Vec<(&'static str, String)>, String),
    /// Never answers (holds the connection for at most 60 s).
    Hang,
}

/// A hostile server: `handler` decides each answer; every request is logged.
struct Hostile {
    url: String,
    log: Arc<Mutex<Vec<Req>>>,
}

impl Hostile {
    /// The URL of its OpenAI endpoint (named, so that the client probes nothing else for it).
    fn ep(&self) -> String {
        format!("{}/v1/embeddings", self.url)
    }

    fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log: Arc<Mutex<Vec<Req>>> = Arc::default();
        let handler = Arc::new(handler);
        let log2 = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (handler, log) = (handler.clone(), log2.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut first = String::new();
                    if reader.read_line(&mut first).is_err() {
                        return;
                    }
                    let mut headers = HashMap::new();
                    for _ in 0..100 {
                        let mut h = String::new();
                        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                        }
                    }
                    let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
                    let mut body = vec![0; len];
                    let _ = reader.read_exact(&mut body);
                    let mut parts = first.split_whitespace();
                    let req = Req {
                        method: parts.next().unwrap_or("").to_string(),
                        path: parts.next().unwrap_or("").to_string(),
                        headers,
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    };
                    log.lock().unwrap().push(req.clone());
                    let (code, extra, body) = match handler(&req) {
                        Reply::Json(code, v) => (code, Vec::new(), v.to_string()),
                        Reply::Raw(code, extra, body) => (code, extra, body),
                        Reply::Hang => {
                            std::thread::sleep(Duration::from_secs(60));
                            return;
                        }
                    };
                    let mut head = format!("HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
                    for (k, v) in extra {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    let _ = write!(stream, "{head}\r\n{body}");
                });
            }
        });
        Hostile { url, log }
    }

    /// How many requests went to `path`.
    fn count(&self, path: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|r| r.path == path).count()
    }
}

/// The faithful vectors of a suite's texts, by text (embcheck's own pipeline through `embcheck embed`), and
/// the texts in order.
fn faithful(tmp: &Path, model: &str, pipeline: &str, suite: &str, flags: &[&str]) -> (Arc<HashMap<String, Value>>, PathBuf) {
    let out = tmp.join(format!("{suite}-{pipeline}.jsonl"));
    let texts = common::suite(suite).join("texts.jsonl");
    let model = root().join("fixtures/models").join(model);
    let mut args = vec!["embed", "--model", model.to_str().unwrap(), "--pipeline", pipeline, "--input", texts.to_str().unwrap(), "--output", out.to_str().unwrap()];
    args.extend_from_slice(flags);
    let o = embcheck(&args);
    assert!(o.status.success(), "{}", show(&o));
    let by_text = std::fs::read_to_string(&texts)
        .unwrap()
        .lines()
        .zip(std::fs::read_to_string(&out).unwrap().lines())
        .map(|(t, v)| (serde_json::from_str::<Value>(t).unwrap()["text"].as_str().unwrap().to_string(), serde_json::from_str(v).unwrap()))
        .collect();
    (Arc::new(by_text), out)
}

/// An OpenAI-style answer for `inputs`, from the faithful values.
fn openai(values: &HashMap<String, Value>, inputs: &[String]) -> Value {
    // A text not of the suite (a client's probe) gets some vector.
    let value = |t: &String| values.get(t).map_or(json!([0.5, 0.5]), |v| v["embedding"].clone());
    json!({"object": "list", "data": inputs.iter().enumerate().map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": value(t)})).collect::<Vec<_>>()})
}

/// Runs `embcheck` with `args` (and env), returning the output and how long it took.
fn timed(args: &[&str], env: &[(&str, &str)]) -> (std::process::Output, Duration) {
    let t = Instant::now();
    let o = embcheck_env(args, env);
    (o, t.elapsed())
}

/// `check SUITE --against SOURCE --pipeline P --report-dir R extra…`.
fn check_args<'a>(suite: &'a str, source: &'a str, pipeline: &'a str, reports: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["check", suite, "--against", source, "--pipeline", pipeline, "--report-dir", reports];
    a.extend_from_slice(extra);
    a
}

/// Every file under `dir` (recursively) and the output: none may hold `secret`.
fn assert_secret_nowhere(secret: &str, o: &std::process::Output, dir: &Path) {
    let out = show(o);
    assert!(!out.contains(secret), "the secret is printed\n{out}");
    let mut stack = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files += 1;
                let bytes = std::fs::read(&p).unwrap();
                assert!(!String::from_utf8_lossy(&bytes).contains(secret), "{} holds the secret", p.display());
            }
        }
    }
    let _ = files;
}

fn suite_dir(name: &str) -> String {
    common::suite(name).to_str().unwrap().to_string()
}

#[test]
fn invalid_headers_are_exit_2_naming_the_header_never_the_value() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r");
    let s = Hostile::start(|_| Reply::Json(404, json!({"error": "not found"})));
    let suite = suite_dir("tiny-bert-mean");
    let secret = "sk-unattended-0123456789";
    for (header, value, named) in [
        ("Authorization=EMBCHECK_T_KEY", format!("Bearer {secret}\r"), "Authorization"),
        ("Authorization=EMBCHECK_T_KEY", format!("Bearer {secret}\n"), "Authorization"),
        ("X Api Key=EMBCHECK_T_KEY", secret.to_string(), "X Api Key"),
        ("X-Key:=EMBCHECK_T_KEY", secret.to_string(), "X-Key:"),
    ] {
        let args = check_args(&suite, &s.url, "sentence-transformers", rep.to_str().unwrap(), &["--header", header]);
        let (o, _) = timed(&args, &[("EMBCHECK_T_KEY", &value)]);
        assert_eq!(o.status.code(), Some(2), "{header}\n{}", show(&o));
        assert!(show(&o).contains(named), "{}", show(&o));
        assert_secret_nowhere(secret, &o, tmp.path());
    }
    assert_eq!(s.log.lock().unwrap().len(), 0, "nothing is sent with an invalid header");
}

#[test]
fn no_secret_reaches_output_or_reports_whatever_the_server_echoes() {
    let tmp = tempfile::tempdir().unwrap();
    let (values, _) = faithful(tmp.path(), "tiny-bert-mean", "sentence-transformers", "tiny-bert-mean", &[]);
    let suite = suite_dir("tiny-bert-mean");
    let secret = "sk-echoed-9876543210";

    // 401 echoing the key: an authentication failure, exit 2, after one request.
    let s = Hostile::start(move |r| {
        let key = r.headers.get("authorization").cloned().unwrap_or_default();
        Reply::Json(401, json!({"error": {"message": format!("Incorrect API key provided: {key}"), "type": "invalid_request_error"}}))
    });
    let rep = tmp.path().join("r401");
    let args = check_args(&suite, &s.url, "sentence-transformers", rep.to_str().unwrap(), &["--header", "Authorization=EMBCHECK_T_KEY"]);
    let (o, _) = timed(&args, &[("EMBCHECK_T_KEY", &format!("Bearer {secret}"))]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(show(&o).contains("authentication failed"), "{}", show(&o));
    assert_eq!(s.log.lock().unwrap().len(), 1, "one request, not one per text");
    assert_secret_nowhere(secret, &o, tmp.path());

    // A server that echoes the key in its errors for some texts and in its model id: the texts fail with the
    // message, redacted in every report.
    let v = values.clone();
    let s = Hostile::start(move |r| {
        let key = r.headers.get("authorization").cloned().unwrap_or_default();
        match r.path.as_str() {
            "/v1/models" => Reply::Json(200, json!({"data": [{"id": format!("model-for-{key}")}]})),
            "/v1/embeddings" if r.inputs().iter().any(|t| t.contains("quick brown")) => {
                Reply::Json(422, json!({"error": format!("text refused for key {key}")}))
            }
            "/v1/embeddings" => Reply::Json(200, openai(&v, &r.inputs())),
            _ => Reply::Json(404, json!({"error": format!("no such route for {key}")})),
        }
    });
    let rep = tmp.path().join("rok");
    let args = check_args(&suite, &s.url, "sentence-transformers", rep.to_str().unwrap(), &["--header", "Authorization=EMBCHECK_T_KEY"]);
    let (o, _) = timed(&args, &[("EMBCHECK_T_KEY", &format!("Bearer {secret}"))]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(std::fs::read_to_string(rep.join("tiny-bert-mean/diff.csv")).unwrap().contains("text refused for key"), "{}", show(&o));
    assert!(rep.join("summary.json").is_file() && rep.join("junit.xml").is_file());
    assert_secret_nowhere(secret, &o, tmp.path());

    // A password in the URL: sent as Basic credentials, never printed or reported.
    let v = values.clone();
    let s = Hostile::start(move |r| match r.headers.get("authorization").map(String::as_str) {
        // base64("user:pw-9876543210-secret")
        Some("Basic dXNlcjpwdy05ODc2NTQzMjEwLXNlY3JldA==") if r.path == "/v1/embeddings" => Reply::Json(200, openai(&v, &r.inputs())),
        Some("Basic dXNlcjpwdy05ODc2NTQzMjEwLXNlY3JldA==") => Reply::Json(404, json!({"error": "not found"})),
        other => Reply::Json(401, json!({"error": format!("bad credentials {other:?}")})),
    });
    let with_password = s.url.replace("http://", "http://user:pw-9876543210-secret@");
    let rep = tmp.path().join("rurl");
    let (o, _) = timed(&check_args(&suite, &with_password, "sentence-transformers", rep.to_str().unwrap(), &["--api", "openai"]), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_secret_nowhere("pw-9876543210-secret", &o, tmp.path());
    assert_secret_nowhere("dXNlcjpwdy05ODc2NTQzMjEwLXNlY3JldA", &o, tmp.path());
    // Unreachable with a password in the URL: the error names the host, not the password.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (o, _) = timed(&check_args(&suite, &format!("http://user:pw-9876543210-secret@127.0.0.1:{port}"), "sentence-transformers", rep.to_str().unwrap(), &[]), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(show(&o).contains("cannot reach"), "{}", show(&o));
    assert_secret_nowhere("pw-9876543210-secret", &o, tmp.path());
}

#[test]
fn a_server_that_never_answers_costs_one_timeout_not_one_per_text() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r");
    let suite = suite_dir("tiny-bert-mean");
    // Silent from the first request: exit 2 after one timeout.
    let s = Hostile::start(|_| Reply::Hang);
    let (o, took) = timed(&check_args(&suite, &s.url, "sentence-transformers", rep.to_str().unwrap(), &["--timeout", "1"]), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(show(&o).contains("no answer in 1 s"), "{}", show(&o));
    assert!(took < Duration::from_secs(10), "{took:?}");

    // Answers what it is asked about itself, never an embedding: each batch times out once, no text is sent
    // again alone.
    let s = Hostile::start(|r| match r.path.as_str() {
        "/v1/embeddings" => Reply::Hang,
        _ => Reply::Json(404, json!({"error": "not found"})),
    });
    let (o, took) = timed(&check_args(&suite, &s.ep(), "sentence-transformers", rep.to_str().unwrap(), &["--timeout", "1", "--model-name", "m"]), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(show(&o).contains("rejected every text") && show(&o).contains("no answer in 1 s"), "{}", show(&o));
    // 2 batches, of 32 and 10 texts.
    assert_eq!(s.count("/v1/embeddings"), 2);
    assert!(took < Duration::from_secs(12), "{took:?}");
}

#[test]
fn retry_after_and_slow_servers_are_capped_by_the_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r");
    let suite = suite_dir("tiny-bert-mean");
    let s = Hostile::start(|r| match r.path.as_str() {
        "/v1/embeddings" => Reply::Raw(429, vec![("Retry-After", "30".into())], json!({"error": "slow down"}).to_string()),
        _ => Reply::Json(404, json!({"error": "not found"})),
    });
    let (o, took) = timed(&check_args(&suite, &s.ep(), "sentence-transformers", rep.to_str().unwrap(), &["--model-name", "m", "--deadline", "3"]), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(show(&o).contains("HTTP 429") && show(&o).contains("past the deadline"), "{}", show(&o));
    assert!(took < Duration::from_secs(8), "{took:?}");

    // Each request answered after 1.5 s, one text per request: the deadline cuts the rest off.
    let tmp2 = tempfile::tempdir().unwrap();
    let (values, _) = faithful(tmp2.path(), "tiny-bert-mean", "sentence-transformers", "tiny-bert-mean", &[]);
    let s = Hostile::start(move |r| match r.path.as_str() {
        "/v1/embeddings" => {
            std::thread::sleep(Duration::from_millis(1500));
            Reply::Json(200, openai(&values, &r.inputs()))
        }
        _ => Reply::Json(404, json!({"error": "not found"})),
    });
    let ep = s.ep();
    let args = check_args(&suite, &ep, "sentence-transformers", rep.to_str().unwrap(), &["--model-name", "m", "--deadline", "4", "--client-batch-size", "1", "--concurrency", "1"]);
    let (o, took) = timed(&args, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(std::fs::read_to_string(rep.join("tiny-bert-mean/diff.csv")).unwrap().contains("deadline"), "{}", show(&o));
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn a_wrong_batch_answer_fails_its_texts_and_is_never_sent_again_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r");
    let suite = suite_dir("tiny-bert-mean");
    let (values, _) = faithful(tmp.path(), "tiny-bert-mean", "sentence-transformers", "tiny-bert-mean", &[]);
    // One embedding too few whenever a request holds several texts: the batching bug embcheck exists to catch.
    let v = values.clone();
    let s = Hostile::start(move |r| match r.path.as_str() {
        "/v1/embeddings" => {
            let inputs = r.inputs();
            let keep = if inputs.len() > 1 { inputs.len() - 1 } else { 1 };
            Reply::Json(200, openai(&v, &inputs[..keep]))
        }
        _ => Reply::Json(404, json!({"error": "not found"})),
    });
    let (o, _) = timed(&check_args(&suite, &s.ep(), "sentence-transformers", rep.to_str().unwrap(), &["--model-name", "m", "--client-batch-size", "41"]), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let csv = std::fs::read_to_string(rep.join("tiny-bert-mean/diff.csv")).unwrap();
    assert!(csv.contains("the server answered 40 embeddings for 41 inputs"), "{}", show(&o));
    assert_eq!(csv.matches("40 embeddings for 41 inputs").count(), 41, "every text of the batch fails");
    // 41 + 1: nothing sent again.
    assert_eq!(s.count("/v1/embeddings"), 2, "no text re-sent alone");

    // An index twice: the same.
    let v = values.clone();
    let s = Hostile::start(move |r| match r.path.as_str() {
        "/v1/embeddings" => {
            let mut a = openai(&v, &r.inputs());
            if let Some(d) = a["data"].as_array_mut().filter(|d| d.len() > 1) {
                d[1]["index"] = json!(0);
            }
            Reply::Json(200, a)
        }
        _ => Reply::Json(404, json!({"error": "not found"})),
    });
    let (o, _) = timed(&check_args(&suite, &s.ep(), "sentence-transformers", rep.to_str().unwrap(), &["--model-name", "m", "--client-batch-size", "41"]), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(std::fs::read_to_string(rep.join("tiny-bert-mean/diff.csv")).unwrap().contains("index 0 appears twice"), "{}", show(&o));

    // 422 singles out a text: the batch is sent again text by text, and only that text fails.
    let v = values.clone();
    let s = Hostile::start(move |r| match r.path.as_str() {
        "/v1/embeddings" if r.inputs().iter().any(|t| t.contains("quick brown")) => Reply::Json(422, json!({"error": "Input validation error"})),
        "/v1/embeddings" => Reply::Json(200, openai(&v, &r.inputs())),
        _ => Reply::Json(404, json!({"error": "not found"})),
    });
    let (o, _) = timed(&check_args(&suite, &s.ep(), "sentence-transformers", rep.to_str().unwrap(), &["--model-name", "m"]), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let csv = std::fs::read_to_string(rep.join("tiny-bert-mean/diff.csv")).unwrap();
    let failing = csv.lines().filter(|l| l.contains("Input validation error")).count();
    assert!((1..3).contains(&failing), "{failing} texts failed\n{}", show(&o));

    // 500 does not single out a text: the batch fails with the server's message, nothing is sent again.
    let v = values.clone();
    let s = Hostile::start(move |r| match r.path.as_str() {
        "/v1/embeddings" if r.inputs().iter().any(|t| t.contains("quick brown")) => Reply::Json(500, json!({"error": "model crashed"})),
        "/v1/embeddings" => Reply::Json(200, openai(&v, &r.inputs())),
        _ => Reply::Json(404, json!({"error": "not found"})),
    });
    let (o, _) = timed(&check_args(&suite, &s.ep(), "sentence-transformers", rep.to_str().unwrap(), &["--model-name", "m", "--client-batch-size", "8"]), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert_eq!(s.count("/v1/embeddings"), 6, "6 batches of at most 8, none re-sent");
}

#[test]
fn redirects_are_followed_with_method_and_body_or_named() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r");
    let suite = suite_dir("tiny-bert-mean");
    let (values, _) = faithful(tmp.path(), "tiny-bert-mean", "sentence-transformers", "tiny-bert-mean", &[]);
    for code in [307u16, 308] {
        let v = values.clone();
        let s = Hostile::start(move |r| match r.path.as_str() {
            "/v1/embeddings" => Reply::Raw(code, vec![("Location", "/moved/v1/embeddings".into())], String::new()),
            "/moved/v1/embeddings" if r.method == "POST" => Reply::Json(200, openai(&v, &r.inputs())),
            _ => Reply::Json(404, json!({"error": "not found"})),
        });
        let (o, _) = timed(&check_args(&suite, &s.ep(), "sentence-transformers", rep.to_str().unwrap(), &["--model-name", "m"]), &[]);
        assert_eq!(o.status.code(), Some(0), "HTTP {code}\n{}", show(&o));
    }
    // 302 would turn the POST into a GET: named, not followed.
    let s = Hostile::start(|r| match r.path.as_str() {
        "/v1/embeddings" => Reply::Raw(302, vec![("Location", "/elsewhere".into())], String::new()),
        _ => Reply::Json(404, json!({"error": "not found"})),
    });
    let (o, _) = timed(&check_args(&suite, &s.ep(), "sentence-transformers", rep.to_str().unwrap(), &["--model-name", "m"]), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(show(&o).contains("HTTP 302") && show(&o).contains("redirected to /elsewhere"), "{}", show(&o));
    // To another host (another port is another origin): the headers are not sent there.
    let other = Hostile::start(|_| Reply::Json(404, json!({"error": "not found"})));
    let target = format!("{}/v1/embeddings", other.url);
    let s = Hostile::start(move |r| match r.path.as_str() {
        "/v1/embeddings" => Reply::Raw(307, vec![("Location", target.clone())], String::new()),
        _ => Reply::Json(404, json!({"error": "not found"})),
    });
    let (o, _) = timed(&check_args(&suite, &s.ep(), "sentence-transformers", rep.to_str().unwrap(), &["--model-name", "m"]), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(show(&o).contains("another host"), "{}", show(&o));
    assert_eq!(other.log.lock().unwrap().len(), 0);
}

#[test]
fn numeric_flags_are_validated_without_a_panic() {
    let suite = suite_dir("tiny-bert-mean");
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r");
    for (flag, value) in [
        ("--timeout", "1e300"),
        ("--timeout", "0"),
        ("--timeout", "-1"),
        ("--timeout", "nan"),
        ("--timeout", "inf"),
        ("--deadline", "1e20"),
        ("--deadline", "0"),
        ("--concurrency", "0"),
        ("--concurrency", "100000"),
        ("--client-batch-size", "0"),
        ("--diagnosis-budget", "-1"),
        ("--diagnosis-budget", "nan"),
        ("--diagnosis-budget", "1e300"),
    ] {
        let arg = format!("{flag}={value}");
        let (o, _) = timed(&check_args(&suite, "http://127.0.0.1:9", "sentence-transformers", rep.to_str().unwrap(), &[&arg]), &[]);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}\n{}", show(&o));
        assert!(show(&o).contains(flag) && !show(&o).contains("panicked"), "{flag} {value}\n{}", show(&o));
    }
    // A thread count no machine has would take the process down starting threads: refused first.
    let (o, took) = timed(&["--threads", "100000000", "check", &suite, "--report-dir", rep.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// A `cmd:` program: the shell line `script`, fed the suite's texts.
fn answers_file(tmp: &Path, lines: &[String]) -> PathBuf {
    let p = tmp.join(format!("answers-{}.jsonl", lines.len()));
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

#[test]
fn commands_are_bounded_in_time_and_their_exit_status_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r");
    let r = rep.to_str().unwrap();
    let suite = suite_dir("tiny-bert-mean");
    let (_, good) = faithful(tmp.path(), "tiny-bert-mean", "sentence-transformers", "tiny-bert-mean", &[]);
    let lines: Vec<String> = std::fs::read_to_string(&good).unwrap().lines().map(str::to_string).collect();
    let all = answers_file(tmp.path(), &lines);
    let five = answers_file(tmp.path(), &lines[..5]);

    // Never answers: killed after the timeout (its child `sleep` too), every text rejected: exit 2.
    let (o, took) = timed(&check_args(&suite, "cmd:sleep 1000", "sentence-transformers", r, &["--timeout", "1"]), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(show(&o).contains("no answer in 1 s"), "{}", show(&o));
    assert!(took < Duration::from_secs(8), "{took:?}");

    // Answers 5 texts, then hangs: those 5 pass, the rest fail as rejected with the reason: exit 1.
    let cmd = format!("cmd:cat > /dev/null; cat {}; sleep 1000", five.display());
    let (o, took) = timed(&check_args(&suite, &cmd, "sentence-transformers", r, &["--timeout", "1"]), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let csv = std::fs::read_to_string(rep.join("tiny-bert-mean/diff.csv")).unwrap();
    assert_eq!(csv.matches("no answer in 1 s").count(), 37, "{}", show(&o));
    assert!(took < Duration::from_secs(8), "{took:?}");

    // Answers everything, then keeps running: killed after a short grace period; the check passes.
    let cmd = format!("cmd:cat > /dev/null; cat {}; sleep 1000", all.display());
    let (o, took) = timed(&check_args(&suite, &cmd, "sentence-transformers", r, &["--timeout", "30"]), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(std::fs::read_to_string(rep.join("summary.json")).unwrap().contains("killed"), "the report says how it ended");
    assert!(took < Duration::from_secs(10), "{took:?}");

    // Answers everything, then exits 3: an error naming the status.
    let cmd = format!("cmd:cat > /dev/null; cat {}; exit 3", all.display());
    let (o, _) = timed(&check_args(&suite, &cmd, "sentence-transformers", r, &[]), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(show(&o).contains("exit status: 3"), "{}", show(&o));

    // Writes lines that answer nothing, endlessly: they do not keep it alive past the timeout.
    let (o, took) = timed(&check_args(&suite, "cmd:cat > /dev/null; yes 'loading...'", "sentence-transformers", r, &["--timeout", "2"]), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(show(&o).contains("answer no text"), "{}", show(&o));
    assert!(took < Duration::from_secs(10), "{took:?}");

    // The deadline holds for a program that answers slowly but within each timeout.
    let cmd = format!("cmd:cat > /dev/null; while read -r l; do echo \"$l\"; sleep 0.5; done < {}", all.display());
    let (o, took) = timed(&check_args(&suite, &cmd, "sentence-transformers", r, &["--timeout", "5", "--deadline", "3"]), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(std::fs::read_to_string(rep.join("tiny-bert-mean/diff.csv")).unwrap().contains("deadline"), "{}", show(&o));
    assert!(took < Duration::from_secs(9), "{took:?}");
}

#[test]
fn duplicate_and_junk_answer_lines_are_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r");
    let r = rep.to_str().unwrap();
    let suite = suite_dir("tiny-bert-mean");
    let (_, good) = faithful(tmp.path(), "tiny-bert-mean", "sentence-transformers", "tiny-bert-mean", &[]);
    let lines: Vec<String> = std::fs::read_to_string(&good).unwrap().lines().map(str::to_string).collect();

    // A wrong vector, then the right one, for the same id: that text fails, whatever came last.
    let mut wrong: Value = serde_json::from_str(&lines[3]).unwrap();
    let id = wrong["id"].as_str().unwrap().to_string();
    wrong["embedding"][0] = json!(wrong["embedding"][0].as_f64().unwrap() + 0.5);
    let mut dup = lines.clone();
    dup.insert(3, wrong.to_string());
    let file = answers_file(tmp.path(), &dup);
    let (o, _) = timed(&check_args(&suite, &format!("cmd:cat > /dev/null; cat {}", file.display()), "sentence-transformers", r, &[]), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(show(&o).contains(&id) && show(&o).contains("answered this text 2 times"), "{}", show(&o));

    // A junk line, or an extra line without an id: the program's output cannot be trusted.
    for extra in ["loading model...".to_string(), json!({"embedding": [0.0, 1.0]}).to_string()] {
        let mut junk = lines.clone();
        junk.insert(10, extra.clone());
        let file = answers_file(tmp.path(), &junk);
        let (o, _) = timed(&check_args(&suite, &format!("cmd:cat > /dev/null; cat {}", file.display()), "sentence-transformers", r, &[]), &[]);
        assert_eq!(o.status.code(), Some(2), "{extra}\n{}", show(&o));
        assert!(show(&o).contains("answer no text"), "{}", show(&o));
    }
}

#[test]
fn a_vector_of_the_wrong_width_is_a_shape_failure_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r");
    let suite = suite_dir("tiny-bert-mean");
    let (_, good) = faithful(tmp.path(), "tiny-bert-mean", "sentence-transformers", "tiny-bert-mean", &[]);
    let mut lines: Vec<String> = std::fs::read_to_string(&good).unwrap().lines().map(str::to_string).collect();
    let mut short: Value = serde_json::from_str(&lines[2]).unwrap();
    short["embedding"].as_array_mut().unwrap().pop();
    let id = short["id"].as_str().unwrap().to_string();
    lines[2] = short.to_string();
    let file = answers_file(tmp.path(), &lines);
    let (o, _) = timed(&check_args(&suite, file.to_str().unwrap(), "sentence-transformers", rep.to_str().unwrap(), &[]), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let line = out.lines().find(|l| l.contains(&id)).unwrap_or_else(|| panic!("{out}"));
    // The one wording of a failing text (as the library and the reports say it): the checks failed, then the
    // diagnosis; no figure over a shared prefix.
    assert!(line.contains("failed [shape]; shape:") && !line.contains("cosine"), "{line}");
    assert!(out.contains("failed checks: shape 1\n") || out.contains("failed checks: shape 1;"), "only the shape check: no figure compares\n{out}");
    let summary = std::fs::read_to_string(rep.join("summary.json")).unwrap();
    assert!(summary.contains("\"shape\""), "summary.json names the check");
}

/// A copy of a bundled suite whose model is not at hand.
fn without_model(name: &str, tmp: &Path) -> PathBuf {
    let dir = suite_copy(name, tmp);
    let toml = std::fs::read_to_string(dir.join("suite.toml")).unwrap();
    let model_line = toml.lines().find(|l| l.trim_start().starts_with("model")).unwrap().to_string();
    let gone = tmp.join("no-such-model");
    std::fs::write(dir.join("suite.toml"), toml.replace(&model_line, &format!("model = {:?}", gone.to_string_lossy()))).unwrap();
    dir
}

#[test]
fn verdicts_do_not_depend_on_the_model_being_at_hand() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r");
    let r = rep.to_str().unwrap();
    let (_, values) = faithful(tmp.path(), "tiny-xlmr-m3", "m3-sparse", "tiny-xlmr-m3", &["--max-length", "128"]);
    let reference = common::suite("tiny-xlmr-m3").join("reference.safetensors");
    let recorded = read_tensors(&reference).metadata.get("noise_floor").cloned().expect("the generator records the noise floor");
    let floor = serde_json::from_str::<HashMap<String, f64>>(&recorded).unwrap()["m3-sparse"];
    // The faithful answer with one extra token weight of a third of the noise floor: f32 noise around zero,
    // which relu keeps on one side and drops on the other.
    let mut lines: Vec<Value> = std::fs::read_to_string(&values).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let sparse = lines[0]["sparse"].as_object_mut().unwrap();
    let extra = (5..1000).map(|i: u32| i.to_string()).find(|k| !sparse.contains_key(k)).unwrap();
    sparse.insert(extra, json!(floor / 3.0));
    let file = answers_file(tmp.path(), &lines.iter().map(Value::to_string).collect::<Vec<_>>());
    let values = file.to_str().unwrap();
    let (with, _) = timed(&check_args(&suite_dir("tiny-xlmr-m3"), values, "m3-sparse", r, &[]), &[]);
    let bare = without_model("tiny-xlmr-m3", tmp.path());
    let (without, _) = timed(&check_args(bare.to_str().unwrap(), values, "m3-sparse", r, &[]), &[]);
    assert!(show(&without).contains("not at hand"), "{}", show(&without));
    assert_eq!(with.status.code(), Some(0), "{}", show(&with));
    assert_eq!(without.status.code(), Some(0), "the same answer, the same verdict without the model\n{}", show(&without));
    // Without the recorded floor (a reference made before it was recorded), the model decided the verdict.
    let path = bare.join("reference.safetensors");
    let mut t = read_tensors(&path);
    t.metadata.remove("noise_floor");
    write_tensors(&path, &t);
    let (old, _) = timed(&check_args(bare.to_str().unwrap(), values, "m3-sparse", r, &[]), &[]);
    assert_eq!(old.status.code(), Some(1), "{}", show(&old));
    assert!(show(&old).contains("records no noise floor"), "{}", show(&old));
}

#[test]
fn malformed_reference_metadata_is_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r");
    for (key, value) in [("sha256", "{\"texts.jsonl\": "), ("noise_floor", "{\"m3-sparse\": \"small\"}"), ("noise_floor", "[1e-6]")] {
        let dir = suite_copy("tiny-xlmr-m3", &tmp.path().join(format!("{key}-{}", value.len())));
        let path = dir.join("reference.safetensors");
        let mut t = read_tensors(&path);
        t.metadata.insert(key.to_string(), value.to_string());
        write_tensors(&path, &t);
        let o = embcheck(&["check", dir.to_str().unwrap(), "--report-dir", rep.to_str().unwrap(), "--pipeline", "m3-sparse"]);
        assert_eq!(o.status.code(), Some(2), "{key} = {value}\n{}", show(&o));
        assert!(show(&o).contains(key), "{}", show(&o));
    }
}

#[test]
fn diagnosis_stops_at_its_budget_and_a_fail_stays_a_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let rep = tmp.path().join("r");
    // Cut at 11 tokens and without token ids: only recomputation (the cut-off search) can explain it.
    let (_, values) = faithful(tmp.path(), "tiny-bert-mean", "sentence-transformers", "tiny-bert-mean", &["--max-length", "11"]);
    let stripped: Vec<String> = std::fs::read_to_string(&values)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("token_ids");
            v.to_string()
        })
        .collect();
    let file = answers_file(tmp.path(), &stripped);
    let suite = suite_dir("tiny-bert-mean");
    let args = check_args(&suite, file.to_str().unwrap(), "sentence-transformers", rep.to_str().unwrap(), &["--diagnosis-budget", "0"]);
    let (o, _) = timed(&args, &[]);
    assert_eq!(o.status.code(), Some(1), "a diagnosis not made leaves the FAIL\n{}", show(&o));
    let csv = std::fs::read_to_string(rep.join("tiny-bert-mean/diff.csv")).unwrap();
    assert!(csv.contains("budget") && csv.contains("spent"), "{}", show(&o));
    assert!(!csv.contains(",truncation,"), "nothing is named without recomputation\n{csv}");
}

#[test]
fn the_recorded_noise_floor_is_the_one_embcheck_computes_from_the_model() {
    let reference = common::suite("tiny-xlmr-m3").join("reference.safetensors");
    let recorded: HashMap<String, f64> = serde_json::from_str(&read_tensors(&reference).metadata["noise_floor"]).unwrap();
    let files = embcheck::model::ModelFiles::resolve(root().join("fixtures/models/tiny-xlmr-m3").to_str().unwrap()).unwrap();
    let stack = embcheck::model::Stack::named("transformers4").unwrap();
    let model = embcheck::Model::from_files_for(files, candle_core::DType::F32, stack).unwrap();
    let pipeline = embcheck::Pipeline::build(embcheck::PipelineKind::M3Sparse, &model, &embcheck::PipelineOptions::default()).unwrap();
    let ours = pipeline.noise_floor(&model).unwrap();
    let theirs = recorded["m3-sparse"];
    assert!(((ours - theirs) / theirs).abs() < 1e-6, "embcheck {ours:e}, generator {theirs:e}");
}
