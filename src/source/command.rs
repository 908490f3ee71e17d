//! A program as the system under test (`cmd:COMMAND`): started once with `sh -c`, it reads
//! `{"id": …, "text": …}` JSON Lines on standard input and writes one `{"id": …, "embedding": […]}` (or
//! `"sparse"`, `"colbert"`, optional `"token_ids"`, or `"error"`) line per text on standard output. Its
//! standard error passes through. Any language can be checked this way without writing a server.
//!
//! Bounded in time: a program that writes no answer for `timeout` (or past the check's deadline) is killed
//! with everything it started, and the texts it has not answered fail as rejected ("no answer in N s"). Its
//! standard input is closed once every text is written; once every text is answered it gets [`GRACE`] to
//! exit, then is killed. An exit status other than 0 is an error, as is a line that answers no text (invalid
//! JSON, or an extra line without an id): the program's output cannot be trusted. A text answered twice
//! fails with both answers named, whatever they hold.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::file::parse_line;
use super::{Deadline, Output};
use crate::error::{Error, Result};
use crate::fixture::TextItem;
use crate::pipeline::PipelineKind;

/// How long a program may run on after it has answered every text and its input is closed.
pub const GRACE: Duration = Duration::from_secs(2);

/// What a run of the program gave.
#[derive(Debug)]
pub struct Run {
    /// One output per text, in order.
    pub outputs: Vec<Output>,
    /// How the program ended, for the report (`exit status 0`, `killed: …`).
    pub ended: String,
}

/// Runs `cmd` over every text and returns one output per text, in order. A text the command answers with
/// an `"error"`, answers twice, or does not answer in time fails with a message; a command that cannot
/// start, answers nothing, writes a line that answers no text or exits with a status other than 0 is an
/// error.
pub fn run(cmd: &str, pipeline: PipelineKind, texts: &[TextItem], timeout: Duration, deadline: Option<Deadline>) -> Result<Run> {
    let requests: Vec<(String, serde_json::Value)> =
        texts.iter().map(|t| (t.id.clone(), serde_json::json!({"id": t.id, "text": t.text}))).collect();
    let (answers, ended) = exchange(cmd, &requests, &parse_line, timeout, deadline)?;
    let outputs = answers
        .into_iter()
        .map(|a| {
            let mut out = a.unwrap_or_else(Output::rejected);
            if let Ok(v) = &out.value {
                if let Err(m) = super::check_kind(pipeline, v) {
                    out.value = Err(m);
                }
            }
            out
        })
        .collect();
    Ok(Run { outputs, ended })
}

/// Reads one answer line: the id of the request it answers (if it names one) and what it holds, or why not.
pub type ParseAnswer<T> = dyn Fn(&serde_json::Value) -> (Option<String>, std::result::Result<T, String>);

