//! The `embcheck` command. Thin: parse, call the library, map errors to exit codes.

mod cli;

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Parser;

use cli::{exit, Cli, Command, EmbedArgs, PipelineArgs};
use embcheck::fixture::{format, read_texts, Names};
use embcheck::model::{dtype_name, parse_dtype};
use embcheck::{embed_many, BatchOptions, Error, Model, Pipeline, PipelineKind, PipelineOptions, Result};

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
    match cli.command {
        Command::Embed(args) => embed(args),
    }
}

fn dtype(args: &PipelineArgs) -> Result<candle_core::DType> {
    match &args.dtype {
        None => Ok(candle_core::DType::F32),
        Some(s) => parse_dtype(s).ok_or_else(|| Error::Usage(format!("--dtype {s:?}: expected f32, f16 or bf16"))),
    }
}

fn options(args: &PipelineArgs) -> PipelineOptions {
    PipelineOptions {
        max_length: args.max_length,
        instruction: args.instruction.clone(),
        prompt_name: args.prompt_name.clone(),
        prompt: args.prompt.clone(),
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
