//! The encoder of every family embcheck implements, written on candle's building blocks: the shared
//! [`Embeddings`] and post-LN [`Layer`](super::layer::Layer)s under the family's names (its own folder:
//! [`super::bert`], [`super::mpnet`], [`super::distilbert`]), with the family's position bias where it has one.
//!
//! Why not `candle_transformers::models::{bert, xlm_roberta}` as they are: their XLM-R computes position ids
//! with a cumsum in the model dtype (exact only to 256 tokens in bf16, 2048 in f16) and adds an f32 mask to
//! half-precision scores, and their BERT turns the attention mask into NaN in f16/bf16. The weight names and
//! the arithmetic are the same; `tests/encoder_vs_candle.rs` checks both families against them in f32.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::config::{EncoderConfig, Family};
use super::embeddings::Embeddings;
use super::layer::{Layer, LayerNames};
use super::{bert, decoder, distilbert, gemma3, modernbert, mpnet};
use crate::error::{ComputeContext, Error, Result};

pub use super::dense::Dense;

/// A point in the forward pass whose hidden states [`Encoder::run`] hands out: after the embeddings, after
/// layer i's attention block and its MLP block (each with its residual, and its norm in a post-LN layer),
/// after a final norm (pre-LN families), and the output (the last of these again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Embeddings,
    Attention(usize),
    Mlp(usize),
    FinalNorm,
    Output,
}

/// What [`Encoder::run`] hands each stage's hidden states to.
pub(crate) type See<'a> = &'a mut (dyn FnMut(Stage, &Tensor) -> candle_core::Result<()> + Send);

/// A loaded encoder: embeddings, then `num_hidden_layers` transformer layers (the shared post-LN ones, or
/// ModernBERT's own).
pub struct Encoder {
    cfg: EncoderConfig,
    body: Body,
    dtype: DType,
    device: Device,
}

/// The layers of one kind of encoder.
enum Body {
    /// BERT, XLM-R, MPNet, DistilBERT: the shared embeddings and post-LN layers.
    PostLn {
        embeddings: Embeddings,
        /// MPNet's relative position bias, shared by every layer.
        relative: Option<mpnet::RelativeBias>,
        layers: Vec<Layer>,
    },
    /// ModernBERT: its own pre-LN layers.
    ModernBert(modernbert::Body),
    /// Llama, Mistral, Qwen2, Qwen3: causal pre-norm decoder layers.
    Decoder(decoder::Body),
    /// Gemma 3 text: its own pre- and post-normed layers.
    Gemma3(gemma3::Body),
}

impl Encoder {
    /// Builds the encoder from a [`VarBuilder`] over the checkpoint; the base model may sit under the
    /// prefix a task-head checkpoint of its family uses (`bert.`, `roberta.`, `mpnet.`, ...).
    pub fn load(vb: VarBuilder, cfg: &EncoderConfig, what: &str) -> Result<Self> {
        // Where the family's tensors are: its task-head prefixes, the token table that finds the prefix, and
        // (for the post-LN families) the layer names.
        const WORDS: &str = "embeddings.word_embeddings.weight";
        let (prefixes, word, post_ln): (&[&str], &str, Option<(&LayerNames, &str)>) = match cfg.family {
            Family::Bert | Family::XlmRoberta => (bert::PREFIXES, WORDS, Some((&bert::LAYER, bert::LAYERS))),
            Family::Mpnet => (mpnet::PREFIXES, WORDS, Some((&mpnet::LAYER, mpnet::LAYERS))),
            Family::DistilBert => (distilbert::PREFIXES, WORDS, Some((&distilbert::LAYER, distilbert::LAYERS))),
            Family::ModernBert => (modernbert::PREFIXES, modernbert::WORD_EMBEDDINGS, None),
            Family::Decoder => (decoder::PREFIXES, decoder::WORD_EMBEDDINGS, None),
            Family::Gemma3 => (gemma3::PREFIXES, gemma3::WORD_EMBEDDINGS, None),
        };
        let prefix = prefixes.iter().find(|p| vb.contains_tensor(&format!("{p}{word}"))).ok_or_else(|| {
            let under: Vec<&str> = prefixes.iter().filter(|p| !p.is_empty()).copied().collect();
            Error::model(what, format!("no tensor {word} (nor under {}) in the weights", under.join(", ")))
        })?;
        let vb = if prefix.is_empty() { vb } else { vb.pp(prefix.trim_end_matches('.')) };
        let dtype = vb.dtype();
        let device = vb.device().clone();
        let build = || -> candle_core::Result<Self> {
            let Some((names, layers_at)) = post_ln else {
                let body = match cfg.family {
                    Family::Decoder => Body::Decoder(decoder::Body::load(&vb, cfg)?),
                    Family::Gemma3 => Body::Gemma3(gemma3::Body::load(&vb, cfg)?),
                    _ => Body::ModernBert(modernbert::Body::load(&vb, cfg)?),
                };
                return Ok(Encoder { cfg: cfg.clone(), body, dtype, device: device.clone() });
            };
            let layers = (0..cfg.num_hidden_layers)
                .map(|i| Layer::load(vb.pp(layers_at).pp(i), cfg, names))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let (embeddings, relative) = match cfg.family {
                Family::Bert | Family::XlmRoberta => (Embeddings::load(&vb, cfg, true, None)?, None),
                Family::Mpnet => (Embeddings::load(&vb, cfg, false, None)?, Some(mpnet::RelativeBias::load(&vb, cfg)?)),
                Family::DistilBert => (Embeddings::load(&vb, cfg, false, distilbert::computed_positions(&vb, cfg)?)?, None),
                Family::ModernBert | Family::Decoder | Family::Gemma3 => candle_core::bail!("no post-LN layers in this family (loaded above)"),
            };
            Ok(Encoder { cfg: cfg.clone(), body: Body::PostLn { embeddings, relative, layers }, dtype, device: device.clone() })
        };
        build().map_err(|e| Error::model(what, format!("weights do not match config.json: {e}")))
    }

