//! `embcheck selftest`: the detection matrix. Each row checks, through [`Suite::check_embedder`], a system
//! that is embcheck's own pipeline on a bundled model with exactly one thing changed (see [`mutations`]),
//! against the unmutated Python references. A fault beyond tolerance must fail, and every failing text must
//! carry the expected diagnosis; a benign change must pass. Where no alternative embcheck computes explains a
//! fault (weight noise, a dropped layer, shifted positions), the expected diagnosis is `unknown`: the gate
//! must not name a cause it has not shown.

pub mod mutations;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use candle_core::DType;

use crate::error::{Error, Result};
use crate::model::ModelFiles;
use crate::pipeline::{Pipeline, PipelineKind};
use crate::suite::Suite;
pub use mutations::{FileChange, RunChange};

/// What a row must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Every text within tolerance.
    Pass,
    /// At least one text out of tolerance, and every failing text diagnosed with this keyword.
    Fail(&'static str),
    /// At least one text out of tolerance, every failing text diagnosed with one of these keywords: a fault
    /// that is, per text, not distinguishable from the first keyword's cause on these small models.
    FailEither(&'static str, &'static str),
}

/// One injected fault or benign change.
#[derive(Debug, Clone)]
pub struct Mutation {
    /// What was changed, for the table.
    pub name: &'static str,
    /// The bundled suite (directory name under `fixtures/suites`).
    pub suite: &'static str,
    /// Its pipeline checked.
    pub pipeline: PipelineKind,
    /// The change to the model's files.
    pub files: FileChange,
    /// The dtype the mutated system computes in.
    pub dtype: DType,
    /// The change to how the pipeline is run.
    pub run: RunChange,
    /// What the check must find.
    pub expect: Expect,
}

const MEAN: &str = "tiny-bert-mean";
const CLS: &str = "tiny-bert-cls";
const M3: &str = "tiny-xlmr-m3";
const M3_QUERY: &str = "tiny-xlmr-m3-query";
const MPNET: &str = "tiny-mpnet";
const DISTIL: &str = "tiny-distilbert";
const DISTIL_SIN: &str = "tiny-distilbert-sinusoidal";
const MODERN: &str = "tiny-modernbert";
const MODERN_CLS: &str = "tiny-modernbert-cls";
const QWEN3: &str = "tiny-qwen3";
const QWEN3_QUERY: &str = "tiny-qwen3-query";
const MISTRAL: &str = "tiny-mistral";
const LLAMA: &str = "tiny-llama";
const GEMMA: &str = "tiny-embeddinggemma-tf5";
const GEMMA_QUERY: &str = "tiny-embeddinggemma-query-tf5";

