//! `embcheck selftest`, the real CLI: every injected fault is caught with its diagnosis and every benign
//! change passes (exit 0). What each row must show is stated here, independently of the matrix in `src`:
//! the printed table is read for its verdict and diagnoses only, never for its own "expected" or "match"
//! columns.

mod common;

/// What a row must show: pass, or fail with every failing text diagnosed by one of these keywords.
enum Want {
    Pass,
    Fail(&'static [&'static str]),
}

use Want::{Fail, Pass};

/// The detection matrix as this test states it: (mutation, suite / pipeline, what it must show).
const ROWS: &[(&str, &str, Want)] = &[
    ("normalization dropped", "tiny-bert-mean / sentence-transformers", Fail(&["normalization"])),
    ("normalization dropped (raw CLS)", "tiny-xlmr-m3 / normalized-cls", Fail(&["normalization"])),
    ("pooling mean -> cls", "tiny-bert-mean / sentence-transformers", Fail(&["pooling"])),
    ("pooling cls -> mean", "tiny-bert-cls / sentence-transformers", Fail(&["pooling"])),
    ("max length 64 -> 16", "tiny-bert-mean / sentence-transformers", Fail(&["truncation"])),
    ("max length 128 -> 16", "tiny-xlmr-m3 / m3-sparse", Fail(&["truncation"])),
    // Positions counted from another pad id shift every position: no alternative explains it.
    ("pad id 1 -> 0 (positions from it)", "tiny-xlmr-m3 / normalized-cls", Fail(&["unknown"])),
    // BERT positions do not depend on the pad id and pads are masked: nothing changes.
    ("pad id 0 -> 1 (pads masked)", "tiny-bert-mean / sentence-transformers", Pass),
    ("lowercasing dropped", "tiny-bert-cls / sentence-transformers", Fail(&["preprocessing"])),
    ("stripping dropped", "tiny-xlmr-m3 / sentence-transformers", Fail(&["preprocessing"])),
    ("prompt \"query: \" added", "tiny-bert-mean / sentence-transformers", Fail(&["preprocessing"])),
    ("instruction \"query: \" dropped", "tiny-xlmr-m3-query / normalized-cls", Fail(&["preprocessing"])),
    ("weights rounded to f16", "tiny-bert-mean / sentence-transformers", Fail(&["precision"])),
    ("weights rounded to bf16", "tiny-bert-mean / sentence-transformers", Fail(&["precision"])),
    ("weights rounded to f16", "tiny-xlmr-m3 / m3-colbert", Fail(&["precision"])),
    ("computed in f16", "tiny-bert-mean / sentence-transformers", Fail(&["precision"])),
    ("computed in bf16", "tiny-xlmr-m3 / normalized-cls", Fail(&["precision"])),
    // Far below the f32 tolerance.
    ("weight noise 1e-6 relative", "tiny-bert-mean / sentence-transformers", Pass),
    // Of the size f16 gives: per text not told apart from precision on these small models.
    ("weight noise 1e-3 relative", "tiny-bert-mean / sentence-transformers", Fail(&["unknown", "precision"])),
    ("weight noise 1e-1 relative", "tiny-bert-mean / sentence-transformers", Fail(&["unknown"])),
    ("weight noise 1e-1 relative", "tiny-xlmr-m3 / m3-sparse", Fail(&["unknown"])),
    ("last layer dropped", "tiny-bert-mean / sentence-transformers", Fail(&["unknown"])),
    ("last layer dropped", "tiny-xlmr-m3 / m3-sparse", Fail(&["unknown"])),
    ("pad tokens attended (no attention mask)", "tiny-bert-mean / sentence-transformers", Fail(&["unknown"])),
    ("tokenizer of tiny-bert-mean", "tiny-bert-cls / sentence-transformers", Fail(&["tokenization"])),
    ("tokenizer of tiny-xlmr-spm", "tiny-xlmr-m3 / normalized-cls", Fail(&["tokenization", "preprocessing"])),
    // Benign: batching, order and threads change no value beyond f32 noise.
    ("batch size 1", "tiny-bert-mean / sentence-transformers", Pass),
    ("batch size 7", "tiny-xlmr-m3 / m3-sparse", Pass),
    ("input order reversed", "tiny-xlmr-m3 / m3-colbert", Pass),
    ("RAYON_NUM_THREADS=1 (child process)", "tiny-bert-mean / sentence-transformers", Pass),
    // The same faults on MPNet, DistilBERT and ModernBERT: each family's own encoder recomputes the alternatives.
    ("normalization dropped", "tiny-mpnet / sentence-transformers", Fail(&["normalization"])),
    ("pooling mean -> cls", "tiny-mpnet / sentence-transformers", Fail(&["pooling"])),
    ("max length 512 -> 64", "tiny-mpnet / sentence-transformers", Fail(&["truncation"])),
    ("weights rounded to f16", "tiny-mpnet / sentence-transformers", Fail(&["precision"])),
    ("computed in bf16", "tiny-mpnet / normalized-cls", Fail(&["precision"])),
    ("last layer dropped", "tiny-mpnet / sentence-transformers", Fail(&["unknown"])),
    ("batch size 7", "tiny-mpnet / sentence-transformers", Pass),
    ("normalization dropped", "tiny-distilbert / sentence-transformers", Fail(&["normalization"])),
    ("max length 128 -> 16", "tiny-distilbert / sentence-transformers", Fail(&["truncation"])),
    ("weights rounded to bf16", "tiny-distilbert / sentence-transformers", Fail(&["precision"])),
    ("pooling cls -> mean", "tiny-distilbert-sinusoidal / sentence-transformers", Fail(&["pooling"])),
    ("computed in f16", "tiny-distilbert-sinusoidal / normalized-cls", Fail(&["precision"])),
    ("normalization dropped", "tiny-modernbert / sentence-transformers", Fail(&["normalization"])),
    ("pooling mean -> cls", "tiny-modernbert / sentence-transformers", Fail(&["pooling"])),
    ("max length 512 -> 24", "tiny-modernbert / sentence-transformers", Fail(&["truncation"])),
    ("weights rounded to f16", "tiny-modernbert / sentence-transformers", Fail(&["precision"])),
    ("computed in bf16", "tiny-modernbert / normalized-cls", Fail(&["precision"])),
    ("last layer dropped", "tiny-modernbert / sentence-transformers", Fail(&["unknown"])),
    ("pad tokens attended (no attention mask)", "tiny-modernbert / sentence-transformers", Fail(&["unknown"])),
    ("batch size 7", "tiny-modernbert / sentence-transformers", Pass),
    ("pooling cls -> mean", "tiny-modernbert-cls / sentence-transformers", Fail(&["pooling"])),
    ("computed in f16", "tiny-modernbert-cls / normalized-cls", Fail(&["precision"])),
    // Decoders: last-token pooling, EOS handling, instructions and prompts.
    ("normalization dropped", "tiny-qwen3 / sentence-transformers", Fail(&["normalization"])),
    ("normalization dropped (raw last token)", "tiny-qwen3 / normalized-last", Fail(&["normalization"])),
    ("pooling lasttoken -> mean", "tiny-qwen3 / sentence-transformers", Fail(&["pooling"])),
    // The ids show it: one EOS too many (Qwen3's tokenizer appends it already) or none (e5-mistral's recipe).
    ("EOS doubled (appended after the tokenizer's)", "tiny-qwen3 / normalized-last", Fail(&["tokenization"])),
    ("EOS dropped (not appended by hand)", "tiny-mistral / normalized-last", Fail(&["tokenization"])),
    ("instruction dropped", "tiny-qwen3-query / normalized-last", Fail(&["preprocessing"])),
    ("prompt dropped", "tiny-qwen3-query / sentence-transformers", Fail(&["preprocessing"])),
    ("computed in f16", "tiny-qwen3 / raw-last", Fail(&["precision"])),
    ("weights rounded to bf16", "tiny-mistral / sentence-transformers", Fail(&["precision"])),
    ("max length 512 -> 16", "tiny-llama / sentence-transformers", Fail(&["truncation"])),
    ("last layer dropped", "tiny-mistral / raw-last", Fail(&["unknown"])),
    // Right padding under a causal mask: no real token attends a pad, with or without the padding mask.
    ("pad tokens attended (no attention mask)", "tiny-mistral / raw-last", Pass),
    // Read at the batch's last position on the right: every text shorter than its batch's longest, the others pass.
    ("right padding read at the last position (batches of 8)", "tiny-qwen3 / normalized-last", Fail(&["padding"])),
    ("right padding read at the last position (batches of 8)", "tiny-mistral / sentence-transformers", Fail(&["padding"])),
    ("batch size 7", "tiny-qwen3 / sentence-transformers", Pass),
    ("causal mask on a bidirectional model", "tiny-embeddinggemma-tf5 / sentence-transformers", Fail(&["attention-mask"])),
    ("computed in f16", "tiny-embeddinggemma-query-tf5 / sentence-transformers", Fail(&["precision"])),
    ("batch size 7", "tiny-embeddinggemma-tf5 / sentence-transformers", Pass),
];

