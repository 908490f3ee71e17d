//! A program as the system under test (`cmd:COMMAND`): started once with `sh -c`, it reads
//! `{"id": …, "text": …}` JSON Lines on standard input and writes one `{"id": …, "embedding": […]}` (or
//! `"sparse"`, `"colbert"`, optional `"token_ids"`, or `"error"`) line per text on standard output. Its
//! standard error passes through. Any language can be checked this way without writing a server.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use super::file::parse_line;
use super::Output;
use crate::error::{Error, Result};
use crate::fixture::TextItem;
use crate::pipeline::PipelineKind;

/// Runs `cmd` over every text and returns one output per text, in order. A text the command answers with
/// an `"error"`, a malformed line, or not at all fails with a message; a command that cannot start or
/// answers nothing is an error.
pub fn run(cmd: &str, pipeline: PipelineKind, texts: &[TextItem]) -> Result<Vec<Output>> {
    let what = || format!("cmd:{cmd}");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::Usage(format!("{}: cannot start: {e}", what())))?;
    let mut stdin = child.stdin.take().expect("piped");
    let lines: Vec<String> = texts.iter().map(|t| serde_json::json!({"id": t.id, "text": t.text}).to_string()).collect();
    // Written from another thread: a program that answers as it reads would otherwise block on a full pipe.
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        for l in lines {
            stdin.write_all(l.as_bytes())?;
            stdin.write_all(b"\n")?;
        }
        stdin.flush()
        // stdin is dropped here: the program sees end of input.
    });
    let stdout = child.stdout.take().expect("piped");
    let (mut by_id, mut in_order, mut malformed): (HashMap<String, Output>, Vec<Output>, Vec<String>) = Default::default();
    for (lineno, line) in BufReader::new(stdout).lines().enumerate() {
        let line = line.map_err(|e| Error::Usage(format!("{}: reading its output: {e}", what())))?;
        if line.trim().is_empty() {
            continue;
        }
        let v = match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(v) => v,
            Err(e) => {
                malformed.push(format!("line {}: invalid JSON: {e}", lineno + 1));
                continue;
            }
        };
        // A line with an id but a bad value fails that text with the reason.
        match parse_line(&v) {
            (Some(id), out) => {
                let out = out.unwrap_or_else(|m| Output::rejected(format!("malformed output line {}: {m}", lineno + 1)));
                by_id.insert(id, out);
            }
            (None, Ok(out)) => in_order.push(out),
            (None, Err(m)) => malformed.push(format!("line {}: {m}", lineno + 1)),
        }
    }
    let status = child.wait().map_err(|e| Error::Usage(format!("{}: {e}", what())))?;
    // A program that exits without reading everything closes the pipe: that is its answer, not ours to report.
    let _ = writer.join();
    if by_id.is_empty() && in_order.is_empty() {
        let why = malformed.first().map_or(String::new(), |m| format!("; first malformed output {m}"));
        return Err(Error::Usage(format!("{}: answered no text (exit status {status}){why}", what())));
    }
    let mut unmatched = in_order.into_iter();
    let use_order = by_id.is_empty();
    let note = if malformed.is_empty() {
        String::new()
    } else {
        format!("; it wrote {} malformed lines, the first: {}", malformed.len(), malformed[0])
    };
    Ok(texts
        .iter()
        .map(|t| {
            let got = if use_order { unmatched.next() } else { by_id.remove(&t.id) };
            let mut out = got.unwrap_or_else(|| Output::rejected(format!("the command gave no output for this text (exit status {status}){note}")));
            if let Ok(v) = &out.value {
                if let Err(m) = super::check_kind(pipeline, v) {
                    out.value = Err(m);
                }
            }
            out
        })
        .collect())
}
