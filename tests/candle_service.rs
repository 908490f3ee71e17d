//! A Rust embedding service built on candle-transformers' `BertModel` the way candle's own BERT example
//! embeds (tokenizers' `Tokenizer::from_file`, batch-longest padding, `forward`, mean over the sequence,
//! optionally L2-normalized), checked through the library API as a downstream crate's `cargo test` would:
//! `Suite::check_embedder`. What embcheck finds in it is asserted here and reported in the README.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use embcheck::{Output, PipelineKind, Suite, Vector};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

#[derive(Clone, Copy)]
enum Pool {
    /// The candle example: `embeddings.sum(1) / n_tokens`, padding included.
    ExampleMean,
    /// Mean over the real tokens only.
    MaskedMean,
    Cls,
}

struct Service {
    model: BertModel,
    tokenizer: Tokenizer,
    pool: Pool,
    normalize: bool,
}

impl Service {
    /// `truncation`: `Some(n)` cuts at n tokens as a careful service does; `None` keeps whatever tokenizer.json
    /// installs, as the example does.
    fn new(model: &str, dtype: DType, pool: Pool, normalize: bool, truncation: Option<usize>) -> Service {
        let dir = common::root().join("fixtures/models").join(model);
        let config: Config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        // SAFETY: the fixture is memory-mapped read-only and not written during the test.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], dtype, &Device::Cpu) }.unwrap();
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        tokenizer.with_padding(Some(PaddingParams::default()));
        if let Some(max_length) = truncation {
            tokenizer.with_truncation(Some(TruncationParams { max_length, ..Default::default() })).unwrap();
        }
        Service { model: BertModel::load(vb, &config).unwrap(), tokenizer, pool, normalize }
    }

    fn embed(&self, texts: &[String]) -> Vec<Vec<f32>> {
        self.embed_with_ids(texts).into_iter().map(|(v, _)| v).collect()
    }

    /// Each text's vector and the token ids it was encoded as (padding left out).
    fn embed_with_ids(&self, texts: &[String]) -> Vec<(Vec<f32>, Vec<u32>)> {
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).unwrap();
        let rows = |f: fn(&tokenizers::Encoding) -> &[u32]| -> Tensor {
            Tensor::stack(&enc.iter().map(|e| Tensor::new(f(e), &Device::Cpu).unwrap()).collect::<Vec<_>>(), 0).unwrap()
        };
        let (ids, mask) = (rows(|e| e.get_ids()), rows(|e| e.get_attention_mask()));
        let h = self.model.forward(&ids, &ids.zeros_like().unwrap(), Some(&mask)).unwrap().to_dtype(DType::F32).unwrap();
        let (_, n, _) = h.dims3().unwrap();
        let pooled = match self.pool {
            Pool::ExampleMean => (h.sum(1).unwrap() / n as f64).unwrap(),
            Pool::MaskedMean => {
                let m = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
                h.broadcast_mul(&m).unwrap().sum(1).unwrap().broadcast_div(&m.sum(1).unwrap()).unwrap()
            }
            Pool::Cls => h.narrow(1, 0, 1).unwrap().squeeze(1).unwrap(),
        };
        let pooled = if self.normalize { pooled.broadcast_div(&pooled.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap()).unwrap() } else { pooled };
        let ids = enc.iter().map(|e| e.get_ids().iter().zip(e.get_attention_mask()).filter(|(_, m)| **m == 1).map(|(i, _)| *i).collect());
        pooled.to_vec2::<f32>().unwrap().into_iter().zip(ids).collect()
    }
}

fn check(suite: &str, kind: PipelineKind, service: Service) -> embcheck::SuiteReport {
    let mut f = |texts: &[String]| service.embed(texts);
    Suite::load(common::suite(suite)).unwrap().check_embedder(kind, &mut f).unwrap()
}

fn keywords(r: &embcheck::SuiteReport) -> Vec<(String, &'static str)> {
    r.pipelines[0].rows.iter().filter(|x| !x.pass()).map(|x| (x.id.clone(), x.diagnosis.as_ref().unwrap().stage.keyword())).collect()
}

#[test]
fn a_cls_service_matches_flag_embedding_and_without_normalization_is_diagnosed() {
    let r = check("tiny-bert-cls", PipelineKind::NormalizedCls, Service::new("tiny-bert-cls", DType::F32, Pool::Cls, true, Some(48)));
    r.assert_passed();
    let r = check("tiny-bert-cls", PipelineKind::NormalizedCls, Service::new("tiny-bert-cls", DType::F32, Pool::Cls, false, Some(48)));
    let k = keywords(&r);
    assert_eq!(k.len(), r.pipelines[0].rows.len(), "every text fails\n{}", r.failure_message());
    assert!(k.iter().all(|(_, kw)| *kw == "normalization"), "{}", r.failure_message());
}

