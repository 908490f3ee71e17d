//! Command-line arguments. clap structs only parse; `main.rs` resolves them into library calls.

use std::path::PathBuf;

use candle_core::DType;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use embcheck::model::{parse_dtype, Stack};
use embcheck::source::http::Api;
use embcheck::PipelineKind;

/// Exit codes, documented in `--help` and the README.
pub mod exit {
    /// Everything within tolerance.
    pub const PASS: u8 = 0;
    /// At least one comparison out of tolerance.
    pub const FAIL: u8 = 1;
    /// Usage, configuration or input error (a missing model, a malformed file, a bad flag).
    pub const ERROR: u8 = 2;
    /// `gate`: no check failed, but some could not be decided with the queries at hand.
    pub const INCONCLUSIVE: u8 = 3;
}

/// `gate`'s exit codes.
const EXIT_CODES_GATE: &str = "Exit codes:\n  0  pass\n  1  at least one check failed\n  2  usage, configuration or input error (bad flag, missing model, malformed file, --mode needed)\n  3  inconclusive: no check failed, but too few queries to tell a drop of the margin from none (0 with --allow-inconclusive)";

const EXIT_CODES: &str = "Exit codes:\n  0  everything within tolerance\n  1  at least one comparison out of tolerance\n  2  usage, configuration or input error (bad flag, missing model, malformed file)";

/// For the commands that judge nothing (embed, accept, reject).
const EXIT_CODES_NO_VERDICT: &str =
    "Exit codes:\n  0  done\n  2  usage, configuration or input error (bad flag, missing model, malformed file)";

/// `--pipeline`: the names of [`PipelineKind::ALL`], so `--help` lists them.
fn pipeline() -> impl TypedValueParser<Value = PipelineKind> {
    PossibleValuesParser::new(PipelineKind::ALL.map(PipelineKind::name)).try_map(|s| s.parse::<PipelineKind>())
}

/// `--dtype`: f32, f16 or bf16 (the long names float32, float16, bfloat16 too).
fn dtype() -> impl TypedValueParser<Value = DType> {
    let names = [("f32", "float32"), ("f16", "float16"), ("bf16", "bfloat16")];
    PossibleValuesParser::new(names.map(|(n, long)| PossibleValue::new(n).alias(long)))
        .try_map(|s| parse_dtype(&s).ok_or_else(|| format!("unknown dtype {s:?}")))
}

/// `embed --dtype`: [`dtype`]'s, and f64 (float64): the value f32 noise is measured against.
fn compute_dtype() -> impl TypedValueParser<Value = DType> {
    let names = [("f32", "float32"), ("f16", "float16"), ("bf16", "bfloat16"), ("f64", "float64")];
    PossibleValuesParser::new(names.map(|(n, long)| PossibleValue::new(n).alias(long)))
        .try_map(|s| parse_dtype(&s).ok_or_else(|| format!("unknown dtype {s:?}")))
}

/// `--stack`: transformers4 (alias tf4) or transformers5 (alias tf5).
fn stack() -> impl TypedValueParser<Value = Stack> {
    PossibleValuesParser::new([
        PossibleValue::new("transformers4").aliases(["tf4", "4"]).help("transformers 4.56, sentence-transformers 5.1, FlagEmbedding 1.4.2"),
        PossibleValue::new("transformers5").aliases(["tf5", "5"]).help("transformers 5.24, sentence-transformers 6.2"),
    ])
    .try_map(|s| Stack::named(&s))
}

/// `--api`: openai or tei.
fn api() -> impl TypedValueParser<Value = Api> {
    PossibleValuesParser::new([
        PossibleValue::new("openai").help("POST …/v1/embeddings"),
        PossibleValue::new("tei").help("text-embeddings-inference: POST /embed, /embed_sparse, /tokenize, GET /info"),
    ])
    .try_map(|s| s.parse::<Api>())
}

