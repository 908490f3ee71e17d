//! The `embcheck` command. Thin: parse, call the library, map errors to exit codes.

mod cli;

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Parser;

use cli::{exit, CheckArgs, Cli, Command, DiffArgs, EmbedArgs, PipelineArgs};
use embcheck::compare::{compare_pipeline, NoAlternatives, PipelineResult, Side, Summary, Tolerance, ToleranceOverride};
use embcheck::fixture::{format, read_texts, Names, StoredVectors, TensorFile};
use embcheck::pipeline::OutputKind;
use embcheck::model::{dtype_name, parse_dtype};
use embcheck::{embed_many, BatchOptions, Error, Model, Pipeline, PipelineKind, PipelineOptions, Result, RunOptions, Status, Suite, SuiteReport};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("embcheck: error: {e}");
            ExitCode::from(exit::ERROR)
        }
    }
}

fn run(cli: Cli) -> Result<u8> {
    embcheck::model::set_threads(cli.threads.map(|n| n as usize))?;
    match cli.command {
        Command::Embed(args) => embed(args),
        Command::Check(args) => check(args),
        Command::Diff(args) => diff(args),
    }
}

fn dtype_arg(s: &str) -> Result<candle_core::DType> {
    parse_dtype(s).ok_or_else(|| Error::Usage(format!("--dtype {s:?}: expected f32, f16 or bf16")))
}

fn dtype(args: &PipelineArgs) -> Result<candle_core::DType> {
    args.dtype.as_deref().map_or(Ok(candle_core::DType::F32), dtype_arg)
}

fn options(args: &PipelineArgs) -> PipelineOptions {
    PipelineOptions {
        max_length: args.max_length,
        instruction: args.instruction.clone(),
        prompt_name: args.prompt_name.clone(),
        prompt: args.prompt.clone(),
        st_strip: args.st_strip,
    }
}