    /// An upper bound on the L2 norm of any row of the last hidden state: the final LayerNorm returns
    /// γ ⊙ x̂ + β with ‖x̂‖ = √H, so ‖h‖ ≤ max|γ|·√H + ‖β‖. It sizes the f32 noise of heads whose output is
    /// a small sum of large terms (BGE-M3's sparse weights).
    pub fn hidden_norm_bound(&self) -> Result<f64> {
        let norm = match &self.body {
            Body::PostLn { embeddings, layers, .. } => layers.last().map_or(&embeddings.norm, |l| &l.out_norm),
            Body::ModernBert(m) => &m.final_norm,
            Body::Decoder(d) => return d.hidden_norm_bound().context(|| "final RMSNorm weights".into()),
            Body::Gemma3(g) => return g.norm_bound(self.cfg.hidden_size).context(|| "final RMSNorm weights".into()),
        };
        let bound = || -> candle_core::Result<f64> {
            let gamma = norm.weight().to_dtype(DType::F64)?.abs()?.max(0)?.to_scalar::<f64>()?;
            let beta = match norm.bias() {
                Some(b) => b.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt(),
                None => 0.0,
            };
            Ok(gamma * (self.cfg.hidden_size as f64).sqrt() + beta)
        };
        bound().context(|| "final LayerNorm weights".into())
    }

    /// The model's configuration.
    pub fn config(&self) -> &EncoderConfig {
        &self.cfg
    }

    /// Whether the attention is bidirectional, for a family whose config chooses (Gemma 3's
    /// `use_bidirectional_attention`); `None` for the others.
    pub fn bidirectional(&self) -> Option<bool> {
        self.cfg.gemma3.as_ref().map(|g| g.bidirectional)
    }

    /// Computes with a bidirectional (`true`) or causal mask whatever config.json says: what a port that gets
    /// the mask wrong computes. Returns false, changing nothing, for a family whose config has no such choice.
    pub fn set_bidirectional(&mut self, bidirectional: bool) -> bool {
        let (Body::Gemma3(g), Some(settings)) = (&mut self.body, self.cfg.gemma3.as_mut()) else { return false };
        g.set_bidirectional(bidirectional);
        settings.bidirectional = bidirectional;
        true
    }

    /// The dtype the weights were loaded in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs a right-padded batch. `ids` are the unpadded token ids of each sequence; pads get `pad_id`.
    /// Returns the last hidden state `[B, L, H]` as f32, `L` the longest sequence.
    pub fn forward(&self, ids: &[Vec<u32>], pad_id: u32) -> Result<Tensor> {
        let mut last = None;
        self.run(ids, pad_id, &mut |stage, x| {
            if stage == Stage::Output {
                last = Some(x.to_dtype(DType::F32)?);
            }
            Ok(())
        })?;
        last.ok_or_else(|| Error::Usage("empty batch".into()))
    }

