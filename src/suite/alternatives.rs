//! Alternatives computed with the suite's own model, to prove a diagnosis (see
//! [`crate::compare::diagnosis`]): the text alone, at other max lengths, pooled otherwise, prepared
//! otherwise, with the other attention mask, in other precisions.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use candle_core::DType;

use crate::compare::noise::{growth_floor, RecordedNoise};
use crate::compare::{Alternatives, Subject};
use crate::embed::for_each_batch;
use crate::error::{Error, Result};
use crate::model::{dtype_name, Model};
use crate::pipeline::{Lowercase, OutputKind, Pipeline, PoolingChoice, StConfig, TextPrep, Vector};

/// How many failing texts per pipeline get alternatives computed (each costs several encoder passes).
pub const DIAGNOSIS_BUDGET: usize = 64;

/// Computes alternatives with the suite's own model.
pub struct ModelAlternatives<'a> {
    model: &'a Model,
    pipeline: &'a Pipeline,
    texts: &'a [String],
    subject: Subject,
    reference_max_length: Option<usize>,
    /// Prompts and instructions the suite's model or settings know of, for the preprocessing alternatives.
    prompts: Vec<String>,
    /// The model loaded in other precisions, by alternative name (loaded on first use).
    others: HashMap<String, Model>,
    /// Max lengths proven on earlier texts, tried first.
    confirmed: Vec<usize>,
    examined: Vec<usize>,
    /// The pipeline's own pass on the text last asked about (its value and hidden rows): `ours` and
    /// `poolings` both need it.
    last: Option<(usize, Vector, Vec<f32>, usize)>,
    /// When recomputation must stop, and the whole budget (for the message).
    budget: Option<(Instant, Duration)>,
    /// The model in f64 (loaded on first use) and the f64 values computed, by text.
    exact_model: Option<Model>,
    exact: HashMap<usize, Vector>,
    /// Time the f32-noise proofs may take in all (see [`NOISE_ALLOWANCE`]) and have taken.
    noise_limit: Option<Duration>,
    noise_spent: Duration,
    /// The Python reference's own f32 noise, as its generator recorded it.
    recorded_noise: Option<RecordedNoise>,
    /// Every text's token count as the pipeline cuts it (computed on first use): the lengths a batch may have.
    lengths: Option<Vec<usize>>,
}

/// At most this many batch lengths (the shortest above the text's) are tried for a padded read.
pub const PADDED_LENGTHS: usize = 256;

/// The f32-noise proofs (an f64 pass of the text alone, each) may take this many times the diagnosis budget,
/// on a clock of their own: the time they take is not charged to the other diagnoses. An f64 pass costs about
/// 2.6 f32 passes of the text (README, "f32 noise"), so with the default budget (0.8 of the check's time) every
/// text of a check of embcheck's own pipeline whose texts all fail by noise is proven (5 x 0.8 = 4 > 2.6).
pub const NOISE_ALLOWANCE: f64 = 5.0;

impl<'a> ModelAlternatives<'a> {
    /// Alternatives of `pipeline` on `texts` with `model`, held against `subject`.
    pub fn new(model: &'a Model, pipeline: &'a Pipeline, texts: &'a [String], subject: Subject, reference_max_length: Option<usize>, instruction: Option<&str>) -> Self {
        let mut prompts: Vec<String> = StConfig::load(&model.files).map(|st| st.prompts.into_values().collect()).unwrap_or_default();
        prompts.extend(instruction.map(str::to_string));
        prompts.retain(|p| !p.is_empty());
        prompts.sort();
        prompts.dedup();
        ModelAlternatives {
            model,
            pipeline,
            texts,
            subject,
            reference_max_length,
            prompts,
            others: HashMap::new(),
            confirmed: Vec::new(),
            examined: Vec::new(),
            last: None,
            budget: None,
            exact_model: None,
            exact: HashMap::new(),
            noise_limit: None,
            noise_spent: Duration::ZERO,
            recorded_noise: None,
            lengths: None,
        }
    }