/// The matrix: every fault class embcheck is meant to catch, and the changes it must not flag.
pub fn matrix() -> Vec<Mutation> {
    use FileChange as F;
    use PipelineKind::{M3Colbert, M3Sparse, NormalizedCls, NormalizedLast, RawLast, SentenceTransformers as St};
    use RunChange as R;
    let m = |name, suite, pipeline, files, dtype, run, expect| Mutation { name, suite, pipeline, files, dtype, run, expect };
    let f32 = DType::F32;
    vec![
        m("normalization dropped", MEAN, St, F::None, f32, R::Pooling("mean pooling"), Expect::Fail("normalization")),
        m("normalization dropped (raw CLS)", M3, NormalizedCls, F::None, f32, R::Head(PipelineKind::RawCls), Expect::Fail("normalization")),
        m("pooling mean -> cls", MEAN, St, F::None, f32, R::Pooling("cls pooling, normalized"), Expect::Fail("pooling")),
        m("pooling cls -> mean", CLS, St, F::None, f32, R::Pooling("mean pooling"), Expect::Fail("pooling")),
        m("max length 64 -> 16", MEAN, St, F::None, f32, R::MaxLength(16), Expect::Fail("truncation")),
        m("max length 128 -> 16", M3, M3Sparse, F::None, f32, R::MaxLength(16), Expect::Fail("truncation")),
        m("pad id 1 -> 0 (positions from it)", M3, NormalizedCls, F::PadId(0), f32, R::None, Expect::Fail("unknown")),
        m("pad id 0 -> 1 (pads masked)", MEAN, St, F::PadId(1), f32, R::BatchSize(7), Expect::Pass),
        m("lowercasing dropped", CLS, St, F::None, f32, R::Lowercase, Expect::Fail("preprocessing")),
        m("stripping dropped", M3, St, F::None, f32, R::Strip, Expect::Fail("preprocessing")),
        m("prompt \"query: \" added", MEAN, St, F::None, f32, R::Prefix("query: "), Expect::Fail("preprocessing")),
        m("instruction \"query: \" dropped", M3_QUERY, NormalizedCls, F::None, f32, R::DropPrefix, Expect::Fail("preprocessing")),
        m("weights rounded to f16", MEAN, St, F::Round { f16: true }, f32, R::None, Expect::Fail("precision")),
        m("weights rounded to bf16", MEAN, St, F::Round { f16: false }, f32, R::None, Expect::Fail("precision")),
        m("weights rounded to f16", M3, M3Colbert, F::Round { f16: true }, f32, R::None, Expect::Fail("precision")),
        m("computed in f16", MEAN, St, F::None, DType::F16, R::None, Expect::Fail("precision")),
        m("computed in bf16", M3, NormalizedCls, F::None, DType::BF16, R::None, Expect::Fail("precision")),
        m("weight noise 1e-6 relative", MEAN, St, F::Noise(1e-6), f32, R::None, Expect::Pass),
        m("weight noise 1e-3 relative", MEAN, St, F::Noise(1e-3), f32, R::None, Expect::FailEither("unknown", "precision")),
        m("weight noise 1e-1 relative", MEAN, St, F::Noise(1e-1), f32, R::None, Expect::Fail("unknown")),
        m("weight noise 1e-1 relative", M3, M3Sparse, F::Noise(1e-1), f32, R::None, Expect::Fail("unknown")),
        m("last layer dropped", MEAN, St, F::DropLayer, f32, R::None, Expect::Fail("unknown")),
        m("last layer dropped", M3, M3Sparse, F::DropLayer, f32, R::None, Expect::Fail("unknown")),
        m("pad tokens attended (no attention mask)", MEAN, St, F::None, f32, R::PadsAttended, Expect::Fail("unknown")),
        m("tokenizer of tiny-bert-mean", CLS, St, F::Tokenizer("tiny-bert-mean"), f32, R::None, Expect::Fail("tokenization")),
        m("tokenizer of tiny-xlmr-spm", M3, NormalizedCls, F::Tokenizer("tiny-xlmr-spm"), f32, R::None, Expect::FailEither("tokenization", "preprocessing")),
        m("batch size 1", MEAN, St, F::None, f32, R::BatchSize(1), Expect::Pass),
        m("batch size 7", M3, M3Sparse, F::None, f32, R::BatchSize(7), Expect::Pass),
        m("input order reversed", M3, M3Colbert, F::None, f32, R::Reversed, Expect::Pass),
        m("RAYON_NUM_THREADS=1 (child process)", MEAN, St, F::None, f32, R::Threads(1), Expect::Pass),
        // The same faults on MPNet, whose alternatives its own encoder recomputes.
        m("normalization dropped", MPNET, St, F::None, f32, R::Pooling("mean pooling"), Expect::Fail("normalization")),
        m("pooling mean -> cls", MPNET, St, F::None, f32, R::Pooling("cls pooling, normalized"), Expect::Fail("pooling")),
        m("max length 512 -> 64", MPNET, St, F::None, f32, R::MaxLength(64), Expect::Fail("truncation")),
        m("weights rounded to f16", MPNET, St, F::Round { f16: true }, f32, R::None, Expect::Fail("precision")),
        m("computed in bf16", MPNET, NormalizedCls, F::None, DType::BF16, R::None, Expect::Fail("precision")),
        m("last layer dropped", MPNET, St, F::DropLayer, f32, R::None, Expect::Fail("unknown")),
        m("batch size 7", MPNET, St, F::None, f32, R::BatchSize(7), Expect::Pass),
        // DistilBERT, learned and sinusoidal positions.
        m("normalization dropped", DISTIL, St, F::None, f32, R::Pooling("mean pooling"), Expect::Fail("normalization")),
        m("max length 128 -> 16", DISTIL, St, F::None, f32, R::MaxLength(16), Expect::Fail("truncation")),
        m("weights rounded to bf16", DISTIL, St, F::Round { f16: false }, f32, R::None, Expect::Fail("precision")),
        m("pooling cls -> mean", DISTIL_SIN, St, F::None, f32, R::Pooling("mean pooling"), Expect::Fail("pooling")),
        m("computed in f16", DISTIL_SIN, NormalizedCls, F::None, DType::F16, R::None, Expect::Fail("precision")),
        m("normalization dropped", MODERN, St, F::None, f32, R::Pooling("mean pooling"), Expect::Fail("normalization")),
        m("pooling mean -> cls", MODERN, St, F::None, f32, R::Pooling("cls pooling, normalized"), Expect::Fail("pooling")),
        m("max length 512 -> 24", MODERN, St, F::None, f32, R::MaxLength(24), Expect::Fail("truncation")),
        m("weights rounded to f16", MODERN, St, F::Round { f16: true }, f32, R::None, Expect::Fail("precision")),
        m("computed in bf16", MODERN, NormalizedCls, F::None, DType::BF16, R::None, Expect::Fail("precision")),
        m("last layer dropped", MODERN, St, F::DropLayer, f32, R::None, Expect::Fail("unknown")),
        m("pad tokens attended (no attention mask)", MODERN, St, F::None, f32, R::PadsAttended, Expect::Fail("unknown")),
        m("batch size 7", MODERN, St, F::None, f32, R::BatchSize(7), Expect::Pass),
        m("pooling cls -> mean", MODERN_CLS, St, F::None, f32, R::Pooling("mean pooling, normalized"), Expect::Fail("pooling")),
        m("computed in f16", MODERN_CLS, NormalizedCls, F::None, DType::F16, R::None, Expect::Fail("precision")),
        // Decoders: last-token pooling, EOS, instructions.
        m("normalization dropped", QWEN3, St, F::None, f32, R::Pooling("lasttoken pooling"), Expect::Fail("normalization")),
        m("normalization dropped (raw last token)", QWEN3, NormalizedLast, F::None, f32, R::Head(RawLast), Expect::Fail("normalization")),
        m("pooling lasttoken -> mean", QWEN3, St, F::None, f32, R::Pooling("mean pooling, normalized"), Expect::Fail("pooling")),
        m("EOS doubled (appended after the tokenizer's)", QWEN3, NormalizedLast, F::None, f32, R::EosByHand(true), Expect::Fail("tokenization")),
        m("EOS dropped (not appended by hand)", MISTRAL, NormalizedLast, F::None, f32, R::EosByHand(false), Expect::Fail("tokenization")),
        m("instruction dropped", QWEN3_QUERY, NormalizedLast, F::None, f32, R::DropPrefix, Expect::Fail("preprocessing")),
        m("prompt dropped", QWEN3_QUERY, St, F::None, f32, R::DropPrefix, Expect::Fail("preprocessing")),
        m("computed in f16", QWEN3, RawLast, F::None, DType::F16, R::None, Expect::Fail("precision")),
        m("weights rounded to bf16", MISTRAL, St, F::Round { f16: false }, f32, R::None, Expect::Fail("precision")),
        m("max length 512 -> 16", LLAMA, St, F::None, f32, R::MaxLength(16), Expect::Fail("truncation")),
        m("last layer dropped", MISTRAL, RawLast, F::DropLayer, f32, R::None, Expect::Fail("unknown")),
        // Right padding under a causal mask: no real token ever attends a pad, mask or not.
        m("pad tokens attended (no attention mask)", MISTRAL, RawLast, F::None, f32, R::PadsAttended, Expect::Pass),
        // The batch's last position read on the right: a pad for every text shorter than its batch's longest.
        m("right padding read at the last position (batches of 8)", QWEN3, NormalizedLast, F::None, f32, R::LastPositionOfRightPadded(8), Expect::Fail("padding")),
        m("right padding read at the last position (batches of 8)", MISTRAL, St, F::None, f32, R::LastPositionOfRightPadded(8), Expect::Fail("padding")),
        m("batch size 7", QWEN3, St, F::None, f32, R::BatchSize(7), Expect::Pass),
        // EmbeddingGemma's shape: Gemma 3 run bidirectionally, two Dense layers after the pooling.
        m("causal mask on a bidirectional model", GEMMA, St, F::Causal, f32, R::None, Expect::Fail("attention-mask")),
        m("computed in f16", GEMMA_QUERY, St, F::None, DType::F16, R::None, Expect::Fail("precision")),
        m("batch size 7", GEMMA, St, F::None, f32, R::BatchSize(7), Expect::Pass),
    ]
}

