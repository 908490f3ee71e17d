//! Embedding servers as the system under test: the OpenAI embeddings API (vLLM, Infinity, llama.cpp,
//! LM Studio, Ollama, TEI all serve it) and TEI's native API (`/embed`, `/embed_sparse`, `/tokenize`,
//! `/info`).
//!
//! What a server's answer costs and means:
//! - a batch answered 400/413/422 (answers that single out a text: validation, too long) is sent again text by
//!   text, so that one bad text does not fail its neighbours; any other refusal, a timeout, or a malformed
//!   answer (31 embeddings for 32 inputs, an index twice) fails the batch's texts with what the server did:
//!   never re-sent alone, which would hide a batching bug and multiply a timeout by the number of texts;
//! - 429 and 503 are retried, honouring `Retry-After` as long as the deadline allows;
//! - 401 and 403 are an authentication failure (exit 2), as is a server that cannot be reached or does not
//!   answer the first request;
//! - 307/308 redirects are followed with the same method and body on the same host; other redirects, and
//!   redirects to another host (where the headers would go), are named, not followed.
//!
//! Header values and URL credentials are secrets: every message from here is redacted ([`super::secret`]).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use super::secret::{self, Secrets};
use super::{check_kind, sparse_from_pairs, Deadline, Output, SourceInfo};
use crate::error::{Error, Result};
use crate::pipeline::{PipelineKind, Vector};

/// Which API a server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST …/v1/embeddings` (or the URL as given when it names the endpoint).
    OpenAi,
    /// text-embeddings-inference: `POST /embed`, `/embed_sparse`, `/tokenize`, `GET /info`.
    Tei,
}

impl std::str::FromStr for Api {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "openai" => Ok(Api::OpenAi),
            "tei" => Ok(Api::Tei),
            _ => Err(Error::Usage(format!("--api {s:?}: expected openai or tei"))),
        }
    }
}

/// HTTP client settings (the timeout and deadline apply to `cmd:` programs too).
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// The API; `None` detects it (`GET /info` answering like TEI means TEI, else OpenAI).
    pub api: Option<Api>,
    /// The OpenAI `model` field; default: the first id of `GET /v1/models`, else `"default"`.
    pub model_name: Option<String>,
    /// Request headers, values already read from the environment and validated
    /// ([`secret::validate_header`]). Never printed or reported.
    pub headers: Vec<(String, String)>,
    /// Per-request timeout (a `cmd:` program: the longest wait for its next answer).
    pub timeout: Duration,
    /// When the whole check must be over: no request or wait runs past it.
    pub deadline: Option<Deadline>,
    /// Retries of a request answered 429 or 503.
    pub retries: u32,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// TEI's `normalize` field: what the reference did (`None`: per pipeline — `false` for raw-cls, TEI's
    /// default otherwise).
    pub normalize: Option<bool>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            api: None,
            model_name: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(60),
            deadline: None,
            retries: 5,
            concurrency: 2,
            normalize: None,
        }
    }
}

/// A connected client for one server and pipeline.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    endpoint: String,
    api: Api,
    pipeline: PipelineKind,
    opts: HttpOptions,
    model_name: String,
    tokenize: bool,
    info: BTreeMap<String, String>,
    secrets: Secrets,
}

/// How one request ended.
enum Reply {
    Ok(Value),
    /// The server answered with an error status (or an answer that is not JSON): its code and message.
    Refused(u16, String),
    /// No answer within the timeout (or the deadline passed).
    TimedOut(String),
}

/// How one batch ended.
enum Sent {
    Ok(Vec<Output>),
    /// Refused, timed out or malformed: the status (0 when none) and what the server did.
    Failed(u16, String),
}

/// Redirects followed for one request, at most.
const MAX_REDIRECTS: usize = 5;

