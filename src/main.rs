//! The `embcheck` command. Thin: parse, call the library, map errors to exit codes.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::{exit, BisectArgs, CheckArgs, Cli, Command, DiffArgs, EmbedArgs, GateArgs, HttpArgs, InspectArgs, MergeArgs, SelftestArgs};
use embcheck::compare::{PipelineResult, Summary, ToleranceOverride};
use embcheck::fixture::{parse_texts, read_texts};
use embcheck::source::http::HttpOptions;
use embcheck::{SourceConfig, SourceSpec};
use embcheck::fixture::format::TensorFile;
use embcheck::model::{dtype_name, Stack};
use embcheck::{embed_many, BatchOptions, Error, Model, Pipeline, PipelineOptions, Result, RunOptions, Status, Suite, SuiteReport};

/// `println!` that ends quietly when stdout is a closed pipe (`embcheck check | head`) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("embcheck: error: {}", e.one_line());
            ExitCode::from(exit::ERROR)
        }
    }
}

fn run(cli: Cli) -> Result<u8> {
    embcheck::model::set_threads(cli.threads.map(|n| n as usize))?;
    match cli.command {
        Command::Embed(args) => embed(args),
        Command::Check(args) => check(args),
        Command::Inspect(args) => inspect(args),
        Command::Bisect(args) => bisect(args),
        Command::Diff(args) => diff(args),
        Command::Gate(args) => gate(args),
        Command::Selftest(args) => selftest(args),
        Command::MergeEmbeddings(args) => merge_embeddings(args),
        Command::MergeReports(args) => merge_reports(args),
        Command::Accept(args) => {
            let entry = embcheck::fixture::review::accept(&args.suite, args.reason.as_deref())?;
            say!("accepted the pending reference of {}: {entry}", args.suite.display());
            Ok(exit::PASS)
        }
        Command::Reject(args) => {
            let removed = embcheck::fixture::review::reject(&args.suite)?;
            say!("removed {}", removed.display());
            Ok(exit::PASS)
        }
    }
}

fn embed(args: EmbedArgs) -> Result<u8> {
    use embcheck::source::{parts, write};
    // With --suite, every setting defaults to the suite's, so the output is comparable with its reference.
    let suite = args.suite.as_deref().map(Suite::load).transpose()?;
    let spec = suite.as_ref().map(|s| &s.spec);
    let kind = match (args.pipeline, spec.map(|s| s.pipelines.as_slice())) {
        (Some(k), _) => k,
        // The per-layer reference tokenizes as transformers' AutoTokenizer does: the text as given.
        (None, _) if args.layers => embcheck::PipelineKind::RawCls,
        (None, Some([only])) => *only,
        (None, Some(many)) => {
            let names: Vec<_> = many.iter().map(|p| p.name()).collect();
            return Err(Error::Usage(format!("--suite has several pipelines ({}): choose one with --pipeline", names.join(", "))));
        }
        (None, None) => return Err(Error::Usage("--pipeline is needed (or --suite with one pipeline)".into())),
    };
    let input = match (&args.input, spec) {
        (Some(i), _) => i.clone(),
        (None, Some(s)) => s.texts_path(),
        (None, None) => return Err(Error::Usage("--input is needed (or --suite)".into())),
    };
    let to_stdout = args.output.as_os_str() == "-";
    let jsonl = to_stdout || args.output.extension().is_some_and(|e| e == "jsonl");
    let part = args.partition.as_deref().map(|p| embcheck::partition::Part::parse("--partition", p, "")).transpose()?;
    if part.is_some() && jsonl {
        return Err(Error::Usage(format!("--partition writes a .safetensors part file (its metadata records the part); --output {} is JSON Lines", args.output.display())));
    }
    let texts = if input.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut s).map_err(|e| Error::io("<standard input>", e))?;
        parse_texts(std::path::Path::new("<standard input>"), &s)?
    } else {
        read_texts(&input)?
    };
    if args.layers {
        return embed_layers(&args, spec, kind, &texts);
    }
    let (record, mine) = match part {
        Some(p) => {
            let (r, t) = parts::select(p, &texts)?;
            (Some(r), t)
        }
        None => (None, texts.as_slice()),
    };
    let (rows, mut metadata) = match &args.against {
        Some(a) => embed_source(a, &args, kind, mine)?,
        None => embed_own(&args, spec, kind, mine, !to_stdout)?,
    };
    metadata.insert("format".into(), "embcheck-embeddings/1".into());
    metadata.insert("pipeline".into(), kind.name().into());
    metadata.insert("embcheck".into(), env!("CARGO_PKG_VERSION").into());
    metadata.insert(parts::TEXTS_SHA256.into(), parts::texts_sha256(&texts));
    if let Some(r) = &record {
        metadata.extend(parts::metadata(r, &texts));
    }
    let ids: Vec<String> = mine.iter().map(|t| t.id.clone()).collect();
    let bytes = if jsonl { write::to_jsonl(&ids, &rows) } else { write::to_safetensors(kind.output(), &ids, &rows, metadata)? };
    if to_stdout {
        let mut stdout = std::io::stdout().lock();
        match std::io::Write::write_all(&mut stdout, &bytes).and_then(|()| std::io::Write::flush(&mut stdout)) {
            // A reader that stops early (`| head`) is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            r => r.map_err(|e| Error::io("<standard output>", e))?,
        }
    } else {
        embcheck::atomic::write(&args.output, &bytes)?;
        let which = record.map_or_else(String::new, |r| format!(" (part {}/{}: texts {}..{} of {})", r.part, r.parts, r.first, r.end, r.texts));
        eprintln!("embcheck: wrote {} {} vectors{which} to {}", rows.len(), kind, args.output.display());
    }
    let rejected = rows.iter().filter(|r| r.value.is_err()).count();
    if rejected > 0 {
        eprintln!("embcheck: the system rejected {rejected} texts; the output keeps them as rejections");
    }
    Ok(exit::PASS)
}

