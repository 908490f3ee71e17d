//! Command-line arguments. clap structs only parse; `main.rs` resolves them into library calls.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Exit codes, documented in `--help` and the README.
pub mod exit {
    /// Everything within tolerance.
    pub const PASS: u8 = 0;
    /// At least one comparison out of tolerance.
    pub const FAIL: u8 = 1;
    /// Usage, configuration or input error (a missing model, a malformed file, a bad flag).
    pub const ERROR: u8 = 2;
}

const EXIT_CODES: &str = "Exit codes:\n  0  everything within tolerance\n  1  at least one comparison out of tolerance\n  2  usage, configuration or input error (bad flag, missing model, malformed file)";

/// Verify that text embeddings computed in Rust match the Python libraries.
#[derive(Debug, Parser)]
#[command(name = "embcheck", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Threads to compute with (default: RAYON_NUM_THREADS, else every logical CPU).
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub threads: Option<u64>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compute embeddings through one pipeline and write them to a safetensors file.
    #[command(after_help = EXIT_CODES)]
    Embed(EmbedArgs),
    /// Run suites: compute every listed pipeline, compare with the Python references, write reports.
    #[command(after_help = EXIT_CODES)]
    Check(CheckArgs),
    /// Compare two embedding files (the `embed` format) with the same metrics and exit codes.
    #[command(after_help = EXIT_CODES)]
    Diff(DiffArgs),
}

/// Arguments of `embcheck check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Suite directories (each with suite.toml); default: every suite under fixtures/suites/.
    pub suites: Vec<PathBuf>,
    /// Where to write reports.
    #[arg(long, default_value = "reports")]
    pub report_dir: PathBuf,
    /// Only these pipelines (repeatable).
    #[arg(long = "pipeline")]
    pub pipelines: Vec<String>,
    /// Count a suite whose model is missing as skipped instead of failing with exit code 2.
    #[arg(long)]
    pub skip_missing: bool,
}

/// Arguments of `embcheck diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The actual embeddings.
    pub actual: PathBuf,
    /// The expected embeddings.
    pub expected: PathBuf,
    /// Write the CSV here instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Read the tensors of this pipeline from reference-format files (`<pipeline>`, `<pipeline>.offsets`, ...).
    #[arg(long)]
    pub pipeline: Option<String>,
    /// The dtype whose default tolerances apply (f32, f16, bf16).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Override the lowest cosine allowed.
    #[arg(long)]
    pub min_cosine: Option<f64>,
    /// Override the highest relative L2 allowed.
    #[arg(long)]
    pub max_rel_l2: Option<f64>,
    /// Override the highest absolute difference allowed.
    #[arg(long)]
    pub max_abs: Option<f64>,
}

/// Arguments of `embcheck embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// A local model directory in Hugging Face layout, or a hub id `org/name[@revision]`.
    #[arg(long)]
    pub model: String,
    /// raw-cls, normalized-cls, sentence-transformers, m3-sparse or m3-colbert.
    #[arg(long)]
    pub pipeline: String,
    /// JSON Lines, one object per line with "text" (and optional "id").
    #[arg(long)]
    pub input: PathBuf,
    /// The safetensors file to write.
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub common: PipelineArgs,
}

/// Options shared by the commands that compute embeddings.
#[derive(Debug, Args, Clone, Default)]
pub struct PipelineArgs {
    /// Max tokens per text, special tokens included (default: the model's own setting).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Texts per encoder call.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// f32, f16 or bf16.
    #[arg(long)]
    pub dtype: Option<String>,
    /// FlagEmbedding query instruction, prefixed to every text (normalized-cls, m3-*).
    #[arg(long)]
    pub instruction: Option<String>,
    /// sentence-transformers prompt name from config_sentence_transformers.json.
    #[arg(long)]
    pub prompt_name: Option<String>,
    /// sentence-transformers prompt text (wins over --prompt-name).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Whether sentence-transformers strips the text (true up to 5.3, the pinned 5.1 included; false for
    /// 5.4+ with transformers 4).
    #[arg(long)]
    pub st_strip: Option<bool>,
}
