//! A user's own embedding function as a system under test, for a downstream crate's `cargo test`.
//!
//! Any closure `FnMut(&[String]) -> R` is an [`Embedder`] when `R` is one of the return types of
//! [`IntoOutputs`]: `Vec<Vec<f32>>` (dense), `Vec<HashMap<u32, f32>>` or `Vec<Vec<(u32, f32)>>` (sparse
//! weights for `m3-sparse`), `Vec<Vec<Vec<f32>>>` (one vector per token for `m3-colbert`), `Vec<Vector>`,
//! `Vec<Output>`, or a `Result` of any of these whose error is displayable (the batch's texts then fail with
//! that message and the run goes on).

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

    /// Embeds every text in batches of `batch_size`. A batch answered with the wrong number of outputs
    /// fails its texts with a message saying so.
    fn embed_all(&mut self, texts: &[String], batch_size: usize) -> Result<Vec<Output>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(batch_size.max(1)) {
            let got = self.embed(chunk)?;
            if got.len() == chunk.len() {
                out.extend(got);
            } else {
                let msg = format!("the embedder returned {} outputs for a batch of {} texts", got.len(), chunk.len());
                out.extend(chunk.iter().map(|_| Output::rejected(msg.clone())));
            }
        }
        Ok(out)
    }
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
            Err(msg) => texts.iter().map(|_| Output::rejected(msg.clone())).collect(),
        })
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
        assert!(out.iter().all(|o| o.value.as_ref().unwrap_err().contains("1 outputs for a batch of 3")));

        let mut failing = |_: &[String]| -> std::result::Result<Vec<Vec<f32>>, String> { Err("boom".into()) };
        assert_eq!(failing.embed_all(&texts, 8).unwrap()[0], Output::rejected("boom"));

        let mut sparse = |t: &[String]| t.iter().map(|_| HashMap::from([(9u32, 0.5f32), (2, 0.25)])).collect::<Vec<_>>();
        assert_eq!(sparse.embed_all(&texts, 8).unwrap()[0], Output::value(Vector::Sparse(vec![(2, 0.25), (9, 0.5)])));
    }
}