/// The values and metadata of embcheck's own pipeline `kind` on `texts` (for `embed`).
fn embed_own(
    args: &EmbedArgs,
    spec: Option<&embcheck::fixture::SuiteSpec>,
    kind: embcheck::PipelineKind,
    texts: &[embcheck::fixture::TextItem],
    progress: bool,
) -> Result<(Vec<embcheck::Output>, std::collections::BTreeMap<String, String>)> {
    let (model, pipeline, batch_size, metadata) = own_pipeline(args, spec, kind)?;
    let strings: Vec<String> = texts.iter().map(|t| t.text.clone()).collect();
    let out = embed_many(&model, std::slice::from_ref(&pipeline), &strings, BatchOptions { batch_size, progress })?.remove(0);
    let rows = out.vectors.into_iter().zip(out.input_ids).map(|(v, ids)| embcheck::Output { value: Ok(v), token_ids: Some(ids) }).collect();
    Ok((rows, metadata))
}

/// The model, pipeline and batch size `embed` runs with (flags over the suite's settings), and the metadata
/// naming them.
fn own_pipeline(
    args: &EmbedArgs,
    spec: Option<&embcheck::fixture::SuiteSpec>,
    kind: embcheck::PipelineKind,
) -> Result<(Model, Pipeline, usize, std::collections::BTreeMap<String, String>)> {
    // clap requires --model unless --suite (or --against) is given.
    let model_arg = match (&args.model, spec) {
        (Some(m), _) => m.clone(),
        (None, Some(s)) => s.model_location.clone(),
        (None, None) => return Err(Error::Usage("--model is needed (or --suite)".into())),
    };
    let c = &args.common;
    let dt = c.dtype.or(spec.map(|s| s.dtype)).unwrap_or(candle_core::DType::F32);
    let stack = match (args.stack, spec) {
        (Some(st), _) => st,
        (None, Some(s)) => Stack::from_reference(&TensorFile::read(&s.reference_path())?.metadata())
            .map_err(|e| Error::input(s.reference_path(), e.to_string()))?,
        (None, None) => Stack::default(),
    };
    let base = spec.map(|s| s.options.clone()).unwrap_or_default();
    let options = PipelineOptions {
        max_length: c.max_length.or(base.max_length),
        instruction: c.instruction.clone().or(base.instruction),
        prompt_name: c.prompt_name.clone().or(base.prompt_name),
        prompt: c.prompt.clone().or(base.prompt),
        st_strip: c.st_strip.or(base.st_strip),
    };
    let model = Model::from_files_for(embcheck::model::ModelFiles::resolve(&model_arg)?, dt, stack)?;
    let pipeline = Pipeline::build(kind, &model, &options)?;
    let batch_size = c.batch_size.or(spec.map(|s| s.batch_size)).unwrap_or(32);
    let metadata = [
        ("model", model_arg),
        ("max_length", pipeline.max_length.to_string()),
        ("dtype", dtype_name(dt).to_string()),
        ("stack", stack.to_string()),
    ];
    Ok((model, pipeline, batch_size, metadata.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

/// `embed --layers`: every text's hidden states after each stage, real tokens only, as a layers file for
/// `bisect` ([`embcheck::bisect::LayerStates`]).
fn embed_layers(args: &EmbedArgs, spec: Option<&embcheck::fixture::SuiteSpec>, kind: embcheck::PipelineKind, texts: &[embcheck::fixture::TextItem]) -> Result<u8> {
    if args.output.extension().is_none_or(|e| e != "safetensors") {
        return Err(Error::Usage(format!("--layers writes a .safetensors file; --output {} is not one", args.output.display())));
    }
    let (model, pipeline, batch_size, metadata) = own_pipeline(args, spec, kind)?;
    let strings: Vec<String> = texts.iter().map(|t| t.text.clone()).collect();
    let ids = pipeline.prep.tokenize(&model.tokenizer, &strings, pipeline.max_length)?;
    let indexed: Vec<(usize, Vec<u32>)> = ids.into_iter().enumerate().collect();
    let mut states = embcheck::bisect::own_states(&model, &indexed, batch_size)?;
    states.metadata.extend(metadata);
    states.metadata.insert("tokenization".into(), format!("{kind} with max length {}", pipeline.max_length));
    states.metadata.insert("embcheck".into(), env!("CARGO_PKG_VERSION").into());
    states.metadata.insert(embcheck::source::parts::TEXTS_SHA256.into(), embcheck::source::parts::texts_sha256(texts));
    states.metadata.insert("ids".into(), serde_json::to_string(&texts.iter().map(|t| &t.id).collect::<Vec<_>>()).unwrap_or_default());
    embcheck::atomic::write(&args.output, &states.to_bytes()?)?;
    eprintln!("embcheck: wrote {} stages of {} texts to {}", states.stages.len(), states.texts.len(), args.output.display());
    Ok(exit::PASS)
}

/// The values a system (`--against`) gives for `texts`, and metadata naming it (for `embed`). A value of
/// the wrong kind is kept as a rejection, as `check` and `gate` count it.
fn embed_source(
    against: &str,
    args: &EmbedArgs,
    kind: embcheck::PipelineKind,
    texts: &[embcheck::fixture::TextItem],
) -> Result<(Vec<embcheck::Output>, std::collections::BTreeMap<String, String>)> {
    let c = &args.common;
    let own: [(&str, bool); 7] = [
        ("--max-length", c.max_length.is_some()),
        ("--batch-size", c.batch_size.is_some()),
        ("--dtype", c.dtype.is_some()),
        ("--instruction", c.instruction.is_some()),
        ("--prompt-name", c.prompt_name.is_some()),
        ("--prompt", c.prompt.is_some()),
        ("--st-strip", c.st_strip.is_some()),
    ];
    if let Some((flag, _)) = own.iter().find(|(_, set)| *set) {
        return Err(Error::Usage(format!("{flag} sets embcheck's own pipeline; with --against the system computes as it is configured")));
    }
    let config = source_config(against, &args.http)?;
    let (mut rows, info) = embcheck::source::collect(&config, kind, texts)?;
    for r in &mut rows {
        if let Ok(v) = &r.value {
            if let Err(m) = embcheck::source::check_kind(kind, v) {
                r.value = Err(m);
            }
        }
    }
    let mut metadata = std::collections::BTreeMap::from([("source".to_string(), format!("{} {}", info.kind, info.location))]);
    // What a server says about itself (model id, revision) identifies it; a program's details are per run.
    if info.kind == "http" && !info.details.is_empty() {
        metadata.insert("system".into(), serde_json::to_string(&info.details).unwrap_or_default());
    }
    Ok((rows, metadata))
}

/// `embcheck merge-embeddings`: the part files of `embed --partition` jobs as one file.
fn merge_embeddings(args: cli::MergeEmbeddingsArgs) -> Result<u8> {
    use embcheck::source::{parts, write};
    let merged = parts::merge(&args.parts)?;
    let jsonl = args.output.extension().is_some_and(|e| e == "jsonl");
    let bytes = if jsonl {
        write::to_jsonl(&merged.ids, &merged.rows)
    } else {
        write::to_safetensors(merged.kind, &merged.ids, &merged.rows, merged.metadata)?
    };
    embcheck::atomic::write(&args.output, &bytes)?;
    eprintln!("embcheck: merged {} parts ({} texts) into {}", args.parts.len(), merged.ids.len(), args.output.display());
    Ok(exit::PASS)
}

/// One text through each pipeline, shown.
fn inspect(args: InspectArgs) -> Result<u8> {
    use embcheck::inspect::{render, InspectRequest, Inspector};
    let c = &args.common;
    let cli_options = PipelineOptions {
        max_length: c.max_length,
        instruction: c.instruction.clone(),
        prompt_name: c.prompt_name.clone(),
        prompt: c.prompt.clone(),
        st_strip: c.st_strip,
    };
    let text = match (&args.text, &args.text_id) {
        (Some(t), _) => t.clone(),
        (None, Some(id)) => embcheck::inspect::suite_text(&args.target, id)?,
        (None, None) => return Err(Error::Usage("--text or --text-id is needed".into())),
    };
    let request = InspectRequest::for_target(&args.target, args.stack, c.dtype, &args.pipelines, cli_options)?;
    let found = Inspector::new(&request)?.inspect(&text)?;
    if args.json {
        let json = serde_json::to_string_pretty(&found).map_err(|e| Error::Usage(format!("cannot write JSON: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", render::text(&found));
    }
    Ok(exit::PASS)
}

/// `bisect`: a port's per-layer states against the suite's per-layer reference.
fn bisect(args: BisectArgs) -> Result<u8> {
    use embcheck::bisect::{compare, own_states, LayerStates};
    // A program answers for the recorded texts; a file or model is read or computed here.
    let suite = Suite::load(&args.suite)?;
    let reference = suite.layer_reference()?;
    let (port, source) = match &args.against {
        Some(cmd) if cmd.starts_with("cmd:") => {
            let texts = embcheck::fixture::read_texts(&suite.spec.texts_path())?;
            let timeout = seconds("--timeout", args.timeout)?;
            (embcheck::bisect::command_states(&cmd["cmd:".len()..], &reference, &texts, timeout)?, cmd.clone())
        }
        Some(file) if file.ends_with(".safetensors") => (LayerStates::read(std::path::Path::new(file))?, format!("file {file}")),
        other => {
            let location = other.clone().unwrap_or_else(|| suite.model_location().to_string());
            let model = Model::load(&location, candle_core::DType::F32)?;
            let texts: Vec<(usize, Vec<u32>)> = reference.texts.iter().map(|t| (t.index, t.ids.clone())).collect();
            (own_states(&model, &texts, args.batch_size)?, format!("embcheck's encoder on {location}"))
        }
    };
    let b = compare(suite.name(), &source, &reference, &port)?;
    print!("{}", embcheck::report::bisect::terminal(&b));
    let written = embcheck::report::bisect::write_all(&args.report_dir, &b)?;
    println!("{} report files in {}", written.len(), args.report_dir.display());
    Ok(if b.passed() { exit::PASS } else { exit::FAIL })
}

/// The suites under fixtures/suites/, sorted, when none are named.
fn default_suites() -> Result<Vec<std::path::PathBuf>> {
    let root = std::path::Path::new("fixtures/suites");
    let entries = std::fs::read_dir(root).map_err(|e| Error::io(root, e))?;
    let mut dirs: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.join("suite.toml").is_file()).collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(Error::input(root, "no suite directories (with suite.toml) found"));
    }
    Ok(dirs)
}

/// Resolves `--against` and its HTTP options into a source configuration. Header values are secrets: a
/// message names the header and its variable, never the value.
fn source_config(against: &str, http: &HttpArgs) -> Result<SourceConfig> {
    let mut headers = Vec::new();
    for h in &http.headers {
        let (name, var) = h
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("--header {:?}: expected NAME=ENV_VAR (the value is read from the environment)", h.split(':').next().unwrap_or(h))))?;
        let value = match std::env::var(var) {
            Ok(v) => v,
            Err(std::env::VarError::NotPresent) => return Err(Error::Usage(format!("--header {name}: environment variable {var} is not set"))),
            Err(std::env::VarError::NotUnicode(_)) => return Err(Error::Usage(format!("--header {name}: the value of {var} is not valid UTF-8"))),
        };
        embcheck::source::secret::validate_header(name, &value, var)?;
        headers.push((name.to_string(), value));
    }
    let timeout = seconds("--timeout", http.timeout)?;
    let deadline = seconds("--deadline", http.deadline)?;
    if !(1..=MAX_CONCURRENCY).contains(&http.concurrency) {
        return Err(Error::Usage(format!("--concurrency {}: expected 1 to {MAX_CONCURRENCY} requests in flight", http.concurrency)));
    }
    if http.client_batch_size == 0 {
        return Err(Error::Usage("--client-batch-size 0: expected at least 1 text per request".into()));
    }
    Ok(SourceConfig {
        spec: SourceSpec::parse(against)?,
        http: HttpOptions {
            api: http.api,
            model_name: http.model_name.clone(),
            headers,
            timeout,
            deadline: Some(embcheck::source::Deadline::after(deadline)),
            retries: http.retries,
            concurrency: http.concurrency,
            normalize: None,
        },
        batch_size: http.client_batch_size,
    })
}

/// The most requests in flight `--concurrency` allows (one thread each).
const MAX_CONCURRENCY: usize = 256;

/// The longest `--timeout` / `--deadline`: a week, far beyond any check, far within what clocks hold.
const MAX_SECONDS: f64 = 7.0 * 86_400.0;

/// A flag's number of seconds, validated: positive, finite, at most [`MAX_SECONDS`].
fn seconds(flag: &str, value: f64) -> Result<std::time::Duration> {
    if !(value.is_finite() && value > 0.0 && value <= MAX_SECONDS) {
        return Err(Error::Usage(format!("{flag} {value}: expected a number of seconds greater than 0 and at most {MAX_SECONDS}")));
    }
    Ok(std::time::Duration::from_secs_f64(value))
}

fn check(args: CheckArgs) -> Result<u8> {
    let all_dirs = if args.suites.is_empty() { default_suites()? } else { args.suites.clone() };
    let (dirs, part) = match &args.partition {
        Some(spec) => {
            let part = embcheck::report::partition::Partition::parse(spec, all_dirs)?;
            (part.mine(), Some(part))
        }
        None => (all_dirs, None),
    };
    let pipelines = args.pipelines.clone();
    // A usage error (several suites, several pipelines, a suite of several pipelines and no --pipeline) is
    // found before anything runs, so it writes no report.
    let against = match &args.against {
        None => None,
        Some(a) => {
            if dirs.len() != 1 {
                return Err(Error::Usage(format!("--against checks one suite; {} were given", dirs.len())));
            }
            let kind = match pipelines.as_slice() {
                [k] => Some(*k),
                [] => match Suite::load(&dirs[0]) {
                    Ok(s) => match s.spec.pipelines.as_slice() {
                        [only] => Some(*only),
                        many => {
                            let names: Vec<_> = many.iter().map(|p| p.name()).collect();
                            return Err(Error::Usage(format!("--against needs --pipeline: suite {} has {}", s.spec.name, names.join(", "))));
                        }
                    },
                    // An unreadable suite is reported as that suite's error below.
                    Err(_) => None,
                },
                _ => return Err(Error::Usage("--against checks one --pipeline at a time".into())),
            };
            Some((kind, source_config(a, &args.http)?))
        }
    };
    let opts = RunOptions { pipelines: pipelines.clone(), skip_missing: args.skip_missing, progress: true };
    let mut reports = Vec::new();
    // One suite's error does not stop the others; it decides the exit code.
    let budget = match args.diagnosis_budget {
        None => embcheck::suite::DEFAULT_DIAGNOSIS_BUDGET,
        Some(0.0) => embcheck::DiagnosisBudget::Time(std::time::Duration::ZERO),
        Some(b) => embcheck::DiagnosisBudget::Time(seconds("--diagnosis-budget", b)?),
    };
    for dir in &dirs {
        let result = Suite::load(dir).map(|s| Suite { diagnosis_budget: budget, ..s }).and_then(|s| match &against {
            None => s.run_with(&opts),
            Some((Some(kind), config)) => s.check_source(*kind, config),
            Some((None, _)) => Err(Error::Usage(format!("suite {}: no pipeline to check", s.spec.name))),
        });
        match result {
            Ok(r) => {
                print_suite(&r);
                reports.push(r);
            }
            Err(e) => {
                eprintln!("embcheck: error: suite {}: {}", dir.display(), e.one_line());
                reports.push(SuiteReport::errored(dir, &e));
            }
        }
    }
    let code = finish(&reports, &args.report_dir, part.is_some())?;
    if let Some(p) = &part {
        embcheck::report::partition::write(&args.report_dir, p)?;
    }
    Ok(code)
}

/// Writes every report, prints the totals and decides the exit code (for `check` and `merge-reports`).
/// `shard`: one job of a CI matrix, which may hold no suite at all.
fn finish(reports: &[SuiteReport], report_dir: &std::path::Path, shard: bool) -> Result<u8> {
    let written = embcheck::report::write_all(report_dir, reports)?;
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        embcheck::atomic::append(std::path::Path::new(&path), &embcheck::report::markdown_summary(reports))?;
    }
    let count = |s: Status| reports.iter().filter(|r| r.status() == s).count();
    let errors = count(Status::Error);
    say!(
        "\n{} suites: {} passed, {} failed, {} skipped, {} errors; {} report files in {}",
        reports.len(),
        count(Status::Passed),
        count(Status::Failed),
        count(Status::Skipped),
        errors,
        written.len(),
        report_dir.display()
    );
    if errors == 0 && count(Status::Passed) + count(Status::Failed) == 0 && !(shard && reports.is_empty()) {
        eprintln!("embcheck: error: no suite was checked (all {} skipped)", reports.len());
        return Ok(exit::ERROR);
    }
    Ok(if errors > 0 {
        exit::ERROR
    } else if count(Status::Failed) > 0 {
        exit::FAIL
    } else {
        exit::PASS
    })
}