/// The process side of [`run`], for any request and answer: writes each request as one JSON line, reads
/// answer lines (`parse` says which request a line answers, by its `"id"`, or none; and what it holds),
/// with the same bounds on time, the same refusal of lines that answer nothing, duplicates and bad exits.
/// Returns one answer per request, in order (`Err` with why for a request left unanswered or answered twice),
/// and how the program ended.
pub fn exchange<T>(
    cmd: &str,
    requests: &[(String, serde_json::Value)],
    parse: &ParseAnswer<T>,
    timeout: Duration,
    deadline: Option<Deadline>,
) -> Result<(Vec<std::result::Result<T, String>>, String)> {
    let what = || format!("cmd:{cmd}");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Its own process group: a timeout kills what the shell started, not only the shell.
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Usage(format!("{}: cannot start: {e}", what())))?;
    let mut stdin = child.stdin.take().expect("piped");
    let lines: Vec<String> = requests.iter().map(|(_, r)| r.to_string()).collect();
    // Written from another thread: a program that answers as it reads would otherwise block on a full pipe.
    // Neither thread is joined: a program that escaped its process group could hold a pipe open forever.
    std::thread::spawn(move || -> std::io::Result<()> {
        for l in lines {
            stdin.write_all(l.as_bytes())?;
            stdin.write_all(b"\n")?;
        }
        stdin.flush()
        // stdin is dropped here: the program sees end of input.
    });
    let (tx, rx) = mpsc::channel::<std::io::Result<String>>();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let stop = line.is_err();
            if tx.send(line).is_err() || stop {
                return;
            }
        }
    });

    let wanted: HashMap<&str, usize> = requests.iter().enumerate().map(|(i, (id, _))| (id.as_str(), i)).collect();
    let mut by_id: HashMap<String, (usize, std::result::Result<T, String>)> = HashMap::new();
    let mut twice: HashMap<String, Vec<usize>> = HashMap::new();
    let mut in_order: Vec<std::result::Result<T, String>> = Vec::new();
    // The first line that answers no text, and how many there were (a program may write them endlessly).
    let mut junk: (Option<String>, usize) = (None, 0);
    let mut note_junk = |m: String| {
        junk.0.get_or_insert(m);
        junk.1 += 1;
    };
    let mut lineno = 0usize;
    let mut all_answered_at: Option<Instant> = None;
    // Time runs from the last answer, not the last line: lines that answer nothing do not keep it alive.
    let mut last_answer = Instant::now();
    let mut stopped: Option<String> = None;
    loop {
        let answered = if by_id.is_empty() { in_order.len() } else { by_id.len() };
        if all_answered_at.is_none() && answered >= requests.len() {
            all_answered_at = Some(Instant::now());
        }
        let now = Instant::now();
        let (until, on_timeout) = match all_answered_at {
            Some(at) => (at + GRACE, None),
            None => match deadline {
                Some(d) if now + d.remaining() < last_answer + timeout => {
                    (now + d.remaining(), Some(format!("no answer before the check's deadline ({} s)", d.total.as_secs_f64())))
                }
                _ => (last_answer + timeout, Some(format!("no answer in {} s", timeout.as_secs_f64()))),
            },
        };
        let timed_out = |on_timeout: Option<String>| match on_timeout {
            Some(m) => m,
            None => format!("still running {} s after answering every text with its input closed: killed", GRACE.as_secs_f64()),
        };
        if now >= until {
            stopped = Some(timed_out(on_timeout));
            break;
        }
        match rx.recv_timeout(until - now) {
            Ok(Ok(line)) => {
                lineno += 1;
                if line.trim().is_empty() {
                    continue;
                }
                let v = match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(v) => v,
                    Err(e) => {
                        note_junk(format!("line {lineno}: invalid JSON: {e}"));
                        continue;
                    }
                };
                match parse(&v) {
                    (Some(id), out) => {
                        let out = out.map_err(|m| format!("malformed output line {lineno}: {m}"));
                        if !wanted.contains_key(id.as_str()) {
                            note_junk(format!("line {lineno}: id {id:?} is not a text of the suite"));
                        } else if let Some((first, _)) = by_id.get(&id) {
                            let lines = twice.entry(id).or_insert_with(|| vec![*first]);
                            if lines.len() < 10 {
                                lines.push(lineno);
                            }
                        } else {
                            by_id.insert(id, (lineno, out));
                            last_answer = Instant::now();
                        }
                    }
                    (None, Ok(out)) => {
                        if in_order.len() <= requests.len() {
                            in_order.push(Ok(out));
                        } else {
                            note_junk(format!("line {lineno}: more answers without ids than texts"));
                        }
                        last_answer = Instant::now();
                    }
                    (None, Err(m)) => note_junk(format!("line {lineno}: {m}")),
                }
            }
            Ok(Err(e)) => return Err(Error::Usage(format!("{}: reading its output: {e}", what()))),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                stopped = Some(timed_out(on_timeout));
                break;
            }
        }
    }
    // End of output (or a timeout): the program gets what is left of its grace period to exit.
    let status = match &stopped {
        Some(_) => kill(&mut child),
        None => match wait_until(&mut child, Instant::now() + GRACE) {
            Some(s) => s,
            None => {
                stopped = Some(format!("closed its output but was still running {} s later: killed", GRACE.as_secs_f64()));
                kill(&mut child)
            }
        },
    };
    let ended = match &stopped {
        Some(m) => m.clone(),
        None => status.to_string(),
    };
    let answered = by_id.len() + in_order.len();
    if stopped.is_none() && !status.success() {
        return Err(Error::Usage(format!("{}: {status} after answering {answered} of {} texts: a program under test must exit with status 0", what(), requests.len())));
    }
    if !by_id.is_empty() && !in_order.is_empty() {
        junk = (Some(format!("{} lines have no \"id\" while {} do", in_order.len(), by_id.len())), junk.1 + in_order.len());
    }
    if by_id.is_empty() && in_order.len() > requests.len() {
        junk = (junk.0.or(Some(format!("more answers without ids than the {} texts", requests.len()))), junk.1.max(1));
    }
    if let (Some(first), n) = &junk {
        return Err(Error::Usage(format!(
            "{}: wrote {n} output lines that answer no text, the first: {first}; a program under test writes only answer lines on standard output (logs go to standard error)",
            what()
        )));
    }
    if answered == 0 && stopped.is_none() {
        return Err(Error::Usage(format!("{}: answered no text ({status})", what())));
    }
    let use_order = by_id.is_empty();
    let mut unmatched = in_order.into_iter();
    let missing = match &stopped {
        Some(m) if all_answered_at.is_none() => m.clone(),
        _ => format!("the command gave no output for this text ({ended})"),
    };
    let answers = requests
        .iter()
        .map(|(id, _)| {
            if let Some(lines) = twice.get(id) {
                let at: Vec<String> = lines.iter().map(usize::to_string).collect();
                return Err(format!("the command answered this text {} times (output lines {})", lines.len(), at.join(", ")));
            }
            let got = if use_order { unmatched.next() } else { by_id.remove(id).map(|(_, o)| o) };
            got.unwrap_or_else(|| Err(missing.clone()))
        })
        .collect();
    Ok((answers, ended))
}

/// Kills the program's whole process group and reaps it.
fn kill(child: &mut Child) -> ExitStatus {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the process group this module created; no memory is involved.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    child.wait().unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(9))
}

/// The program's exit status, if it exits before `until`.
fn wait_until(child: &mut Child, until: Instant) -> Option<ExitStatus> {
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Details of a run for the report.
pub fn details(run: &Run) -> BTreeMap<String, String> {
    BTreeMap::from([("ended".to_string(), run.ended.clone())])
}