/// Verify that text embeddings computed in Rust match the Python libraries.
#[derive(Debug, Parser)]
#[command(name = "embcheck", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Threads to compute with, 1 to 1024 (default: RAYON_NUM_THREADS, else every logical CPU).
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: Option<u64>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compute embeddings through one pipeline and write them to a file (.safetensors or .jsonl) or to
    /// standard output (JSON Lines); with --suite, with that suite's settings.
    #[command(after_help = EXIT_CODES_NO_VERDICT)]
    Embed(EmbedArgs),
    /// Show one text through each pipeline: the text as each library hands it to the tokenizer, its
    /// tokens, the settings that drive each pipeline and the file each came from, where the other Python
    /// stack would tokenize differently, and the vectors side by side.
    #[command(after_help = EXIT_CODES_NO_VERDICT)]
    Inspect(InspectArgs),
    /// Bisect a port: compare its per-layer hidden states with the suite's per-layer reference
    /// (layers.safetensors, from scripts/generate_layers.py) stage by stage and token by token, and name the
    /// first diverging layer, sub-layer (embeddings, attention, MLP) and tokens.
    #[command(after_help = EXIT_CODES)]
    Bisect(BisectArgs),
    /// Run suites: compute every listed pipeline, compare with the Python references, write reports.
    #[command(after_help = EXIT_CODES)]
    Check(CheckArgs),
    /// Compare two vectors files (.safetensors, .npy, .jsonl) with the same metrics and exit codes.
    #[command(after_help = EXIT_CODES)]
    Diff(DiffArgs),
    /// Gate a candidate against a suite's baseline: parity (the same model another way: drift and
    /// neighbour agreement) or upgrade (another model: retrieval quality, non-inferiority).
    #[command(after_help = EXIT_CODES_GATE)]
    Gate(GateArgs),
    /// Inject known faults into embcheck's own pipeline on the bundled models and print which are caught,
    /// with which diagnosis (the detection matrix); exit 0 when every row is as expected.
    #[command(after_help = EXIT_CODES)]
    Selftest(SelftestArgs),
    /// Merge the part files of `embed --partition M/N` jobs into the one file an unpartitioned `embed` writes;
    /// a part missing, given twice, or of other texts, settings or N is refused.
    #[command(after_help = EXIT_CODES_NO_VERDICT)]
    MergeEmbeddings(MergeEmbeddingsArgs),
    /// Combine the report directories of a CI matrix's `check --partition` jobs into one set of reports with
    /// one verdict, as a single run would have written.
    #[command(after_help = EXIT_CODES)]
    MergeReports(MergeArgs),
    /// Promote a suite's pending reference (reference.safetensors.new, made by
    /// scripts/generate_fixtures.py --pending) and log who, why, when and both sha256; refused with CI set.
    #[command(after_help = EXIT_CODES_NO_VERDICT)]
    Accept(AcceptArgs),
    /// Remove a suite's pending reference; refused with CI set.
    #[command(after_help = EXIT_CODES_NO_VERDICT)]
    Reject(RejectArgs),
}

/// Arguments of `embcheck inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A suite directory (its model, pipelines, settings and stack) or a model: a local directory in Hugging
    /// Face layout or a hub id org/name[@revision] (the seed pipelines raw-cls, normalized-cls,
    /// sentence-transformers).
    #[arg(value_name = "SUITE|MODEL")]
    pub target: String,
    /// The text to inspect.
    #[arg(long, required_unless_present = "text_id", conflicts_with = "text_id")]
    pub text: Option<String>,
    /// Inspect the suite's text with this id (texts.jsonl).
    #[arg(long, value_name = "ID")]
    pub text_id: Option<String>,
    /// Only these pipelines (repeatable; default: the suite's, else the three seed pipelines).
    #[arg(long = "pipeline", value_parser = pipeline())]
    pub pipelines: Vec<PipelineKind>,
    /// The Python stack to mirror [default: the one the suite's reference was made with, else transformers4].
    #[arg(long, value_parser = stack())]
    pub stack: Option<Stack>,
    /// Print JSON instead of text, for tools.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub common: PipelineArgs,
}

/// Arguments of `embcheck bisect`.
#[derive(Debug, Args)]
pub struct BisectArgs {
    /// The suite directory, holding layers.safetensors.
    pub suite: PathBuf,
    /// The port's per-layer states: a layers file (.safetensors, as `embed --layers` writes it), a program
    /// (cmd:COMMAND: JSON Lines, each text's ids in, its states per stage out) or a model directory run through
    /// embcheck's own encoder [default: the suite's model through embcheck's encoder].
    #[arg(long, value_name = "SOURCE")]
    pub against: Option<String>,
    /// For cmd:, the longest wait for the program's next answer, in seconds (it is then killed).
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Texts per encoder call when embcheck computes the states.
    #[arg(long, default_value_t = 8, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch_size: usize,
    /// Where to write bisect.csv, bisect.json and bisect.html.
    #[arg(long, default_value = "reports/bisect")]
    pub report_dir: PathBuf,
}

/// Arguments of `embcheck accept`.
#[derive(Debug, Args)]
pub struct AcceptArgs {
    /// The suite directory.
    pub suite: PathBuf,
    /// Why: recorded in the suite's provenance.jsonl.
    #[arg(long)]
    pub reason: Option<String>,
}

/// Arguments of `embcheck reject`.
#[derive(Debug, Args)]
pub struct RejectArgs {
    /// The suite directory.
    pub suite: PathBuf,
}

/// Arguments of `embcheck merge-reports`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The report directories of the shards (each written by `check`, holding shard.cbor).
    #[arg(required = true)]
    pub shards: Vec<PathBuf>,
    /// Where to write the merged reports.
    #[arg(long, default_value = "reports")]
    pub report_dir: PathBuf,
}