/// `embcheck merge-reports`: the reports of a CI matrix's shards as one set, with one verdict.
fn merge_reports(args: MergeArgs) -> Result<u8> {
    // Every job of one matrix, each once: a shard missing or given twice would change the verdict.
    let parts = args.shards.iter().map(|d| Ok((d.clone(), embcheck::report::partition::read(d)?))).collect::<Result<Vec<_>>>()?;
    embcheck::report::partition::check_complete(&parts)?;
    let mut reports = Vec::new();
    for dir in &args.shards {
        reports.extend(embcheck::report::read_shard(dir)?);
    }
    // The order of a single run over the same suites: by suite directory.
    reports.sort_by(|a, b| a.dir.cmp(&b.dir));
    for r in &reports {
        print_suite(r);
    }
    finish(&reports, &args.report_dir, false)
}

fn print_suite(r: &SuiteReport) {
    if let Some(why) = &r.skipped {
        say!("SKIP {}: {why}", r.suite);
        return;
    }
    for change in &r.changed_files {
        say!("WARN {}: model file changed since the reference was made: {change}", r.suite);
    }
    if r.source.is_external() {
        let details: Vec<String> = r.source.details.iter().map(|(k, v)| format!("{k}={v}")).collect();
        say!("CHECK {}: {} {} {}", r.suite, r.source.kind, r.source.location, details.join(" "));
    }
    for n in &r.notes {
        say!("NOTE {}: {n}", r.suite);
    }
    for p in &r.pipelines {
        say!("{} {} {}: {}{}", status_word(p), r.suite, p.pipeline, figures(&p.summary), failed_counts(p));
        for row in p.rows.iter().filter(|x| !x.pass()).take(5) {
            say!("    {}", row.failure_line());
        }
        if let Some(more) = embcheck::compare::more_line(5, p.summary.failed, "failing texts (every text is in diff.csv)") {
            say!("    {more}");
        }
    }
}

