//! Resolving what `inspect` was pointed at — a suite directory or a model — into an [`InspectRequest`].

use std::path::Path;

use candle_core::DType;

use super::InspectRequest;
use crate::error::{Error, Result};
use crate::fixture::{read_texts, SuiteSpec, TensorFile};
use crate::model::{ModelFiles, Stack};
use crate::pipeline::{PipelineKind, PipelineOptions};

/// The pipelines shown for a model named without a suite: the three seed pipelines every encoder has.
pub const SEED_PIPELINES: [PipelineKind; 3] = [PipelineKind::RawCls, PipelineKind::NormalizedCls, PipelineKind::SentenceTransformers];

/// The text with id `id` of the suite in directory `suite` (its texts.jsonl).
pub fn suite_text(suite: &str, id: &str) -> Result<String> {
    let dir = Path::new(suite);
    if !dir.join("suite.toml").is_file() {
        return Err(Error::Usage(format!("--text-id needs a suite directory; {suite} has no suite.toml")));
    }
    let path = SuiteSpec::load(dir)?.texts_path();
    let texts = read_texts(&path)?;
    texts.iter().find(|t| t.id == id).map(|t| t.text.clone()).ok_or_else(|| {
        let some: Vec<&str> = texts.iter().take(5).map(|t| t.id.as_str()).collect();
        Error::input(&path, format!("no text with id {id:?} (ids look like: {})", some.join(", ")))
    })
}

impl InspectRequest {
    /// `target` is a suite directory (holding suite.toml: its model, pipelines, options, dtype and the stack
    /// its reference was made with) or a model (directory or hub id: the seed pipelines, f32, the default
    /// stack). `stack`, `dtype`, `pipelines` and `cli` override; `cli`'s options win over the suite's.
    pub fn for_target(
        target: &str,
        stack: Option<Stack>,
        dtype: Option<DType>,
        pipelines: &[PipelineKind],
        cli: PipelineOptions,
    ) -> Result<Self> {
        let suite_dir = Path::new(target);
        let spec = if suite_dir.join("suite.toml").is_file() { Some(SuiteSpec::load(suite_dir)?) } else { None };
        let files = ModelFiles::resolve(spec.as_ref().map_or(target, |s| s.model_location.as_str()))?;
        let (stack, stack_origin) = match (stack, &spec) {
            (Some(s), _) => (s, "--stack".to_string()),
            (None, Some(s)) => {
                let metadata = TensorFile::read(&s.reference_path())?.metadata();
                let st = Stack::from_reference(&metadata).map_err(|e| Error::input(s.reference_path(), e.to_string()))?;
                (st, "the stack the suite's reference was made with".to_string())
            }
            (None, None) => (Stack::default(), "the default stack (--stack to choose)".to_string()),
        };
        let dtype = match (dtype, &spec) {
            (Some(d), _) => (d, "--dtype".to_string()),
            (None, Some(s)) => (s.dtype, "suite.toml: dtype".to_string()),
            (None, None) => (DType::F32, "the default (--dtype to choose)".to_string()),
        };
        let pipelines = match (pipelines, &spec) {
            ([], Some(s)) => s.pipelines.clone(),
            ([], None) => SEED_PIPELINES.to_vec(),
            (chosen, _) => chosen.to_vec(),
        };
        Ok(InspectRequest {
            files,
            stack,
            stack_origin,
            dtype,
            pipelines,
            suite_options: spec.map(|s| s.options).unwrap_or_default(),
            cli_options: cli,
        })
    }
}