/// Arguments of `embcheck merge-embeddings`.
#[derive(Debug, Args)]
pub struct MergeEmbeddingsArgs {
    /// The part files (.safetensors written by `embed --partition M/N`), in any order.
    #[arg(required = true)]
    pub parts: Vec<PathBuf>,
    /// The merged file: .safetensors (the metadata of an unpartitioned `embed`) or .jsonl.
    #[arg(long)]
    pub output: PathBuf,
}

/// Arguments of `embcheck gate`.
#[derive(Debug, Args)]
pub struct GateArgs {
    /// The baseline: a suite directory (its reference vectors; its [gate] limits and retrieval set).
    #[arg(long)]
    pub baseline: PathBuf,
    /// The candidate: a model directory or hub id org/name[@rev] (run through embcheck's pipelines), or
    /// any source `check --against` takes (http://…, cmd:COMMAND, a vectors file).
    #[arg(long, value_name = "SOURCE")]
    pub candidate: String,
    /// Only these pipelines (repeatable; default: all of the suite's, or its only one for a server,
    /// command or file).
    #[arg(long = "pipeline", value_parser = pipeline())]
    pub pipelines: Vec<PipelineKind>,
    /// Where to write gate.csv, gate.md, gate.json, junit.xml and gate.html.
    #[arg(long, default_value = "reports/gate")]
    pub report_dir: PathBuf,
    /// parity: the same model another way (drift and neighbour agreement gate); upgrade: another model
    /// (retrieval quality gates, non-inferiority; neighbours and drift are reported as re-index impact).
    /// Default: inferred from the weights' sha256, the model id and the width, or exit 2 asking for it.
    #[arg(long, value_parser = ["parity", "upgrade"], value_name = "MODE")]
    pub mode: Option<String>,
    /// Exit 0 rather than 3 when the gate is inconclusive (no check failed, but some interval was too
    /// wide to tell a drop of the margin from none).
    #[arg(long)]
    pub allow_inconclusive: bool,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// Arguments of `embcheck selftest`.
#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// The directory holding the bundled `suites/` and `models/`.
    #[arg(long, default_value = "fixtures")]
    pub fixtures: PathBuf,
    /// Also print the first diagnosis detail of every failing row.
    #[arg(long)]
    pub verbose: bool,
}

/// Arguments of `embcheck check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Suite directories (each with suite.toml); default: every suite under fixtures/suites/.
    pub suites: Vec<PathBuf>,
    /// Where to write reports.
    #[arg(long, default_value = "reports")]
    pub report_dir: PathBuf,
    /// Only these pipelines (repeatable; default: every pipeline of each suite).
    #[arg(long = "pipeline", value_parser = pipeline())]
    pub pipelines: Vec<PipelineKind>,
    /// Count a suite whose model is missing as skipped instead of failing with exit code 2.
    #[arg(long)]
    pub skip_missing: bool,
    /// Check a system under test instead of embcheck's own pipeline: an embedding server (http://…,
    /// https://…), a program (cmd:COMMAND, run with sh -c, JSON Lines on stdin/stdout) or a vectors file
    /// (.safetensors, .npy, .jsonl). Needs one suite and one --pipeline (unless the suite has one).
    #[arg(long, value_name = "SOURCE")]
    pub against: Option<String>,
    /// Check only the suites of partition hash:M/N (by a stable hash of the suite directory's name), for the
    /// jobs of a CI matrix; `merge-reports` combines their report directories.
    #[arg(long, value_name = "hash:M/N")]
    pub partition: Option<String>,
    /// Seconds that diagnosing the failures may recompute with the model [default: 0.8 of the time the check
    /// took to load and compute or collect its vectors, at least 1 s]; past it the rest is `unknown`
    /// ("budget spent"). 0: no recomputation.
    #[arg(long, value_name = "SECONDS")]
    pub diagnosis_budget: Option<f64>,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// Options of `check --against http://…`.
#[derive(Debug, Args, Clone)]
pub struct HttpArgs {
    /// The server's API (default: detected, TEI when GET /info answers like TEI, else OpenAI).
    #[arg(long, value_parser = api())]
    pub api: Option<Api>,
    /// The OpenAI `model` field (default: the first model of GET /v1/models).
    #[arg(long)]
    pub model_name: Option<String>,
    /// A request header NAME=ENV_VAR whose value is read from the environment variable ENV_VAR
    /// (e.g. Authorization=EMBED_AUTH); never printed or written to a report. Repeatable.
    #[arg(long = "header", value_name = "NAME=ENV_VAR")]
    pub headers: Vec<String>,
    /// Per-request timeout in seconds; for a cmd: program, the longest wait for its next answer (it is then
    /// killed and the texts it has not answered fail).
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    /// Seconds the whole collection of vectors from the system under test may take: no request, retry wait
    /// or program runs past it; texts not answered by then fail.
    #[arg(long, default_value_t = 3600.0)]
    pub deadline: f64,
    /// Retries of a request answered 429 or 503, with backoff (Retry-After honoured within the deadline).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Texts per request (32 is TEI's default limit).
    #[arg(long, default_value_t = 32)]
    pub client_batch_size: usize,
}

