//! A user's own embedding function as a system under test, for a downstream crate's `cargo test`.
//!
//! Any closure `FnMut(&[String]) -> R` is an [`Embedder`] when `R` is one of the return types of
//! [`IntoOutputs`]: `Vec<Vec<f32>>` (dense), `Vec<HashMap<u32, f32>>` or `Vec<Vec<(u32, f32)>>` (sparse
//! weights for `m3-sparse`), `Vec<Vec<Vec<f32>>>` (one vector per token for `m3-colbert`), `Vec<Vector>`,
//! `Vec<Output>`, or a `Result` of any of these whose error is displayable (the batch's texts then fail with
//! that message, cut to what it says — its first lines, no backtrace — and naming the batch; the run goes
//! on).

use std::collections::HashMap;
use std::fmt::Display;

use super::{sparse_from_pairs, Output};
use crate::error::Result;
use crate::pipeline::Vector;

/// Something that embeds a batch of texts. The harness does the batching and hands each text exactly as
/// `texts.jsonl` holds it (whitespace, case and all): the system's own preprocessing is part of what is
/// checked.
pub trait Embedder {
    /// One output per text of `texts`, in order. `Err` means the system as a whole failed (it cannot be
    /// reached, it died): the check stops with that error. A text the system rejects is an [`Output`] whose
    /// value is the message.
    fn embed(&mut self, texts: &[String]) -> Result<Vec<Output>>;

    /// One batch for [`Embedder::embed_all`]: its outputs, or `Err(message)` when an error failed the whole
    /// batch (the message then names the batch). By default, [`Embedder::embed`].
    fn embed_batch(&mut self, texts: &[String]) -> Result<std::result::Result<Vec<Output>, String>> {
        self.embed(texts).map(Ok)
    }

    /// Embeds every text in batches of `batch_size`. A batch answered with the wrong number of outputs, or
    /// failed by an error, fails its texts with a message saying so and naming the batch.
    fn embed_all(&mut self, texts: &[String], batch_size: usize) -> Result<Vec<Output>> {
        let size = batch_size.max(1);
        let batches = texts.len().div_ceil(size);
        let mut out = Vec::with_capacity(texts.len());
        for (k, chunk) in texts.chunks(size).enumerate() {
            let first = k * size + 1;
            let last = first + chunk.len() - 1;
            let span = if last == first { format!("text {first}") } else { format!("texts {first}–{last}") };
            let which = format!("batch {} of {batches} ({span} of texts.jsonl)", k + 1);
            let msg = match self.embed_batch(chunk)? {
                Ok(got) if got.len() == chunk.len() => {
                    out.extend(got);
                    continue;
                }
                Ok(got) => format!("the embedder returned {} outputs for {which}, a batch of {} texts", got.len(), chunk.len()),
                Err(e) => format!("the embedder failed {which}: {}", error_lines(&e)),
            };
            out.extend(chunk.iter().map(|_| Output::rejected(msg.clone())));
        }
        Ok(out)
    }
}

/// Lines of an error message kept: what it says, not where (a backtrace's frames are left out).
const ERROR_LINES: usize = 4;

/// An error message cut to what it says: its first lines, joined on one line, up to the first line of a
/// backtrace (candle appends one to its errors under `RUST_BACKTRACE=1`, anyhow under `{:?}`).
pub fn error_lines(message: &str) -> String {
    let is_backtrace = |l: &str| {
        let t = l.trim_start();
        let frame = t.split_once(": ").is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        t.starts_with("stack backtrace") || t.starts_with("Stack backtrace") || t == "disabled backtrace" || frame
    };
    // The first line is the message whatever it looks like.
    let mut all = message.lines();
    let first = all.next().into_iter();
    let lines: Vec<&str> = first.chain(all.take_while(|l| !is_backtrace(l))).map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut out = lines.iter().take(ERROR_LINES).copied().collect::<Vec<_>>().join("; ");
    if lines.len() > ERROR_LINES || message.lines().skip(1).any(is_backtrace) {
        out.push_str(" (…)");
    }
    out
}

/// What an embedding closure may return; see the [module docs](self).
pub trait IntoOutputs {
    /// The outputs, or a message failing the whole batch.
    fn into_outputs(self) -> std::result::Result<Vec<Output>, String>;
}

impl IntoOutputs for Vec<Output> {
    fn into_outputs(self) -> std::result::Result<Vec<Output>, String> {
        Ok(self)
    }
}

impl IntoOutputs for Vec<Vector> {
    fn into_outputs(self) -> std::result::Result<Vec<Output>, String> {
        Ok(self.into_iter().map(Output::value).collect())
    }
}

impl IntoOutputs for Vec<Vec<f32>> {
    fn into_outputs(self) -> std::result::Result<Vec<Output>, String> {
        Ok(self.into_iter().map(|v| Output::value(Vector::Dense(v))).collect())
    }
}