/// What one row found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The mutation.
    pub mutation: Mutation,
    /// Texts out of tolerance, of all.
    pub failed: usize,
    /// Texts checked.
    pub total: usize,
    /// The largest relative L2 distance of any text from the reference.
    pub max_rel_l2: f64,
    /// Diagnosis keyword → number of failing texts, with the first detail seen.
    pub keywords: BTreeMap<&'static str, (usize, String)>,
}

impl Outcome {
    /// Whether the row shows what was expected.
    pub fn matches(&self) -> bool {
        match self.mutation.expect {
            Expect::Pass => self.failed == 0,
            Expect::Fail(k) => self.failed > 0 && self.keywords.len() == 1 && self.keywords.contains_key(k),
            Expect::FailEither(a, b) => self.failed > 0 && self.keywords.keys().all(|k| *k == a || *k == b),
        }
    }

    fn verdict(&self) -> String {
        if self.failed == 0 {
            format!("pass 0/{}", self.total)
        } else {
            format!("FAIL {}/{}", self.failed, self.total)
        }
    }

    fn diagnoses(&self) -> String {
        if self.keywords.is_empty() {
            return "-".into();
        }
        self.keywords.iter().map(|(k, (n, _))| format!("{k} x{n}")).collect::<Vec<_>>().join(", ")
    }
}