#[test]
fn the_candle_example_as_written_and_corrected() {
    // Corrected: masked mean, truncation at the model's 64 tokens — passes.
    let r = check("tiny-bert-mean", PipelineKind::SentenceTransformers, Service::new("tiny-bert-mean", DType::F32, Pool::MaskedMean, true, Some(64)));
    r.assert_passed();
    // As the example is written: the truncation baked into tokenizer.json (16 tokens) stays installed, and the
    // mean runs over the padding. Texts past 16 tokens are cut; texts padded in their batch are averaged
    // with pad rows.
    let r = check("tiny-bert-mean", PipelineKind::SentenceTransformers, Service::new("tiny-bert-mean", DType::F32, Pool::ExampleMean, true, None));
    let k = keywords(&r);
    assert!(!k.is_empty(), "{}", r.failure_message());
    assert!(k.iter().any(|(_, kw)| *kw == "truncation"), "{}", r.failure_message());
    // Only the padding is left with truncation at 64: nothing embcheck computes explains a mean over pad
    // rows, so those texts are `unknown`, never a wrongly named stage.
    let r = check("tiny-bert-mean", PipelineKind::SentenceTransformers, Service::new("tiny-bert-mean", DType::F32, Pool::ExampleMean, true, Some(64)));
    let k = keywords(&r);
    assert!(!k.is_empty() && k.iter().all(|(_, kw)| *kw == "unknown"), "{}", r.failure_message());
}

#[test]
fn candle_bert_in_f16() {
    // candle-transformers' BERT builds its additive mask as (1 − m)·f32::MIN in the model dtype: in f16 that is
    // −inf, and the outputs are NaN on every text of the suite (measured), which embcheck names `non-finite`.
    let r = check("tiny-bert-cls", PipelineKind::NormalizedCls, Service::new("tiny-bert-cls", DType::F16, Pool::Cls, true, Some(48)));
    let k = keywords(&r);
    assert_eq!(k.len(), r.pipelines[0].rows.len(), "{}", r.failure_message());
    assert!(k.iter().all(|(_, kw)| *kw == "non-finite"), "{}", r.failure_message());
}

#[test]
fn a_port_that_cuts_later_than_the_reference_is_diagnosed_truncation() {
    // The suite was made at 48 tokens; the port cuts at the model's 128 positions. Every text longer than 48
    // tokens fails, and each is `truncation`, with the port's token ids and without them.
    let mut suite = Suite::load(common::suite("tiny-bert-cls")).unwrap();
    // What is tested is the diagnosis itself: a budget that lets it finish on a loaded machine.
    suite.diagnosis_budget = embcheck::DiagnosisBudget::Time(std::time::Duration::from_secs(120));
    let service = Service::new("tiny-bert-cls", DType::F32, Pool::Cls, true, Some(128));
    let mut plain = |texts: &[String]| service.embed(texts);
    let without_ids = suite.check_embedder(PipelineKind::NormalizedCls, &mut plain).unwrap();
    let mut with_ids = |texts: &[String]| -> Vec<Output> {
        service.embed_with_ids(texts).into_iter().map(|(v, ids)| Output { value: Ok(Vector::Dense(v)), token_ids: Some(ids) }).collect()
    };
    let with_ids = suite.check_embedder(PipelineKind::NormalizedCls, &mut with_ids).unwrap();
    // Which texts the reference cut: those the port (candle's tokenizer, cutting at 128) keeps longer than 48.
    let texts: Vec<String> = embcheck::fixture::read_texts(&suite.spec.texts_path()).unwrap().into_iter().map(|t| t.text).collect();
    let cut: Vec<usize> = service.embed_with_ids(&texts).iter().enumerate().filter(|(_, (_, ids))| ids.len() > 48).map(|(i, _)| i).collect();
    assert!(cut.len() >= 3, "the suite has texts longer than 48 tokens: {cut:?}");
    for r in [&without_ids, &with_ids] {
        let failing: Vec<usize> = r.pipelines[0].rows.iter().filter(|x| !x.pass()).map(|x| x.index).collect();
        assert_eq!(failing, cut, "exactly the texts the reference cut fail\n{}", r.failure_message());
        let k = keywords(r);
        assert!(k.iter().all(|(_, kw)| *kw == "truncation"), "{}", r.failure_message());
        for row in r.pipelines[0].rows.iter().filter(|x| !x.pass()) {
            let d = &row.diagnosis.as_ref().unwrap().detail;
            assert!(d.contains("the reference cuts it at 48"), "{d}");
            assert!(d.contains("which keeps all of its") || d.contains("max length 128, the model's position limit"), "{d}");
        }
    }
    assert!(with_ids.pipelines[0].rows.iter().filter(|x| !x.pass()).all(|x| x.diagnosis.as_ref().unwrap().detail.starts_with("token ids agree up to position 47")));
}

#[test]
fn a_raw_cls_port_against_a_mean_and_normalize_reference_is_told_both_differences() {
    let r = check("tiny-bert-mean", PipelineKind::SentenceTransformers, Service::new("tiny-bert-mean", DType::F32, Pool::Cls, false, Some(64)));
    let failing: Vec<_> = r.failing_rows().collect();
    assert_eq!(failing.len(), r.pipelines[0].rows.len(), "{}", r.failure_message());
    for row in failing {
        let d = row.diagnosis.as_ref().unwrap();
        assert_eq!(d.stage, embcheck::Stage::Pooling, "{}", row.failure_line());
        assert!(d.detail.ends_with("it differs in pooling (cls instead of mean) and in normalization (not normalized instead of L2-normalized)"), "{}", d.detail);
    }
}
