//! The batched embedding engine: tokenize, sort by length, run the encoder batch by batch, apply each
//! pipeline's head, restore input order.

use std::collections::HashMap;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{ComputeContext, Result};
use crate::model::Model;
use crate::pipeline::{Pipeline, PipelineKind, Vector};

/// One pipeline's outputs for a list of texts, in input order.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// Which pipeline made them.
    pub pipeline: PipelineKind,
    /// One output per text.
    pub vectors: Vec<Vector>,
    /// The token ids each text was encoded as (special tokens included, after truncation).
    pub input_ids: Vec<Vec<u32>>,
}

/// How to batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Texts per encoder call.
    pub batch_size: usize,
    /// Show a progress bar on stderr (it stays hidden when stderr is not a terminal).
    pub progress: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions { batch_size: 32, progress: false }
    }
}

/// Runs several pipelines over `texts`. Pipelines that tokenize alike share one encoder pass.
pub fn embed_many(model: &Model, pipelines: &[Pipeline], texts: &[String], opts: BatchOptions) -> Result<Vec<Embeddings>> {
    let mut results: Vec<Option<Embeddings>> = vec![None; pipelines.len()];
    // Group pipelines by (text preparation, max length): their token ids, so hidden states, are identical.
    let mut groups: Vec<((&crate::pipeline::TextPrep, usize), Vec<usize>)> = Vec::new();
    for (i, p) in pipelines.iter().enumerate() {
        match groups.iter_mut().find(|(k, _)| *k == (&p.prep, p.max_length)) {
            Some((_, members)) => members.push(i),
            None => groups.push(((&p.prep, p.max_length), vec![i])),
        }
    }
    let bar = progress_bar(opts.progress, (texts.len() * groups.len()) as u64);
    for ((prep, max_length), members) in groups {
        let ids = prep.tokenize(&model.tokenizer, texts, max_length)?;
        let mut outputs: HashMap<usize, Vec<Option<Vector>>> = members.iter().map(|&m| (m, vec![None; texts.len()])).collect();
        for_each_batch(model, &ids, opts.batch_size, |index, tokens, h| {
            for &m in &members {
                let v = pipelines[m].apply(tokens, &ids[index], h)?;
                outputs.get_mut(&m).expect("member")[index] = Some(v);
            }
            bar.inc(1);
            Ok(())
        })?;
        for m in members {
            let vectors = outputs.remove(&m).expect("member").into_iter().map(|v| v.expect("every text")).collect();
            results[m] = Some(Embeddings { pipeline: pipelines[m].kind, vectors, input_ids: ids.clone() });
        }
    }
    bar.finish_and_clear();
    Ok(results.into_iter().map(|r| r.expect("every pipeline")).collect())
}

/// Runs the encoder over `ids` in length-sorted batches (longest first, as FlagEmbedding does) and calls
/// `f(text index, hidden rows of that text, hidden size)` for every text.
pub fn for_each_batch(
    model: &Model,
    ids: &[Vec<u32>],
    batch_size: usize,
    mut f: impl FnMut(usize, &[f32], usize) -> Result<()>,
) -> Result<()> {
    for chunk in plan(model, ids, batch_size) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| ids[i].clone()).collect();
        let hidden = model.hidden_states(&batch)?;
        let (_, l, h) = hidden.dims3().context(|| "hidden states".into())?;
        let flat: Vec<f32> = hidden.flatten_all().and_then(|t| t.to_vec1()).context(|| "hidden states".into())?;
        for (j, &i) in chunk.iter().enumerate() {
            let n = ids[i].len();
            f(i, &flat[j * l * h..(j * l + n) * h], h)?;
        }
    }
    Ok(())
}

/// The encoder calls [`for_each_batch`] makes: text indices per batch, longest texts first.
pub(crate) fn plan(model: &Model, ids: &[Vec<u32>], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
    let budget = Budget::for_heads(model.config.num_attention_heads);
    batches(&order, ids, batch_size, budget).into_iter().map(<[usize]>::to_vec).collect()
}

/// Most padded tokens (texts × longest) in one encoder call. Hidden states and feed-forward activations
/// grow with it: 16,384 tokens of bge-m3 (hidden 1024, feed-forward 4096) are 64 MiB per hidden-state
/// tensor and 256 MiB of activations. Normal batches stay far below (32 × 512 = 16,384).
const TOKEN_BUDGET: usize = 16_384;