/// Runs one row: builds the mutated system and checks it against the suite's references.
pub fn run_one(fixtures: &Path, m: &Mutation, exe: Option<&Path>) -> Result<Outcome> {
    let mut suite = Suite::load(fixtures.join("suites").join(m.suite))?;
    // Every row's diagnosis is part of the matrix: none is cut short by a budget.
    suite.diagnosis_budget = crate::suite::DiagnosisBudget::Unlimited;
    let source = ModelFiles::resolve(&suite.spec.model_location)?.dir;
    let tmp = mutations::temp_dir(m.suite)?;
    // The model as the stack the reference was made with loads it (tokenizer, text handling).
    let stack = crate::model::Stack::from_reference(&suite.load_data()?.metadata).map_err(|e| Error::input(suite.spec.reference_path(), e.to_string()))?;
    let model = mutations::load_mutated(&source, &m.files, m.dtype, &tmp, &fixtures.join("models"), stack)?;
    let options = suite.spec.options.clone();
    let pipeline = Pipeline::build(m.pipeline, &model, &options)?;
    let mut system = mutations::MutatedSystem::new(model, pipeline, m.run.clone(), &options, exe.map(Path::to_path_buf))?;
    let report = suite.check_embedder(m.pipeline, &mut system)?;
    let result = report
        .pipelines
        .first()
        .ok_or_else(|| Error::Usage(format!("selftest: suite {} gave no result for {}", m.suite, m.pipeline)))?;
    let mut keywords: BTreeMap<&'static str, (usize, String)> = BTreeMap::new();
    for row in result.rows.iter().filter(|r| !r.pass()) {
        let (k, d) = row.diagnosis.as_ref().map_or(("(none)", String::new()), |d| (d.stage.keyword(), format!("{}: {}", row.id, d.detail)));
        keywords.entry(k).or_insert((0, d)).0 += 1;
    }
    Ok(Outcome {
        mutation: m.clone(),
        failed: result.summary.failed,
        total: result.rows.len(),
        max_rel_l2: result.summary.max_rel_l2,
        keywords,
    })
}