/// `; failed checks: shape 1, cosine 2` (empty when every text passed).
fn failed_counts(p: &PipelineResult) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for check in p.rows.iter().flat_map(|r| r.failed.iter()) {
        match counts.iter_mut().find(|(c, _)| c == check) {
            Some((_, n)) => *n += 1,
            None => counts.push((check, 1)),
        }
    }
    if counts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = counts.iter().map(|(c, n)| format!("{c} {n}")).collect();
    format!("; failed checks: {}", parts.join(", "))
}

fn status_word(p: &PipelineResult) -> &'static str {
    if p.passed() {
        "PASS"
    } else {
        "FAIL"
    }
}

/// One line of a pipeline's figures, for the terminal.
fn figures(s: &Summary) -> String {
    format!(
        "{}/{} texts failed, min cosine {:.9}, max rel L2 {:.3e}, max abs {:.3e}",
        s.failed, s.rows, s.min_cosine, s.max_rel_l2, s.max_abs_diff
    )
}

fn diff(args: DiffArgs) -> Result<u8> {
    let tolerance = ToleranceOverride { min_cosine: args.min_cosine, max_rel_l2: args.max_rel_l2, max_abs: args.max_abs, min_jaccard: None };
    let opts = embcheck::diff::DiffOptions { pipeline: args.pipeline, dtype: args.dtype, tolerance };
    let result = embcheck::diff::diff_files(&args.actual, &args.expected, &opts)?;
    match &args.output {
        Some(path) => {
            let mut buf = Vec::new();
            embcheck::report::write_csv(&mut buf, "diff", &[&result])?;
            embcheck::atomic::write(path, &buf)?;
        }
        // A reader that stops early (`| head`) is no error: the verdict below still stands.
        None => match embcheck::report::write_csv(std::io::stdout().lock(), "diff", &[&result]) {
            Err(e) if !e.is_broken_pipe() => return Err(e),
            _ => {}
        },
    }
    eprintln!("embcheck: {}: {}", status_word(&result), figures(&result.summary));
    Ok(if result.passed() { exit::PASS } else { exit::FAIL })
}