    /// The Python reference's own f32 noise (metadata `f64_noise`), a scale of the f32-noise proofs.
    pub fn with_recorded_noise(mut self, recorded: Option<RecordedNoise>) -> Self {
        self.recorded_noise = recorded;
        self
    }

    /// Recomputes until `until` (`budget` long in all, for the message); past it, every alternative is an
    /// error that the diagnosis reports as `unknown` ("budget spent").
    pub fn with_budget(mut self, until: Instant, budget: Duration) -> Self {
        self.budget = Some((until, budget));
        self.noise_limit = Some(budget.mul_f64(NOISE_ALLOWANCE));
        self
    }

    /// Runs `f` as part of an f32-noise proof: refused once the proofs' allowance is spent, and its time is
    /// given back to the other diagnoses (their deadline moves by it).
    fn noise_work<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if let Some(limit) = self.noise_limit {
            if self.noise_spent >= limit {
                return Err(Error::Usage(format!("not recomputed in f64: the f32-noise proofs' allowance of {:.3} s is spent ({NOISE_ALLOWANCE} x --diagnosis-budget)", limit.as_secs_f64())));
            }
        }
        let started = Instant::now();
        let out = f(self);
        let took = started.elapsed();
        self.noise_spent += took;
        if let Some((until, _)) = &mut self.budget {
            *until += took;
        }
        out
    }

    /// Why nothing more is recomputed, once the budget is spent.
    fn spent(&self) -> Option<String> {
        let (until, total) = self.budget?;
        (Instant::now() >= until).then(|| format!("not recomputed: the diagnosis budget of {:.3} s is spent (--diagnosis-budget)", total.as_secs_f64()))
    }

    /// An error once the budget is spent.
    fn within_budget(&self) -> Result<()> {
        self.spent().map_or(Ok(()), |m| Err(Error::Usage(m)))
    }

    /// Runs `pipeline` on one text alone with `model`; also returns the hidden rows.
    fn single(model: &Model, pipeline: &Pipeline, text: &str) -> Result<(Vector, Vec<f32>, usize)> {
        let ids = pipeline.prep.tokenize(&model.tokenizer, &[text.to_string()], pipeline.max_length)?;
        let mut out = None;
        for_each_batch(model, &ids, 1, |_, tokens, h| {
            out = Some((pipeline.apply(tokens, &ids[0], h)?, tokens.to_vec(), h));
            Ok(())
        })?;
        out.ok_or_else(|| Error::Usage("the encoder returned no output for a single text".into()))
    }

    /// The pipeline's own pass on text `index`, computed once while that text is diagnosed.
    fn own_pass(&mut self, index: usize) -> Result<&(usize, Vector, Vec<f32>, usize)> {
        if self.last.as_ref().is_none_or(|l| l.0 != index) {
            self.within_budget()?;
            let (v, rows, h) = Self::single(self.model, self.pipeline, &self.texts[index])?;
            self.last = Some((index, v, rows, h));
        }
        Ok(self.last.as_ref().expect("set above"))
    }

    /// The text prepared otherwise than the pipeline does (stripped or not, lowercased or not, with or without
    /// a prompt), named; preparations that give the tokenizer the same input as the pipeline are left out.
    fn preparations(&self, index: usize) -> Vec<(String, TextPrep)> {
        let base = self.pipeline.prep.clone();
        let text = &self.texts[index];
        let mut variants: Vec<(String, TextPrep)> = vec![
            (
                if base.strip { "the text not stripped of leading/trailing whitespace" } else { "the text stripped of leading/trailing whitespace" }.into(),
                TextPrep { strip: !base.strip, ..base.clone() },
            ),
            if base.lowercase == Lowercase::No {
                ("the text lowercased".into(), TextPrep { lowercase: Lowercase::Python, ..base.clone() })
            } else {
                ("the text not lowercased".into(), TextPrep { lowercase: Lowercase::No, ..base.clone() })
            },
        ];
        if base.prefix.is_empty() {
            for p in &self.prompts {
                variants.push((format!("the text with the prefix {p:?}"), TextPrep { prefix: p.clone(), ..base.clone() }));
            }
        } else {
            variants.push((format!("the text without the prefix {:?}", base.prefix), TextPrep { prefix: String::new(), ..base.clone() }));
        }
        // What the tokenizer is given: the prepared text, and whether its normalizer lowercases.
        let input = |p: &TextPrep| (p.apply(text), p.lowercase == Lowercase::Normalizer);
        let mut seen = vec![input(&base)];
        variants
            .into_iter()
            .filter(|(_, prep)| {
                // An alternative that gives the same input as the pipeline itself proves nothing.
                let prepared = input(prep);
                let new = !seen.contains(&prepared);
                seen.push(prepared);
                new
            })
            .collect()
    }

    fn with_prep(&self, index: usize, prep: TextPrep) -> Result<Vector> {
        self.within_budget()?;
        let mut p = self.pipeline.clone();
        p.prep = prep;
        Ok(Self::single(self.model, &p, &self.texts[index])?.0)
    }
}