/// Runs every row of the [`matrix`]. `fixtures` is the directory holding `suites/` and `models/`; `exe`
/// the `embcheck` binary (for the thread-count row). `progress` is called after each row.
pub fn run(fixtures: &Path, exe: Option<PathBuf>, mut progress: impl FnMut(&Outcome)) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    for m in matrix() {
        let o = run_one(fixtures, &m, exe.as_deref())?;
        progress(&o);
        out.push(o);
    }
    Ok(out)
}

/// The matrix as a Markdown table: mutation × suite/pipeline × expected × verdict × max relative L2 ×
/// diagnoses × match.
pub fn render(outcomes: &[Outcome]) -> String {
    let mut s = String::from("| mutation | suite / pipeline | expected | verdict (failed/texts) | max rel L2 | diagnoses of failing texts | match |\n");
    s.push_str("|---|---|---|---|---|---|---|\n");
    for o in outcomes {
        let m = &o.mutation;
        let expected = match m.expect {
            Expect::Pass => "pass".to_string(),
            Expect::Fail(k) => format!("fail: {k}"),
            Expect::FailEither(a, b) => format!("fail: {a} or {b}"),
        };
        let _ = writeln!(
            s,
            "| {} | {} / {} | {expected} | {} | {:.1e} | {} | {} |",
            m.name,
            m.suite,
            m.pipeline,
            o.verdict(),
            o.max_rel_l2,
            o.diagnoses(),
            if o.matches() { "yes" } else { "NO" }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(expect: Expect, failed: usize, keywords: &[(&'static str, usize)]) -> Outcome {
        let mutation = Mutation {
            name: "x",
            suite: MEAN,
            pipeline: PipelineKind::SentenceTransformers,
            files: FileChange::None,
            dtype: DType::F32,
            run: RunChange::None,
            expect,
        };
        let keywords = keywords.iter().map(|&(k, n)| (k, (n, String::new()))).collect();
        Outcome { mutation, failed, total: 42, max_rel_l2: 0.0, keywords }
    }

    #[test]
    fn a_row_matches_only_when_every_failing_text_has_the_expected_keyword() {
        assert!(outcome(Expect::Pass, 0, &[]).matches());
        assert!(!outcome(Expect::Pass, 1, &[("unknown", 1)]).matches());
        assert!(outcome(Expect::Fail("pooling"), 42, &[("pooling", 42)]).matches());
        // Caught, but one text named another cause: not a match.
        assert!(!outcome(Expect::Fail("unknown"), 42, &[("precision", 1), ("unknown", 41)]).matches());
        // Not caught at all: not a match, whatever the keywords.
        assert!(!outcome(Expect::Fail("unknown"), 0, &[]).matches());
        let table = render(&[outcome(Expect::Fail("unknown"), 42, &[("precision", 1), ("unknown", 41)])]);
        assert!(table.contains("| fail: unknown | FAIL 42/42 | 0.0e0 | precision x1, unknown x41 | NO |"), "{table}");
    }

    #[test]
    fn every_fault_class_of_the_issue_is_in_the_matrix() {
        let rows = matrix();
        let has = |f: &dyn Fn(&Mutation) -> bool| rows.iter().any(f);
        assert!(has(&|m| matches!(m.files, FileChange::Round { f16: true })));
        assert!(has(&|m| matches!(m.files, FileChange::Round { f16: false })));
        assert!(has(&|m| matches!(m.files, FileChange::DropLayer)));
        assert!(has(&|m| matches!(m.files, FileChange::PadId(_))));
        assert!(has(&|m| matches!(m.files, FileChange::Tokenizer(_))));
        assert!(rows.iter().filter(|m| matches!(m.files, FileChange::Noise(_))).count() >= 3);
        for run in [RunChange::Lowercase, RunChange::Strip, RunChange::Reversed, RunChange::Threads(1)] {
            assert!(has(&|m| m.run == run), "{run:?}");
        }
        assert!(has(&|m| matches!(m.run, RunChange::MaxLength(_))));
        assert!(has(&|m| matches!(m.run, RunChange::Prefix(_))));
        assert!(has(&|m| matches!(m.run, RunChange::Pooling(_))));
        assert!(has(&|m| matches!(m.run, RunChange::BatchSize(1))));
        assert!(has(&|m| m.dtype == DType::F16));
    }
}