fn embed(args: EmbedArgs) -> Result<u8> {
    let kind: PipelineKind = args.pipeline.parse()?;
    let texts = read_texts(&args.input)?;
    let dt = dtype(&args.common)?;
    let model = Model::load(&args.model, dt)?;
    let pipeline = Pipeline::build(kind, &model, &options(&args.common))?;
    let strings: Vec<String> = texts.iter().map(|t| t.text.clone()).collect();
    let batch = BatchOptions { batch_size: args.common.batch_size, progress: true };
    let out = embed_many(&model, std::slice::from_ref(&pipeline), &strings, batch)?.remove(0);
    let metadata: HashMap<String, String> = [
        ("format", "embcheck-embeddings/1".to_string()),
        ("pipeline", kind.name().to_string()),
        ("model", args.model.clone()),
        ("max_length", pipeline.max_length.to_string()),
        ("dtype", dtype_name(dt).to_string()),
        ("ids", serde_json::to_string(&texts.iter().map(|t| &t.id).collect::<Vec<_>>()).unwrap_or_default()),
        ("embcheck", env!("CARGO_PKG_VERSION").to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let bytes = format::to_bytes(kind.output(), &out.vectors, Some(&out.input_ids), &Names::embed(kind.output()), metadata)?;
    embcheck::atomic::write(&args.output, &bytes)?;
    eprintln!("embcheck: wrote {} {} vectors to {}", out.vectors.len(), kind, args.output.display());
    Ok(exit::PASS)
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

fn check(args: CheckArgs) -> Result<u8> {
    let dirs = if args.suites.is_empty() { default_suites()? } else { args.suites.clone() };
    let pipelines = args.pipelines.iter().map(|p| p.parse::<PipelineKind>()).collect::<Result<Vec<_>>>()?;
    let opts = RunOptions { pipelines, skip_missing: args.skip_missing, progress: true };
    let mut reports = Vec::new();
    let mut errors = 0usize;
    // One suite's error does not stop the others; it decides the exit code.
    for dir in &dirs {
        match Suite::load(dir).and_then(|s| s.run_with(&opts)) {
            Ok(r) => {
                print_suite(&r);
                reports.push(r);
            }
            Err(e) => {
                eprintln!("embcheck: error: suite {}: {e}", dir.display());
                errors += 1;
            }
        }
    }
    let written = embcheck::report::write_all(&args.report_dir, &reports)?;
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        embcheck::atomic::append(std::path::Path::new(&path), &embcheck::report::markdown_summary(&reports))?;
    }
    let count = |s: Status| reports.iter().filter(|r| r.status() == s).count();
    println!(
        "\n{} suites: {} passed, {} failed, {} skipped, {} errors; {} report files in {}",
        dirs.len(),
        count(Status::Passed),
        count(Status::Failed),
        count(Status::Skipped),
        errors,
        written.len(),
        args.report_dir.display()
    );
    if errors == 0 && count(Status::Passed) + count(Status::Failed) == 0 {
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

fn print_suite(r: &SuiteReport) {
    if let Some(why) = &r.skipped {
        println!("SKIP {}: {why}", r.suite);
        return;
    }
    for change in &r.changed_files {
        println!("WARN {}: model file changed since the reference was made: {change}", r.suite);
    }
    for p in &r.pipelines {
        println!("{} {} {}: {}", status_word(p), r.suite, p.pipeline, figures(&p.summary));
        for row in p.rows.iter().filter(|x| !x.pass()).take(5) {
            let (k, d) = row.diagnosis.as_ref().map_or(("unknown", ""), |d| (d.stage.keyword(), d.detail.as_str()));
            println!("    {}: cosine {:.9}, rel L2 {:.3e} [{k}] {d}", row.id, row.metrics.cosine, row.metrics.rel_l2);
        }
    }
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

/// Reads one side of a diff: embed-format tensors, or a pipeline's tensors of a reference file.
fn read_side(path: &std::path::Path, pipeline: Option<PipelineKind>) -> Result<(OutputKind, StoredVectors, Vec<String>)> {
    let file = TensorFile::read(path)?;
    let (kind, names) = match pipeline {
        Some(p) if file.has(p.name()) => (p.output(), Names::reference(p)),
        _ => {
            let kind = [OutputKind::Dense, OutputKind::Sparse, OutputKind::Multi]
                .into_iter()
                .find(|k| file.has(Names::embed(*k).values()))
                .ok_or_else(|| Error::input(path, "has none of the tensors embeddings, weights, vectors (nor the --pipeline's)"))?;
            (kind, Names::embed(kind))
        }
    };
    let stored = file.vectors(kind, &names)?;
    let ids = file
        .metadata()
        .get("ids")
        .and_then(|s| serde_json::from_str::<Vec<String>>(s).ok())
        .filter(|ids| ids.len() == stored.vectors.len())
        .unwrap_or_else(|| (0..stored.vectors.len()).map(|i| format!("t{i:04}")).collect());
    Ok((kind, stored, ids))
}

fn diff(args: DiffArgs) -> Result<u8> {
    let pipeline = args.pipeline.as_deref().map(str::parse::<PipelineKind>).transpose()?;
    let dt = dtype_arg(&args.dtype)?;
    let (kind_a, a, ids) = read_side(&args.actual, pipeline)?;
    let (kind_e, e, _) = read_side(&args.expected, pipeline)?;
    if kind_a != kind_e || a.vectors.len() != e.vectors.len() {
        return Err(Error::Usage(format!(
            "{} and {} do not hold the same kind and number of vectors ({:?} x {} vs {:?} x {})",
            args.actual.display(),
            args.expected.display(),
            kind_a,
            a.vectors.len(),
            kind_e,
            e.vectors.len()
        )));
    }
    let tol = Tolerance::default_for(dt, kind_a).with(&ToleranceOverride {
        min_cosine: args.min_cosine,
        max_rel_l2: args.max_rel_l2,
        max_abs: args.max_abs,
        min_jaccard: None,
    });
    let label = pipeline.unwrap_or(match kind_a {
        OutputKind::Dense => PipelineKind::NormalizedCls,
        OutputKind::Sparse => PipelineKind::M3Sparse,
        OutputKind::Multi => PipelineKind::M3Colbert,
    });
    let result = compare_pipeline(
        label,
        &ids,
        Side { vectors: &a.vectors, tokens: a.input_ids.as_deref() },
        Side { vectors: &e.vectors, tokens: e.input_ids.as_deref() },
        tol,
        &mut NoAlternatives,
    )?;
    match &args.output {
        Some(path) => {
            let mut buf = Vec::new();
            embcheck::report::write_csv(&mut buf, "diff", &[&result])?;
            embcheck::atomic::write(path, &buf)?;
        }
        None => embcheck::report::write_csv(std::io::stdout().lock(), "diff", &[&result])?,
    }
    eprintln!("embcheck: {}: {}", status_word(&result), figures(&result.summary));
    Ok(if result.passed() { exit::PASS } else { exit::FAIL })
}