    /// The hidden states after each stage, `[B, L, H]` f32 each, in order: the embeddings, then per layer its
    /// attention block and its feed-forward block (each after its residual add, and its norm in a post-LN
    /// layer), then a pre-LN family's final norm. Named as in a layers file: `embeddings`,
    /// `layers.{i}.attention`, `layers.{i}.mlp`, `final_norm`. For comparing a port stage by stage.
    pub fn forward_stages(&self, ids: &[Vec<u32>], pad_id: u32) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        self.run(ids, pad_id, &mut |stage, x| {
            let name = match stage {
                Stage::Embeddings => "embeddings".to_string(),
                Stage::Attention(i) => format!("layers.{i}.attention"),
                Stage::Mlp(i) => format!("layers.{i}.mlp"),
                Stage::FinalNorm => "final_norm".to_string(),
                Stage::Output => return Ok(()),
            };
            out.push((name, x.to_dtype(DType::F32)?));
            Ok(())
        })?;
        Ok(out)
    }

    /// The last hidden state a right-padded batch holds at padded positions of one text: `ids` the text's
    /// token ids (`n`), `reads` each a pad id and a position at or after `n` (a batch of `L` tokens read at its
    /// last position reads position `L − 1`). Returns `[reads, H]` f32, one row per read, in order; `None` for a
    /// family whose padded positions embcheck does not compute (only the causal decoders: their padded rows are
    /// what last-token pooling reads when it takes a right-padded batch's last position).
    pub fn padded_rows(&self, ids: &[u32], reads: &[(u32, usize)]) -> Result<Option<Tensor>> {
        let Body::Decoder(d) = &self.body else { return Ok(None) };
        let n = ids.len();
        let limit = self.cfg.max_tokens();
        if n == 0 || reads.is_empty() || reads.iter().any(|&(_, p)| p < n || p >= limit) {
            return Err(Error::Usage(format!("padded positions are read after a text's {n} tokens and before the position limit ({limit})")));
        }
        let all: Vec<u32> = ids.iter().copied().chain(reads.iter().map(|&(pad, _)| pad)).collect();
        let positions: Vec<usize> = reads.iter().map(|&(_, p)| p).collect();
        let mut last = None;
        let run = || -> candle_core::Result<()> {
            let ids_t = Tensor::from_vec(all, (1, n + reads.len()), &self.device)?;
            d.forward_reading(&ids_t, &[n], &positions, &mut |stage, x| {
                if stage == Stage::Output {
                    last = Some(x.get(0)?.narrow(0, n, reads.len())?.to_dtype(DType::F32)?);
                }
                Ok(())
            })
        };
        self.device.with_context(run).context(|| format!("encoder forward of a text of {n} tokens read at {} padded positions", reads.len()))?;
        Ok(last)
    }

    /// Runs a right-padded batch, handing each stage's hidden states to `see` (the last one twice: as the
    /// last layer's and as [`Stage::Output`]).
    fn run(&self, ids: &[Vec<u32>], pad_id: u32, see: See<'_>) -> Result<()> {
        let b = ids.len();
        let l = ids.iter().map(Vec::len).max().unwrap_or(0);
        if b == 0 || l == 0 {
            return Err(Error::Usage("empty batch".into()));
        }
        if l > self.cfg.max_tokens() {
            return Err(Error::Usage(format!(
                "a sequence of {l} tokens exceeds the position table ({} tokens)",
                self.cfg.max_tokens()
            )));
        }
        let mut flat_ids = Vec::with_capacity(b * l);
        let mut positions = Vec::with_capacity(b * l);
        let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        for seq in ids {
            let mut padded = seq.clone();
            padded.resize(l, pad_id);
            self.cfg.position_ids(&padded, &mut positions);
            flat_ids.extend_from_slice(&padded);
        }
        // On candle's thread pool, so that its matmuls and our row-parallel ops share one set of workers.
        let run = move || -> candle_core::Result<()> {
            let ids_t = Tensor::from_vec(flat_ids, (b, l), &self.device)?;
            let (embeddings, relative, layers) = match &self.body {
                Body::PostLn { embeddings, relative, layers } => (embeddings, relative, layers),
                Body::ModernBert(m) => return m.forward(&ids_t, &lengths, see),
                Body::Decoder(d) => return d.forward(&ids_t, &lengths, see),
                Body::Gemma3(g) => return g.forward(&ids_t, &lengths, see),
            };
            let pos_t = Tensor::from_vec(positions, (b, l), &self.device)?;
            let mut x = embeddings.forward(&ids_t, &pos_t)?;
            see(Stage::Embeddings, &x)?;
            // Computed once for the batch's length, shared by every layer (as transformers does).
            let bias = relative.as_ref().map(|r| r.for_length(l, self.dtype)).transpose()?;
            for (i, layer) in layers.iter().enumerate() {
                let (attn, out) = layer.forward_blocks(&x, &lengths, bias.as_ref())?;
                see(Stage::Attention(i), &attn)?;
                see(Stage::Mlp(i), &out)?;
                x = out;
            }
            see(Stage::Output, &x)
        };
        self.device.with_context(run).context(|| format!("encoder forward on a batch of {b} x {l} tokens"))
    }
}