/// `embcheck gate`: a candidate against a suite's baseline; exit 0 pass, 1 fail, 2 input error, 3 inconclusive.
fn gate(args: GateArgs) -> Result<u8> {
    use embcheck::gate::{self, Candidate};
    let mut pipelines = args.pipelines.clone();
    let candidate = if gate::names_a_model(&args.candidate) {
        Candidate::Model(args.candidate.clone())
    } else {
        // A server, command or file answers for one pipeline at a time: the suite's only one by default.
        if pipelines.is_empty() {
            let suite = Suite::load(&args.baseline)?;
            match suite.spec.pipelines.as_slice() {
                [only] => pipelines.push(*only),
                many => {
                    let names: Vec<_> = many.iter().map(|p| p.name()).collect();
                    let shown = embcheck::source::secret::without_userinfo(&args.candidate);
                    return Err(Error::Usage(format!("--candidate {shown} needs --pipeline: suite {} has {}", suite.spec.name, names.join(", "))));
                }
            }
        }
        Candidate::Source(source_config(&args.candidate, &args.http)?)
    };
    let mode = args.mode.as_deref().map(str::parse::<gate::Mode>).transpose().map_err(Error::Usage)?;
    let report = gate::run(&args.baseline, &candidate, &pipelines, mode, true)?;
    print!("{}", embcheck::report::gate::terminal(&report));
    let written = embcheck::report::gate::write_all(&args.report_dir, &report)?;
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        embcheck::atomic::append(std::path::Path::new(&path), &embcheck::report::gate::markdown(&report))?;
    }
    let verdict = report.verdict();
    let word = match verdict {
        // A gate's verdict is never Unresolved (only a slice check's is).
        gate::Verdict::Pass | gate::Verdict::Unresolved => "passed",
        gate::Verdict::Inconclusive => "INCONCLUSIVE",
        gate::Verdict::Fail => "FAILED",
    };
    println!("\ngate {} ({}): {word}; {} report files in {}", report.suite, report.mode.mode.name(), written.len(), args.report_dir.display());
    Ok(match verdict {
        gate::Verdict::Pass | gate::Verdict::Unresolved => exit::PASS,
        gate::Verdict::Inconclusive if args.allow_inconclusive => exit::PASS,
        gate::Verdict::Inconclusive => exit::INCONCLUSIVE,
        gate::Verdict::Fail => exit::FAIL,
    })
}

/// The detection matrix: every injected fault caught with its diagnosis, every benign change passing.
fn selftest(args: SelftestArgs) -> Result<u8> {
    use embcheck::selftest;
    let exe = std::env::current_exe().ok();
    let outcomes = selftest::run(&args.fixtures, exe, |o| {
        eprintln!("embcheck: selftest: {} / {} {}: {}", o.mutation.suite, o.mutation.pipeline, o.mutation.name, if o.matches() { "as expected" } else { "NOT as expected" });
        if args.verbose || !o.matches() {
            for (k, (_, detail)) in &o.keywords {
                eprintln!("    [{k}] {detail}");
            }
        }
    })?;
    print!("{}", selftest::render(&outcomes));
    let bad = outcomes.iter().filter(|o| !o.matches()).count();
    println!("\n{} rows: {} as expected, {} not", outcomes.len(), outcomes.len() - bad, bad);
    Ok(if bad == 0 { exit::PASS } else { exit::FAIL })
}