/// Arguments of `embcheck diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The actual embeddings (.safetensors, .npy or .jsonl).
    pub actual: PathBuf,
    /// The expected embeddings (.safetensors, .npy or .jsonl).
    pub expected: PathBuf,
    /// Write the CSV here instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Read the tensors of this pipeline from reference-format files (`<pipeline>`, `<pipeline>.offsets`, ...);
    /// needed when a file names its tensors after a pipeline (a suite's reference.safetensors).
    #[arg(long, value_parser = pipeline())]
    pub pipeline: Option<PipelineKind>,
    /// The dtype whose default tolerances apply.
    #[arg(long, default_value = "f32", value_parser = dtype())]
    pub dtype: DType,
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
    /// Take the model, texts, pipeline (when the suite has one), max length, prompt, instruction, strip,
    /// dtype and Python stack from this suite, so the output is comparable with its reference; the flags
    /// below override each.
    #[arg(long, value_name = "SUITE_DIR")]
    pub suite: Option<PathBuf>,
    /// A local model directory in Hugging Face layout, or a hub id `org/name[@revision]` (default: the suite's).
    #[arg(long, required_unless_present_any = ["suite", "against"], conflicts_with = "against")]
    pub model: Option<String>,
    /// Collect the vectors from a system instead of embcheck's own pipeline: an embedding server
    /// (http://…), a program (cmd:COMMAND) or a vectors file, as `check --against` takes; a text it rejects
    /// is kept as a rejection in the output.
    #[arg(long, value_name = "SOURCE")]
    pub against: Option<String>,
    /// Embed only part M of N of the texts (contiguous by position: texts [(M−1)·T/N, M·T/N) of T), for the
    /// jobs of a CI matrix; writes a .safetensors part file that records the part, and
    /// `merge-embeddings` joins the parts.
    #[arg(long, value_name = "M/N")]
    pub partition: Option<String>,
    /// The pipeline to run (default: the suite's, when it has one).
    #[arg(long, value_parser = pipeline())]
    pub pipeline: Option<PipelineKind>,
    /// JSON Lines, one object per line with "text" (and optional "id"); `-` reads standard input (default:
    /// the suite's texts.jsonl).
    #[arg(long, required_unless_present = "suite")]
    pub input: Option<PathBuf>,
    /// The file to write: .safetensors, or .jsonl ({"id", "embedding" | "sparse" | "colbert", "token_ids"}
    /// per line); `-` writes JSON Lines to standard output.
    #[arg(long)]
    pub output: PathBuf,
    /// The Python stack to mirror [default: the one the suite's reference was made with, else transformers4,
    /// the stack FlagEmbedding runs on].
    #[arg(long, value_parser = stack(), conflicts_with = "against")]
    pub stack: Option<Stack>,
    /// Write every text's hidden states after each stage (embeddings, each layer's attention and MLP block,
    /// real tokens only) instead of vectors, as a layers file (.safetensors) for `embcheck bisect`; texts
    /// prepared and cut as the pipeline does (default raw-cls: the text as given).
    #[arg(long, conflicts_with_all = ["against", "partition"])]
    pub layers: bool,
    #[command(flatten)]
    pub common: PipelineArgs,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// Options shared by the commands that compute embeddings.
#[derive(Debug, Args, Clone, Default)]
pub struct PipelineArgs {
    /// Max tokens per text, special tokens included [default: the suite's, else the model's own setting].
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Texts per encoder call [default: the suite's, else 32].
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch_size: Option<usize>,
    /// The dtype to compute in [default: the suite's, else f32]; f64: weights and accumulation in f64.
    #[arg(long, value_parser = compute_dtype())]
    pub dtype: Option<DType>,
    /// FlagEmbedding query instruction, prefixed to every text (normalized-cls, m3-*) [default: the suite's].
    #[arg(long)]
    pub instruction: Option<String>,
    /// sentence-transformers prompt name from config_sentence_transformers.json [default: the suite's].
    #[arg(long)]
    pub prompt_name: Option<String>,
    /// sentence-transformers prompt text (wins over --prompt-name) [default: the suite's].
    #[arg(long)]
    pub prompt: Option<String>,
    /// Whether sentence-transformers strips the text [default: the suite's, else what the stack's version
    /// does: true up to 5.3, false from 5.4].
    #[arg(long)]
    pub st_strip: Option<bool>,
}