impl Alternatives for ModelAlternatives<'_> {
    fn subject(&self) -> Subject {
        self.subject
    }

    fn begin(&mut self, index: usize) -> std::result::Result<(), String> {
        if self.examined.contains(&index) {
            return Ok(());
        }
        if let Some(why) = self.spent() {
            return Err(why);
        }
        if self.examined.len() >= DIAGNOSIS_BUDGET {
            return Err(format!("not recomputed: only the first {DIAGNOSIS_BUDGET} failing texts of a pipeline are diagnosed with the model"));
        }
        self.examined.push(index);
        Ok(())
    }

    fn ours(&mut self, index: usize) -> Result<Option<Vector>> {
        Ok(Some(self.own_pass(index)?.1.clone()))
    }

    fn with_max_length(&mut self, index: usize, max_length: usize) -> Result<Option<Vector>> {
        if max_length == 0 || max_length > self.model.config.max_tokens() {
            return Ok(None);
        }
        self.within_budget()?;
        let mut p = self.pipeline.clone();
        p.max_length = max_length;
        Ok(Some(Self::single(self.model, &p, &self.texts[index])?.0))
    }

    fn truncation_lengths(&mut self, index: usize) -> Result<Vec<usize>> {
        let n = self.token_count(index)?.unwrap_or(0);
        // Lengths proven on earlier texts, the reference's own max length, then the usual settings of
        // libraries and servers.
        let mut usual: Vec<usize> = self.reference_max_length.into_iter().collect();
        usual.extend((3..14).map(|k| 1usize << k).chain([384, 768]));
        usual.sort_unstable();
        let mut out = self.confirmed.clone();
        for m in usual {
            if !out.contains(&m) {
                out.push(m);
            }
        }
        out.retain(|&m| m >= 3 && m < n && m != self.pipeline.max_length);
        // A text the pipeline cut may have been kept longer: the usual limits above its length are in the list
        // above; the model's position limit keeps it whole (or cuts it where the model must).
        let limit = self.model.config.max_tokens();
        if n > self.pipeline.max_length && !out.contains(&limit) {
            out.push(limit);
        }
        Ok(out)
    }

    fn token_count(&mut self, index: usize) -> Result<Option<usize>> {
        Ok(Some(self.pipeline.prep.tokenize(&self.model.tokenizer, &self.texts[index..=index], self.model.config.max_tokens())?[0].len()))
    }

    fn confirm_truncation(&mut self, max_length: usize) {
        if !self.confirmed.contains(&max_length) {
            self.confirmed.push(max_length);
        }
    }

    fn position_limit(&self) -> Option<usize> {
        Some(self.model.config.max_tokens())
    }

    fn pipeline_max_length(&self) -> Option<usize> {
        Some(self.pipeline.max_length)
    }

    fn poolings(&mut self, index: usize) -> Result<Vec<(PoolingChoice, Vector)>> {
        if self.pipeline.kind.output() != OutputKind::Dense {
            return Ok(Vec::new());
        }
        let pipeline = self.pipeline;
        let (_, _, tokens, h) = self.own_pass(index)?;
        pipeline.pooling_alternatives(tokens, *h)
    }

    fn own_pooling(&self) -> Option<PoolingChoice> {
        self.pipeline.pooling()
    }

    fn preprocessings(&mut self, index: usize) -> Result<Vec<(String, Vector)>> {
        self.preparations(index).into_iter().map(|(name, prep)| Ok((name, self.with_prep(index, prep)?))).collect()
    }

    fn prepared_ids(&mut self, index: usize) -> Result<Vec<(String, Vec<u32>)>> {
        let (tokenizer, max_length) = (&self.model.tokenizer, self.pipeline.max_length);
        let text = &self.texts[index..=index];
        self.preparations(index).into_iter().map(|(name, prep)| Ok((name, prep.tokenize(tokenizer, text, max_length)?.remove(0)))).collect()
    }

    fn other_masks(&mut self, index: usize) -> Result<Vec<(String, Vector)>> {
        let Some(bidirectional) = self.model.encoder.bidirectional() else { return Ok(Vec::new()) };
        let name = if bidirectional {
            "the causal attention mask (config.json sets use_bidirectional_attention, which transformers 5 follows and 4.56 ignores)"
        } else {
            "a bidirectional attention mask (config.json leaves use_bidirectional_attention off)"
        };
        self.within_budget()?;
        if !self.others.contains_key(name) {
            let mut m = Model::from_files_for(self.model.files.clone(), self.model.encoder.dtype(), self.model.stack)?;
            m.encoder.set_bidirectional(!bidirectional);
            self.others.insert(name.to_string(), m);
        }
        let (v, _, _) = Self::single(&self.others[name], self.pipeline, &self.texts[index])?;
        Ok(vec![(name.to_string(), v)])
    }

    fn padded_reads(&mut self, index: usize) -> Result<Vec<(String, Vector)>> {
        if self.pipeline.pooling().is_none_or(|p| p.modes != "lasttoken") {
            return Ok(Vec::new());
        }
        let (model, pipeline) = (self.model, self.pipeline);
        let ids = pipeline.prep.tokenize(&model.tokenizer, &self.texts[index..=index], pipeline.max_length)?.remove(0);
        let n = ids.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        // The longest text of a batch sets its length: any of the suite's texts (as this pipeline cuts them),
        // that rounded up to a multiple of 8 (`pad_to_multiple_of=8`), or the max length when the batch is padded
        // to it.
        if self.lengths.is_none() {
            let all = pipeline.prep.tokenize(&model.tokenizer, self.texts, pipeline.max_length)?;
            self.lengths = Some(all.iter().map(Vec::len).collect());
        }
        let limit = model.config.max_tokens();
        let mut lengths: Vec<usize> =
            self.lengths.iter().flatten().flat_map(|&l| [l, l.div_ceil(8) * 8]).chain([pipeline.max_length]).filter(|&l| l > n && l <= limit).collect();
        lengths.sort_unstable();
        lengths.dedup();
        lengths.truncate(PADDED_LENGTHS);
        let special = &model.tokenizer.special;
        let pads: Vec<u32> = [Some(model.pad_id), special.pad, special.eos].into_iter().flatten().collect();
        let pads: Vec<u32> = pads.iter().enumerate().filter(|(k, p)| !pads[..*k].contains(p)).map(|(_, &p)| p).collect();
        let reads: Vec<(u32, usize)> = lengths.iter().flat_map(|&l| pads.iter().map(move |&p| (p, l - 1))).collect();
        if reads.is_empty() {
            return Ok(Vec::new());
        }
        self.within_budget()?;
        let Some(rows) = model.encoder.padded_rows(&ids, &reads)? else { return Ok(Vec::new()) };
        let rows: Vec<f32> = rows.flatten_all().and_then(|t| t.to_vec1()).map_err(|source| Error::Compute { context: "padded rows".into(), source })?;
        let (_, _, tokens, h) = self.own_pass(index)?;
        let (mut tokens, h) = (tokens.clone(), *h);
        let last = (n - 1) * h;
        reads
            .iter()
            .zip(rows.chunks_exact(h))
            .map(|(&(pad, at), row)| {
                // The text's own rows with its last one replaced by the padded position's: what the pooling reads.
                tokens[last..last + h].copy_from_slice(row);
                let v = pipeline.apply(&tokens, &ids, h)?;
                Ok((format!("this text right-padded to {} tokens with pad id {pad} and read at the last position ({at}, a pad)", at + 1), v))
            })
            .collect()
    }

    fn f64_value(&mut self, index: usize) -> Result<Option<Vector>> {
        if self.noise_limit.is_some_and(|l| l.is_zero()) {
            return Ok(None);
        }
        if let Some(v) = self.exact.get(&index) {
            return Ok(Some(v.clone()));
        }
        let v = self.noise_work(|s| {
            if s.exact_model.is_none() {
                s.exact_model = Some(Model::from_files_for(s.model.files.clone(), DType::F64, s.model.stack)?);
            }
            let model = s.exact_model.as_ref().expect("loaded above");
            Ok(Self::single(model, s.pipeline, &s.texts[index])?.0)
        })?;
        self.exact.insert(index, v.clone());
        Ok(Some(v))
    }

    fn f64_known(&self, index: usize) -> Option<Vector> {
        self.exact.get(&index).cloned()
    }

    fn noise_scales(&mut self, index: usize) -> Result<(Option<f64>, f64)> {
        let tokens = self.pipeline.prep.tokenize(&self.model.tokenizer, &self.texts[index..=index], self.pipeline.max_length)?[0].len();
        let c = &self.model.config;
        let recorded = self.recorded_noise.as_ref().and_then(|r| r.scale_for(tokens));
        Ok((recorded, growth_floor(tokens, c.hidden_size, c.intermediate_size, c.num_hidden_layers)))
    }

    fn python_f64(&self, id: &str) -> Option<Vector> {
        self.recorded_noise.as_ref()?.exact_of(id)
    }

    fn other_precisions(&mut self, index: usize) -> Result<Vec<(String, Vector)>> {
        let here = self.model.encoder.dtype();
        let mut out = Vec::new();
        // Computing in another precision; and, from f32, the weights stored in a lower one and computed in f32
        // (the rounding every f16 computation of this model shares).
        let mut variants: Vec<(String, DType, bool)> =
            [DType::F32, DType::F16, DType::BF16].into_iter().filter(|&dt| dt != here).map(|dt| (format!("computing in {}", dtype_name(dt)), dt, false)).collect();
        if here == DType::F32 {
            variants.extend([DType::F16, DType::BF16].map(|dt| (format!("{} weights computed in f32", dtype_name(dt)), dt, true)));
        }
        for (name, dt, rounded) in variants {
            self.within_budget()?;
            if !self.others.contains_key(&name) {
                let (files, stack) = (self.model.files.clone(), self.model.stack);
                let m = if rounded { Model::from_files_rounded(files, dt, stack)? } else { Model::from_files_for(files, dt, stack)? };
                self.others.insert(name.clone(), m);
            }
            let (v, _, _) = Self::single(&self.others[&name], self.pipeline, &self.texts[index])?;
            out.push((name, v));
        }
        Ok(out)
    }
}