/// Most attention scores (texts × heads × longest²) in one encoder call: 2^27 f32 are 512 MiB per copy, and
/// a layer holds about three (scores, scaled scores, probabilities). 32 texts of 512 tokens with 16 heads
/// fit; an 8192-token bge-m3 text (16 heads: 2^30 scores) goes alone, as it must.
const ATTENTION_BUDGET: usize = 1 << 27;

/// What one encoder call may hold, from the model's head count.
#[derive(Debug, Clone, Copy)]
struct Budget {
    tokens: usize,
    scores: usize,
    heads: usize,
}

impl Budget {
    fn for_heads(heads: usize) -> Self {
        Budget { tokens: TOKEN_BUDGET, scores: ATTENTION_BUDGET, heads: heads.max(1) }
    }

    /// Whether `texts` sequences padded to `longest` tokens fit. A single text always does: it cannot be
    /// split, and the position table already bounds its length.
    fn fits(&self, texts: usize, longest: usize) -> bool {
        texts <= 1
            || texts.saturating_mul(longest) <= self.tokens
                && texts.saturating_mul(self.heads).saturating_mul(longest).saturating_mul(longest) <= self.scores
    }
}

/// Cuts the length-sorted `order` into batches of at most `batch_size` texts whose padding stays small
/// and whose memory stays within [`Budget`]: a text joins the batch only while padded slots stay within
/// 5/4 of the real tokens and the padded batch fits the token and attention budgets. On a CPU the padding
/// is pure cost (a few long texts would otherwise pad 31 short ones to their length), and the outputs do
/// not depend on batch composition beyond f32 noise.
fn batches<'a>(order: &'a [usize], ids: &[Vec<u32>], batch_size: usize, budget: Budget) -> Vec<&'a [usize]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let longest = ids[order[start]].len().max(1);
        let (mut end, mut real) = (start + 1, longest);
        while end < order.len() && end - start < batch_size.max(1) {
            let n = ids[order[end]].len();
            if 4 * (end - start + 1) * longest > 5 * (real + n) || !budget.fits(end - start + 1, longest) {
                break;
            }
            real += n;
            end += 1;
        }
        out.push(&order[start..end]);
        start = end;
    }
    out
}

fn progress_bar(show: bool, len: u64) -> ProgressBar {
    if !show || len < 64 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {pos}/{len} texts {wide_bar} {eta}") {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(lengths: &[usize], batch_size: usize, heads: usize) -> Vec<usize> {
        let ids: Vec<Vec<u32>> = lengths.iter().map(|&n| vec![5; n]).collect();
        let order: Vec<usize> = (0..ids.len()).collect();
        batches(&order, &ids, batch_size, Budget::for_heads(heads)).iter().map(|b| b.len()).collect()
    }

    #[test]
    fn batches_respect_the_token_and_attention_budgets() {
        // Short texts: only the batch size limits.
        assert_eq!(sizes(&[64; 70], 32, 12), [32, 32, 6]);
        // 512 tokens, 16 heads: 32 × 16 × 512² = 2^27 scores, exactly the budget.
        assert_eq!(sizes(&[512; 40], 32, 16), [32, 8]);
        // 8192 tokens (bge-m3): one text per call whatever the batch size.
        assert_eq!(sizes(&[8192; 3], 32, 16), [1, 1, 1]);
        // 2048 tokens with 4 heads: the token budget (8 × 2048) binds before the scores (8 × 4 × 2048² = 2^27).
        assert_eq!(sizes(&[2048; 10], 32, 4), [8, 2]);
        for (lengths, heads) in [(vec![3000; 7], 16), (vec![1000, 900, 800, 700, 600], 24)] {
            let ids: Vec<Vec<u32>> = lengths.iter().map(|&n| vec![5; n]).collect();
            let order: Vec<usize> = (0..ids.len()).collect();
            let b = Budget::for_heads(heads);
            for chunk in batches(&order, &ids, 64, b) {
                let longest = chunk.iter().map(|&i| ids[i].len()).max().unwrap();
                assert!(b.fits(chunk.len(), longest), "{} x {longest}", chunk.len());
            }
        }
    }
}
