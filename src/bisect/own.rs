//! embcheck's own encoder as a source of per-layer states: for `embed --layers`, and as the faithful port the
//! tests break one operation at a time.

use candle_core::{IndexOp, Tensor};

use super::states::{LayerStates, TextStates};
use crate::error::{ComputeContext, Result};
use crate::model::Model;

/// One text's states per stage (`ids.len()` rows of H values each), named as in a layers file.
pub fn own_stages(model: &Model, ids: &[u32]) -> Result<super::StageStates> {
    let stages = model.encoder.forward_stages(&[ids.to_vec()], model.pad_id)?;
    stages.into_iter().map(|(name, t)| Ok((name.clone(), rows(&t, 0, ids.len()).context(|| format!("stage {name}"))?))).collect()
}

/// The states of `texts` (each its line in texts.jsonl and its token ids), computed in right-padded batches of
/// `batch_size` in the given order: with a faithful attention mask, padding changes nothing.
pub fn own_states(model: &Model, texts: &[(usize, Vec<u32>)], batch_size: usize) -> Result<LayerStates> {
    let mut out: Vec<TextStates> = Vec::with_capacity(texts.len());
    let mut stages = Vec::new();
    for batch in texts.chunks(batch_size.max(1)) {
        let ids: Vec<Vec<u32>> = batch.iter().map(|(_, ids)| ids.clone()).collect();
        let computed = model.encoder.forward_stages(&ids, model.pad_id)?;
        stages = computed.iter().map(|(n, _)| n.clone()).collect();
        for (b, (index, ids)) in batch.iter().enumerate() {
            let states = computed
                .iter()
                .map(|(name, t)| rows(t, b, ids.len()).context(|| format!("stage {name}")))
                .collect::<Result<Vec<_>>>()?;
            out.push(TextStates { index: *index, ids: ids.clone(), states });
        }
    }
    let hidden = model.config.hidden_size;
    let metadata = [
        ("model".to_string(), model.files.name.clone()),
        ("computed_by".to_string(), format!("embcheck {} (its own encoder)", env!("CARGO_PKG_VERSION"))),
        ("batch_size".to_string(), batch_size.to_string()),
    ]
    .into_iter()
    .collect();
    Ok(LayerStates { stages, hidden, texts: out, metadata })
}

/// Sequence `b`'s first `n` rows of a `[B, L, H]` tensor, flattened.
fn rows(t: &Tensor, b: usize, n: usize) -> candle_core::Result<Vec<f32>> {
    t.i(b)?.narrow(0, 0, n)?.flatten_all()?.to_vec1::<f32>()
}