impl IntoOutputs for Vec<Vec<Vec<f32>>> {
    fn into_outputs(self) -> std::result::Result<Vec<Output>, String> {
        Ok(self.into_iter().map(|v| Output::value(Vector::Multi(v))).collect())
    }
}

impl IntoOutputs for Vec<HashMap<u32, f32>> {
    fn into_outputs(self) -> std::result::Result<Vec<Output>, String> {
        Ok(self.into_iter().map(|m| sparse_output(m.into_iter())).collect())
    }
}

impl IntoOutputs for Vec<Vec<(u32, f32)>> {
    fn into_outputs(self) -> std::result::Result<Vec<Output>, String> {
        Ok(self.into_iter().map(|m| sparse_output(m.into_iter())).collect())
    }
}

fn sparse_output(pairs: impl Iterator<Item = (u32, f32)>) -> Output {
    Output { value: sparse_from_pairs(pairs.map(|(i, w)| (i64::from(i), w))), token_ids: None }
}

impl<T: IntoOutputs, E: Display> IntoOutputs for std::result::Result<T, E> {
    fn into_outputs(self) -> std::result::Result<Vec<Output>, String> {
        self.map_err(|e| e.to_string())?.into_outputs()
    }
}

impl<F, R> Embedder for F
where
    F: FnMut(&[String]) -> R,
    R: IntoOutputs,
{
    fn embed(&mut self, texts: &[String]) -> Result<Vec<Output>> {
        Ok(match self(texts).into_outputs() {
            Ok(outputs) => outputs,
            Err(msg) => texts.iter().map(|_| Output::rejected(error_lines(&msg))).collect(),
        })
    }

    fn embed_batch(&mut self, texts: &[String]) -> Result<std::result::Result<Vec<Output>, String>> {
        Ok(self(texts).into_outputs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closures_are_embedders_and_batches_are_checked() {
        let mut calls = 0;
        let mut f = |texts: &[String]| {
            calls += 1;
            texts.iter().map(|t| vec![t.len() as f32]).collect::<Vec<Vec<f32>>>()
        };
        let texts: Vec<String> = ["a", "bb", "ccc"].iter().map(|s| s.to_string()).collect();
        let out = f.embed_all(&texts, 2).unwrap();
        assert_eq!(out[2], Output::value(Vector::Dense(vec![3.0])));
        assert_eq!(calls, 2);

        let mut short = |_: &[String]| vec![vec![1.0f32]];
        let out = short.embed_all(&texts, 3).unwrap();
        assert!(out.iter().all(|o| o.value.as_ref().unwrap_err().contains("1 outputs for batch 1 of 1 (texts 1–3 of texts.jsonl), a batch of 3")));

        let mut failing = |_: &[String]| -> std::result::Result<Vec<Vec<f32>>, String> { Err("boom".into()) };
        assert_eq!(failing.embed_all(&texts, 2).unwrap()[2], Output::rejected("the embedder failed batch 2 of 2 (text 3 of texts.jsonl): boom"));

        let mut sparse = |t: &[String]| t.iter().map(|_| HashMap::from([(9u32, 0.5f32), (2, 0.25)])).collect::<Vec<_>>();
        assert_eq!(sparse.embed_all(&texts, 8).unwrap()[0], Output::value(Vector::Sparse(vec![(2, 0.25), (9, 0.5)])));
    }

    #[test]
    fn a_closure_error_keeps_what_it_says_without_a_backtrace() {
        // candle's error under RUST_BACKTRACE=1: the message, then the frames.
        let candle = "shape mismatch in matmul, lhs: [2, 32], rhs: [16, 32]\n   0: candle_core::error::Error::bt\n             at /root/.cargo/registry/src/candle-core-0.11.1/src/error.rs:264:25\n   1: candle_core::tensor::Tensor::matmul\n";
        assert_eq!(error_lines(candle), "shape mismatch in matmul, lhs: [2, 32], rhs: [16, 32] (…)");
        // A real backtrace, as candle's `Error::WithBacktrace` displays it: `{inner}\n{backtrace}`.
        let real = format!("narrow invalid args start + len > dim_len\n{}", std::backtrace::Backtrace::force_capture());
        assert!(real.lines().count() > 3, "{real}");
        assert_eq!(error_lines(&real), "narrow invalid args start + len > dim_len (…)");
        let rust = "model failed\n\nStack backtrace:\n   0: std::backtrace::Backtrace::capture";
        assert_eq!(error_lines(rust), "model failed (…)");
        assert_eq!(error_lines("out of memory\nwhile loading weights"), "out of memory; while loading weights");
        assert_eq!(error_lines("a: 1 is fine"), "a: 1 is fine");
        let long: String = (0..9).map(|i| format!("line {i}\n")).collect();
        assert_eq!(error_lines(&long), "line 0; line 1; line 2; line 3 (…)");
    }
}