#[test]
fn the_detection_matrix_is_as_stated_here() {
    let out = common::embcheck(&["selftest"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| mutation"))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), ROWS.len(), "one table row per mutation\n{}", common::show(&out));
    for (row, (name, suite, want)) in rows.iter().zip(ROWS) {
        assert_eq!((row[0], row[1]), (*name, *suite), "{row:?}");
        let (verdict, diagnoses) = (row[3], row[5]);
        match want {
            Pass => assert!(verdict.starts_with("pass 0/") && diagnoses == "-", "{name} on {suite} must pass: {row:?}"),
            Fail(allowed) => {
                assert!(verdict.starts_with("FAIL "), "{name} on {suite} must fail: {row:?}");
                // "keyword xN, keyword xM": every failing text diagnosed, each with an allowed keyword.
                let keywords: Vec<&str> = diagnoses.split(", ").map(|d| d.split(" x").next().unwrap_or(d)).collect();
                assert!(keywords.iter().all(|k| allowed.contains(k)), "{name} on {suite}: {keywords:?}, expected {allowed:?}");
                if allowed.len() == 1 {
                    assert_eq!(keywords, [allowed[0]], "{name} on {suite}");
                }
                let failed: usize = verdict.trim_start_matches("FAIL ").split('/').next().unwrap().parse().unwrap();
                let diagnosed: usize = diagnoses.split(", ").filter_map(|d| d.rsplit(" x").next()?.parse::<usize>().ok()).sum();
                assert_eq!(failed, diagnosed, "every failing text of {name} on {suite} has a diagnosis");
            }
        }
    }
    assert_eq!(out.status.code(), Some(0), "{}", common::show(&out));
}