impl Client {
    /// Connects: detects the API when not given, reads what the server says about itself, and fails with
    /// one clear error when the server cannot be reached, does not answer, or refuses the credentials.
    pub fn connect(url: &str, pipeline: PipelineKind, opts: &HttpOptions) -> Result<Self> {
        let mut secrets = Secrets::default();
        for (_, v) in &opts.headers {
            secrets.add(v);
        }
        secret::url_secrets(url, &mut secrets);
        let (url, basic) = secret::split_credentials(url).map_err(|e| Error::Usage(secrets.redact(&e.to_string())))?;
        let mut opts = opts.clone();
        if let Some(b) = basic {
            secrets.add(&b);
            if !opts.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
                opts.headers.push(("Authorization".into(), b));
            }
        }
        // Redirects are handled in `request`: ureq would turn a redirected POST into a 3xx answer or a GET.
        let agent = ureq::AgentBuilder::new().timeout(opts.timeout).redirects(0).build();
        let trimmed = url.trim_end_matches('/').to_string();
        let names_endpoint = trimmed.ends_with("/embeddings") || trimmed.ends_with("/embed");
        let base = if names_endpoint { trimmed.rsplit_once('/').map_or(trimmed.clone(), |(b, _)| b.to_string()) } else { trimmed.clone() };
        let base = base.strip_suffix("/v1").map_or(base.clone(), str::to_string);
        let mut client = Client {
            agent,
            base: base.clone(),
            endpoint: String::new(),
            api: Api::OpenAi,
            pipeline,
            opts: opts.clone(),
            model_name: String::new(),
            tokenize: false,
            info: BTreeMap::new(),
            secrets,
        };
        let tei_info = match client.probe("GET", &format!("{base}/info"), None)? {
            Reply::Ok(v) if v.get("model_id").is_some() => Some(v),
            _ => None,
        };
        client.api = match opts.api {
            Some(a) => a,
            None if trimmed.ends_with("/embeddings") => Api::OpenAi,
            None if tei_info.is_some() || trimmed.ends_with("/embed") => Api::Tei,
            None => Api::OpenAi,
        };
        match client.api {
            Api::Tei => {
                if let Some(info) = &tei_info {
                    for key in ["model_id", "model_sha", "model_dtype", "version", "max_input_length", "max_client_batch_size", "auto_truncate"] {
                        if let Some(v) = info.get(key).filter(|v| !v.is_null()) {
                            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                            client.info.insert(key.to_string(), client.secrets.redact(&v));
                        }
                    }
                }
                client.endpoint = format!("{base}/{}", if pipeline == PipelineKind::M3Sparse { "embed_sparse" } else { "embed" });
                client.tokenize = matches!(client.probe("POST", &format!("{base}/tokenize"), Some(json!({"inputs": ["a"]})))?, Reply::Ok(_));
                if client.pipeline != PipelineKind::M3Sparse {
                    client.info.insert("normalize".into(), client.tei_normalize().to_string());
                }
                client.info.insert("truncate".into(), "true".into());
            }
            Api::OpenAi => {
                if pipeline.output() != crate::pipeline::OutputKind::Dense {
                    return Err(Error::Usage(format!("the OpenAI embeddings API returns dense vectors only; pipeline {pipeline} needs --api tei or another source")));
                }
                client.endpoint = if trimmed.ends_with("/embeddings") { trimmed.clone() } else { format!("{base}/v1/embeddings") };
                // Infinity serves the API at /embeddings unless started with --url-prefix /v1.
                if !trimmed.ends_with("/embeddings") {
                    let probe = json!({"input": ["a"], "model": opts.model_name.clone().unwrap_or_else(|| "default".into())});
                    if matches!(client.probe("POST", &client.endpoint, Some(probe.clone()))?, Reply::Refused(404 | 405, _))
                        && matches!(client.probe("POST", &format!("{base}/embeddings"), Some(probe))?, Reply::Ok(_))
                    {
                        client.endpoint = format!("{base}/embeddings");
                    }
                }
                client.model_name = match &opts.model_name {
                    Some(m) => m.clone(),
                    None => match client.probe("GET", &format!("{base}/v1/models"), None)? {
                        Reply::Ok(v) => v["data"][0]["id"].as_str().unwrap_or("default").to_string(),
                        _ => "default".to_string(),
                    },
                };
                client.info.insert("model".into(), client.secrets.redact(&client.model_name));
            }
        }
        client.info.insert("api".into(), match client.api { Api::OpenAi => "openai", Api::Tei => "tei" }.into());
        client.info.insert("endpoint".into(), client.secrets.redact(&client.endpoint));
        Ok(client)
    }

    /// What the server said about itself, for the reports.
    pub fn info(&self) -> SourceInfo {
        SourceInfo { kind: "http".into(), location: self.secrets.redact(&self.endpoint), details: self.info.clone() }
    }

    /// The secrets this client redacts from its messages.
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// TEI's `normalize` field for this pipeline.
    fn tei_normalize(&self) -> bool {
        self.opts.normalize.unwrap_or(self.pipeline != PipelineKind::RawCls)
    }

    /// A request made while connecting: no answer at all means the server is not there (exit 2).
    fn probe(&self, method: &str, url: &str, body: Option<Value>) -> Result<Reply> {
        match self.request(method, url, body)? {
            Reply::TimedOut(m) => Err(Error::Usage(self.secrets.redact(&format!("{url}: {m}")))),
            r => Ok(r),
        }
    }

    /// One request, with retries on 429/503 and same-host 307/308 redirects followed. Transport failures
    /// (refused, unknown host) and 401/403 are errors; a timeout is the server's answer for these texts.
    /// Every message is redacted.
    fn request(&self, method: &str, url: &str, body: Option<Value>) -> Result<Reply> {
        let redact = |s: String| self.secrets.redact(&s);
        let mut attempt = 0;
        let mut url = url.to_string();
        let mut hops = 0;
        loop {
            let (timeout, no_answer) = match self.opts.deadline {
                Some(d) if d.remaining().is_zero() => return Ok(Reply::TimedOut(d.passed_message())),
                Some(d) if d.remaining() < self.opts.timeout => (d.remaining(), format!("no answer before the check's deadline ({})", secs(d.total))),
                _ => (self.opts.timeout, format!("no answer in {}", secs(self.opts.timeout))),
            };
            let mut req = self.agent.request(method, &url).timeout(timeout);
            for (k, v) in &self.opts.headers {
                req = req.set(k, v);
            }
            let result = match &body {
                Some(b) => req.set("Content-Type", "application/json").send_string(&b.to_string()),
                None => req.call(),
            };
            match result {
                Ok(resp) if (300..400).contains(&resp.status()) => {
                    let code = resp.status();
                    let location = resp.header("Location").map(str::to_string);
                    let target = location.as_deref().and_then(|l| url::Url::parse(&url).ok()?.join(l).ok());
                    let same_origin = target.as_ref().is_some_and(|t| url::Url::parse(&url).is_ok_and(|u| u.origin() == t.origin()));
                    let shown = location.as_deref().map_or("nowhere (no Location header)".to_string(), secret::without_userinfo);
                    let keeps_method = matches!(code, 307 | 308) || method == "GET";
                    match target {
                        Some(t) if same_origin && keeps_method && hops < MAX_REDIRECTS => {
                            hops += 1;
                            url = t.to_string();
                            continue;
                        }
                        _ if !same_origin && location.is_some() => {
                            return Err(Error::Usage(redact(format!(
                                "{url}: redirected (HTTP {code}) to another host, {shown}: embcheck does not send the request headers there; give that URL with --against"
                            ))));
                        }
                        _ => {
                            let why = if hops >= MAX_REDIRECTS { format!("more than {MAX_REDIRECTS} redirects") } else { format!("a {method} is not redirected with HTTP {code} (only 307/308 keep the method and body)") };
                            return Ok(Reply::Refused(code, redact(format!("redirected to {shown}: {why}; give the final URL"))));
                        }
                    }
                }
                Ok(resp) => {
                    let code = resp.status();
                    let mut text = String::new();
                    if let Err(e) = resp.into_reader().read_to_string(&mut text) {
                        if e.kind() == std::io::ErrorKind::TimedOut || e.kind() == std::io::ErrorKind::WouldBlock {
                            return Ok(Reply::TimedOut(no_answer));
                        }
                        return Err(Error::Usage(redact(format!("{url}: reading the answer: {e}"))));
                    }
                    return Ok(match serde_json::from_str(&text) {
                        Ok(v) => Reply::Ok(v),
                        Err(e) => Reply::Refused(code, redact(format!("the answer is not JSON: {e}"))),
                    });
                }
                Err(ureq::Error::Status(code, resp)) => {
                    let retry_after = resp.header("Retry-After").and_then(|s| s.trim().parse::<f64>().ok()).filter(|s| s.is_finite() && *s >= 0.0);
                    let text = resp.into_string().unwrap_or_default();
                    let message = redact(server_message(&text));
                    if code == 401 || code == 403 {
                        return Err(Error::Usage(redact(format!("{url}: authentication failed (HTTP {code}: {message}); check --header"))));
                    }
                    if (code == 429 || code == 503) && attempt < self.opts.retries {
                        let wait = Duration::from_secs_f64(retry_after.unwrap_or(0.25 * f64::from(1u32 << attempt.min(6))).min(60.0));
                        if let Some(d) = self.opts.deadline {
                            if wait >= d.remaining() {
                                let msg = format!("{message} (asked to retry in {}, past the deadline of {})", secs(wait), secs(d.total));
                                return Ok(Reply::Refused(code, msg));
                            }
                        }
                        std::thread::sleep(wait);
                        attempt += 1;
                        continue;
                    }
                    return Ok(Reply::Refused(code, message));
                }
                Err(ureq::Error::Transport(t)) => {
                    let text = t.to_string();
                    if t.kind() == ureq::ErrorKind::Io && text.to_lowercase().contains("timed out") {
                        return Ok(Reply::TimedOut(no_answer));
                    }
                    return Err(Error::Usage(redact(format!("cannot reach {url}: {text}"))));
                }
            }
        }
    }

    /// Embeds every text, `batch_size` per request, `concurrency` requests in flight.
    pub fn embed_all(&mut self, texts: &[String], batch_size: usize) -> Result<Vec<Output>> {
        let batches: Vec<&[String]> = texts.chunks(batch_size.max(1)).collect();
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Vec<Output>>>> = Mutex::new(vec![None; batches.len()]);
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        let this = &*self;
        std::thread::scope(|s| {
            for _ in 0..self.opts.concurrency.clamp(1, batches.len().max(1)) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= batches.len() || failure.lock().expect("lock").is_some() {
                        return;
                    }
                    match this.embed_batch(batches[i]) {
                        Ok(out) => results.lock().expect("lock")[i] = Some(out),
                        Err(e) => {
                            failure.lock().expect("lock").get_or_insert(e);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().expect("lock") {
            return Err(e);
        }
        Ok(results.into_inner().expect("lock").into_iter().flat_map(|b| b.expect("every batch")).collect())
    }

    /// One batch. Sent again text by text only when the server refused it with a status that singles out
    /// a text (400, 413, 422); any other failure fails every text of the batch with what the server did.
    fn embed_batch(&self, texts: &[String]) -> Result<Vec<Output>> {
        match self.send(texts)? {
            Sent::Ok(outputs) => Ok(outputs),
            Sent::Failed(400 | 413 | 422, _) if texts.len() > 1 => {
                texts.iter().map(|t| self.embed_batch(std::slice::from_ref(t)).map(|mut v| v.remove(0))).collect()
            }
            Sent::Failed(_, msg) => Ok(texts.iter().map(|_| Output::rejected(msg.clone())).collect()),
        }
    }

    /// Sends one request.
    fn send(&self, texts: &[String]) -> Result<Sent> {
        let body = match self.api {
            Api::OpenAi => json!({"input": texts, "model": self.model_name, "encoding_format": "float"}),
            // The references are cut at the model's max length, as the Python libraries always cut.
            Api::Tei if self.pipeline == PipelineKind::M3Sparse => json!({"inputs": texts, "truncate": true}),
            // TEI normalizes unless told not to, whatever the model's own modules say.
            Api::Tei => json!({"inputs": texts, "normalize": self.tei_normalize(), "truncate": true}),
        };
        let v = match self.request("POST", &self.endpoint, Some(body))? {
            Reply::Ok(v) => v,
            Reply::TimedOut(msg) => return Ok(Sent::Failed(0, msg)),
            Reply::Refused(code, msg) => return Ok(Sent::Failed(code, format!("HTTP {code}: {msg}"))),
        };
        let values = match self.api {
            Api::OpenAi => parse_openai(&v, texts.len()),
            Api::Tei => parse_tei(&v, texts.len(), self.pipeline == PipelineKind::M3Sparse),
        };
        let values = match values {
            Ok(v) => v,
            Err(m) => {
                let m = self.secrets.redact(&m);
                return Ok(Sent::Failed(0, format!("the server answered {m} (POST {}, {} texts in the request)", self.secrets.redact(&self.endpoint), texts.len())));
            }
        };
        let tokens = if self.tokenize { self.token_ids(texts)? } else { vec![None; texts.len()] };
        Ok(Sent::Ok(values
            .into_iter()
            .zip(tokens)
            .map(|(value, token_ids)| Output { value: check_kind(self.pipeline, &value).map(|()| value), token_ids })
            .collect()))
    }

    /// TEI's `/tokenize`: the ids the server's tokenizer gives (special tokens included). Another endpoint
    /// than the one that made the vectors, and untruncated: evidence about tokenization, not a verdict.
    fn token_ids(&self, texts: &[String]) -> Result<Vec<Option<Vec<u32>>>> {
        let url = format!("{}/tokenize", self.base);
        let none = vec![None; texts.len()];
        let Reply::Ok(v) = self.request("POST", &url, Some(json!({"inputs": texts, "add_special_tokens": true})))? else { return Ok(none) };
        let Some(rows) = v.as_array().filter(|r| r.len() == texts.len()) else { return Ok(none) };
        // TEI's /tokenize does not truncate while /embed does (auto-truncate): ids longer than the server's max
        // input length are not what its model received, so they are left out rather than guessed.
        let limit = self.info.get("max_input_length").and_then(|m| m.parse::<usize>().ok()).unwrap_or(usize::MAX);
        Ok(rows
            .iter()
            .map(|r| {
                let ids: Option<Vec<u32>> = r.as_array()?.iter().map(|t| t["id"].as_u64().and_then(|x| u32::try_from(x).ok())).collect();
                ids.filter(|ids| ids.len() <= limit)
            })
            .collect())
    }
}

/// A duration in seconds, for messages.
fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// The `error` / `message` field of an error body, else the body itself (cut short).
fn server_message(body: &str) -> String {
    let v: Option<Value> = serde_json::from_str(body).ok();
    let field = v.as_ref().and_then(|v| {
        v.get("error")
            .and_then(|e| e.as_str().map(str::to_string).or_else(|| e.get("message").and_then(Value::as_str).map(str::to_string)))
            .or_else(|| v.get("message").and_then(Value::as_str).map(str::to_string))
            .or_else(|| v.get("detail").map(|d| d.as_str().map_or_else(|| d.to_string(), str::to_string)))
    });
    let s = field.unwrap_or_else(|| body.trim().to_string());
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s
    }
}

/// `{"data": [{"index": i, "embedding": […]}, …]}`, ordered by `index`.
fn parse_openai(v: &Value, n: usize) -> std::result::Result<Vec<Vector>, String> {
    let data = v.get("data").and_then(Value::as_array).ok_or("no \"data\" list")?;
    if data.len() != n {
        return Err(format!("{} embeddings for {n} inputs", data.len()));
    }
    let mut out: Vec<Option<Vector>> = vec![None; n];
    for (pos, item) in data.iter().enumerate() {
        let index = item.get("index").and_then(Value::as_u64).map_or(pos, |i| i as usize);
        let slot = out.get_mut(index).ok_or(format!("index {index} out of range for {n} inputs"))?;
        if slot.is_some() {
            return Err(format!("index {index} appears twice"));
        }
        *slot = Some(Vector::Dense(super::json_floats(item.get("embedding").ok_or("an item has no \"embedding\"")?, "embedding")?));
    }
    Ok(out.into_iter().map(|v| v.expect("n distinct indices in range")).collect())
}

/// `[[f32]]` from `/embed`, or `[[{"index": id, "value": w}]]` from `/embed_sparse`.
fn parse_tei(v: &Value, n: usize, sparse: bool) -> std::result::Result<Vec<Vector>, String> {
    let rows = v.as_array().ok_or("not a list")?;
    if rows.len() != n {
        return Err(format!("{} embeddings for {n} inputs", rows.len()));
    }
    rows.iter()
        .map(|r| {
            if !sparse {
                return Ok(Vector::Dense(super::json_floats(r, "embedding")?));
            }
            let items = r.as_array().ok_or("a sparse result is not a list")?;
            let pairs = items
                .iter()
                .map(|p| match (p["index"].as_i64(), p["value"].as_f64()) {
                    (Some(i), Some(w)) => Ok((i, w as f32)),
                    _ => Err("a sparse item lacks an integer \"index\" and a numeric \"value\"".to_string()),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            sparse_from_pairs(pairs)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_answers_are_ordered_by_index() {
        let v = json!({"data": [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}]});
        assert_eq!(parse_openai(&v, 2).unwrap(), vec![Vector::Dense(vec![1.0]), Vector::Dense(vec![2.0])]);
        assert!(parse_openai(&v, 3).is_err());
        let dup = json!({"data": [{"index": 0, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}]});
        assert!(parse_openai(&dup, 2).unwrap_err().contains("twice"));
    }

    #[test]
    fn tei_sparse_answers_are_sorted_pairs() {
        let v = json!([[{"index": 9, "value": 0.5}, {"index": 2, "value": 0.25}]]);
        assert_eq!(parse_tei(&v, 1, true).unwrap(), vec![Vector::Sparse(vec![(2, 0.25), (9, 0.5)])]);
    }

    #[test]
    fn server_messages_are_read_from_the_usual_fields() {
        assert_eq!(server_message(r#"{"error": "Input validation error", "error_type": "Validation"}"#), "Input validation error");
        assert_eq!(server_message(r#"{"error": {"message": "too long"}}"#), "too long");
        assert_eq!(server_message("plain"), "plain");
    }
}
