//! The parsers of untrusted files never panic: `suite.toml`, `texts.jsonl`, reference / embedding
//! safetensors (dense, sparse, ColBERT, token ids), fed arbitrary bytes and, since arbitrary bytes rarely
//! get past the first check, structurally valid files with arbitrary names, dtypes, shapes and contents.
//! What they accept keeps the promises the comparison relies on.

use std::collections::HashMap;
use std::path::Path;

use embcheck::compare::metrics;
use embcheck::fixture::{parse_texts, Names, SuiteSpec, TensorFile};
use embcheck::pipeline::{OutputKind, PipelineKind, Vector};
use proptest::prelude::*;
use safetensors::Dtype;

/// A generated tensor: name, dtype, shape, raw values.
type Spec = (String, Dtype, Vec<usize>, Vec<i64>);

/// Every way the comparison reads values from a file: the `embed` names and each pipeline's reference names.
fn all_reads() -> Vec<(OutputKind, Names)> {
    let mut out: Vec<(OutputKind, Names)> =
        [OutputKind::Dense, OutputKind::Sparse, OutputKind::Multi].into_iter().map(|k| (k, Names::embed(k))).collect();
    out.extend(PipelineKind::ALL.iter().map(|&p| (p.output(), Names::reference(p))));
    out
}

/// Reads every way from `file`; what is accepted must be comparable without panicking, and keep the
/// invariants: at least one text, no zero-width vectors, sorted unique sparse ids, one id sequence per text.
fn read_everything(file: &TensorFile) -> Result<(), TestCaseError> {
    let _ = file.metadata();
    for (kind, names) in all_reads() {
        let Ok(stored) = file.vectors(kind, &names) else { continue };
        prop_assert!(!stored.vectors.is_empty());
        if let Some(ids) = &stored.input_ids {
            prop_assert_eq!(ids.len(), stored.vectors.len());
        }
        for v in &stored.vectors {
            match v {
                Vector::Dense(d) => prop_assert!(!d.is_empty()),
                Vector::Sparse(s) => prop_assert!(s.windows(2).all(|w| w[0].0 < w[1].0)),
                Vector::Multi(m) => prop_assert!(m.iter().all(|r| !r.is_empty())),
            }
        }
        // The comparison of each text with itself and with its neighbour.
        for (i, v) in stored.vectors.iter().enumerate() {
            let other = &stored.vectors[(i + 1) % stored.vectors.len()];
            let _ = metrics::compare(v, v);
            let _ = metrics::compare(v, other);
            let _ = metrics::score(v, other);
        }
    }
    Ok(())
}

/// Names a reader may look for, so that generated files hit the parsers' paths.
const NAMES: &[&str] = &[
    "embeddings",
    "weights",
    "token_ids",
    "offsets",
    "vectors",
    "input_ids",
    "input_offsets",
    "raw-cls",
    "raw-cls.input_ids",
    "raw-cls.input_offsets",
    "m3-sparse",
    "m3-sparse.token_ids",
    "m3-sparse.offsets",
    "m3-colbert",
    "m3-colbert.offsets",
];

const DTYPES: &[Dtype] = &[Dtype::F32, Dtype::F16, Dtype::BF16, Dtype::F64, Dtype::I64, Dtype::I32, Dtype::U32, Dtype::U8, Dtype::BOOL];

/// A tensor: name, dtype, shape, and raw values (an index into a small set of interesting numbers, or a
/// plain small integer) that are encoded in its dtype.
fn tensor() -> impl Strategy<Value = Spec> {
    (0..NAMES.len(), 0..DTYPES.len(), prop::collection::vec(0usize..6, 0..4)).prop_flat_map(|(n, d, shape)| {
        let count: usize = shape.iter().product();
        (Just(NAMES[n].to_string()), Just(DTYPES[d]), Just(shape), prop::collection::vec(-3i64..40, count))
    })
}

fn encode(dtype: Dtype, values: &[i64]) -> Vec<u8> {
    // A few special floats among the small integers: NaN, ±inf, 0, −0, a tiny and a huge value.
    let float = |v: i64| -> f64 {
        match v {
            -3 => f64::NAN,
            -2 => f64::INFINITY,
            -1 => -0.0,
            35 => f64::NEG_INFINITY,
            36 => 1e-40,
            37 => 3e38,
            _ => v as f64 * 0.25,
        }
    };
    let int = |v: i64| -> i64 {
        match v {
            36 => i64::MAX,
            37 => i64::MIN,
            38 => 1 << 33,
            _ => v,
        }
    };
    values
        .iter()
        .flat_map(|&v| match dtype {
            Dtype::F32 => (float(v) as f32).to_le_bytes().to_vec(),
            Dtype::F16 => half::f16::from_f64(float(v)).to_le_bytes().to_vec(),
            Dtype::BF16 => half::bf16::from_f64(float(v)).to_le_bytes().to_vec(),
            Dtype::F64 => float(v).to_le_bytes().to_vec(),
            Dtype::I64 => int(v).to_le_bytes().to_vec(),
            Dtype::I32 => (int(v) as i32).to_le_bytes().to_vec(),
            Dtype::U32 => (int(v) as u32).to_le_bytes().to_vec(),
            _ => vec![v as u8],
        })
        .collect()
}

fn safetensors_file(tensors: &[Spec], metadata: HashMap<String, String>) -> Vec<u8> {
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, dtype, shape, values) in tensors {
        if owned.iter().any(|(n, ..)| n == name) {
            continue;
        }
        owned.push((name.clone(), *dtype, shape.clone(), encode(*dtype, values)));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, Some(metadata)).unwrap()
}

/// A TOML value of any type, with the awkward numbers among them.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("inf".to_string()),
        Just("-inf".to_string()),
        Just("nan".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("1e400".to_string()),
        Just("18446744073709551616".to_string()),
        Just("true".to_string()),
        Just("[]".to_string()),
        Just("[\"raw-cls\", \"m3-sparse\"]".to_string()),
        Just("[\"raw-cls\", \"raw-cls\"]".to_string()),
        Just("{}".to_string()),
        "[a-z0-9./_-]{0,12}".prop_map(|s| format!("{s:?}")),
        (-2.0f64..2.0).prop_map(|x| format!("{x:?}")),
    ]
}

const SUITE_KEYS: &[&str] = &[
    "name", "model", "pipelines", "max_length", "dtype", "batch_size", "instruction", "prompt_name", "prompt", "st_strip", "notes", "unknown",
];
const TOLERANCE_KEYS: &[&str] = &["min_cosine", "max_rel_l2", "max_abs", "min_jaccard", "atol"];

fn suite_toml() -> impl Strategy<Value = String> {
    let top = prop::collection::vec((0..SUITE_KEYS.len(), toml_value()), 0..8);
    let tables = prop::collection::vec(
        (0..PipelineKind::ALL.len() + 1, prop::collection::vec((0..TOLERANCE_KEYS.len(), toml_value()), 0..4)),
        0..3,
    );
    (top, tables).prop_map(|(top, tables)| {
        let mut s = String::new();
        for (k, v) in top {
            s.push_str(&format!("{} = {v}\n", SUITE_KEYS[k]));
        }
        for (p, entries) in tables {
            let name = PipelineKind::ALL.get(p).map_or("nope", |p| p.name());
            s.push_str(&format!("[tolerance.{name}]\n"));
            for (k, v) in entries {
                s.push_str(&format!("{} = {v}\n", TOLERANCE_KEYS[k]));
            }
        }
        s
    })
}

/// One line of a JSON Lines file: valid objects of every shape, broken JSON, invalid UTF-8.
fn texts_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        ".{0,20}".prop_map(|t| format!("{{\"text\": {}}}", serde_json::to_string(&t).unwrap()).into_bytes()),
        (".{0,8}", prop_oneof![Just("1".to_string()), Just("null".to_string()), Just("\"a\"".to_string()), Just("[1]".to_string())])
            .prop_map(|(t, id)| format!("{{\"text\": {}, \"id\": {id}}}", serde_json::to_string(&t).unwrap()).into_bytes()),
        Just(b"{\"text\": 5}".to_vec()),
        Just(b"[\"text\"]".to_vec()),
        Just(b"{\"text\": \"\\ud800\"}".to_vec()),
        Just(b"  \r".to_vec()),
        prop::collection::vec(any::<u8>(), 0..24),
    ]
}

/// A well-formed `embed` file of `kind` for `lengths.len()` texts (each length is the text's nonzero count:
/// sparse weights, ColBERT rows, token ids), then one mutation of one tensor: the near-misses a parser
/// must catch.
fn near_miss() -> impl Strategy<Value = (OutputKind, Vec<Spec>, bool)> {
    let kind = prop_oneof![Just(OutputKind::Dense), Just(OutputKind::Sparse), Just(OutputKind::Multi)];
    (kind, prop::collection::vec(0usize..4, 1..5), 1usize..4, 0usize..8, 0usize..7, -2i64..6).prop_map(
        |(kind, lengths, dim, mutation, target, value)| {
            let n = lengths.len();
            let total: usize = lengths.iter().sum();
            let mut offsets = vec![0i64];
            for l in &lengths {
                offsets.push(offsets.last().unwrap() + *l as i64);
            }
            let mut t: Vec<Spec> = match kind {
                OutputKind::Dense => vec![("embeddings".into(), Dtype::F32, vec![n, dim], vec![2; n * dim])],
                OutputKind::Sparse => {
                    let ids: Vec<i64> = lengths.iter().flat_map(|&l| (0..l as i64).map(|k| 3 * k + 1)).collect();
                    vec![
                        ("weights".into(), Dtype::F32, vec![total], vec![2; total]),
                        ("token_ids".into(), Dtype::I64, vec![total], ids),
                        ("offsets".into(), Dtype::I64, vec![n + 1], offsets.clone()),
                    ]
                }
                OutputKind::Multi => vec![
                    ("vectors".into(), Dtype::F32, vec![total, dim], vec![2; total * dim]),
                    ("offsets".into(), Dtype::I64, vec![n + 1], offsets.clone()),
                ],
            };
            t.push(("input_ids".into(), Dtype::I64, vec![total], (0..total as i64).collect()));
            t.push(("input_offsets".into(), Dtype::I64, vec![n + 1], offsets));
            let k = target % t.len();
            let (_, dtype, shape, values) = &mut t[k];
            match mutation {
                0 => {
                    values.pop();
                    if let Some(d) = shape.first_mut() {
                        *d = d.saturating_sub(1);
                    }
                    let count: usize = shape.iter().product();
                    values.truncate(count);
                }
                1 => {
                    shape.push(1);
                }
                2 => *dtype = Dtype::I32,
                3 => {
                    let at = target % values.len().max(1);
                    if let Some(x) = values.get_mut(at) {
                        *x = value;
                    }
                }
                4 => values.reverse(),
                5 => {
                    t.remove(k);
                }
                6 => {
                    if let Some(d) = shape.last_mut() {
                        *d = 0;
                    }
                    values.clear();
                }
                _ => {}
            }
            (kind, t, mutation >= 7)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn readers_catch_near_misses_of_a_valid_file((kind, tensors, intact) in near_miss()) {
        let file = TensorFile::from_bytes(Path::new("e.safetensors"), safetensors_file(&tensors, HashMap::new())).unwrap();
        read_everything(&file)?;
        // Accepted values keep the invariants (checked above), and the unmutated file is accepted.
        let got = file.vectors(kind, &Names::embed(kind));
        if intact {
            prop_assert!(got.is_ok(), "{:?}", got.err());
        }
    }

    #[test]
    fn safetensors_parser_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(file) = TensorFile::from_bytes(Path::new("r.safetensors"), bytes) {
            read_everything(&file)?;
        }
    }

    #[test]
    fn safetensors_parser_survives_a_header_length_and_garbage(n in any::<u64>(), tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = n.to_le_bytes().to_vec();
        bytes.extend(tail);
        if let Ok(file) = TensorFile::from_bytes(Path::new("r.safetensors"), bytes) {
            read_everything(&file)?;
        }
    }

    #[test]
    fn reference_and_embedding_readers_survive_any_valid_safetensors(
        tensors in prop::collection::vec(tensor(), 0..8),
        sha in prop_oneof![Just("{\"config.json\": \"ü\"}".to_string()), Just("not json".to_string()), "[ -~]{0,16}"],
    ) {
        let bytes = safetensors_file(&tensors, [("sha256".to_string(), sha), ("ids".to_string(), "[\"a\"]".into())].into());
        let file = TensorFile::from_bytes(Path::new("r.safetensors"), bytes).expect("serialized by safetensors");
        read_everything(&file)?;
    }

    #[test]
    fn sparse_reader_accepts_only_sorted_unique_token_ids(
        ids in prop::collection::vec(-2i64..12, 0..10),
        cut in 0usize..10,
    ) {
        // One sparse pipeline, offsets [0, cut, n] over arbitrary ids: accepted exactly when the ids are
        // valid token ids increasing strictly within each text.
        let n = ids.len();
        let cut = cut.min(n);
        let weights: Vec<i64> = ids.iter().map(|_| 4).collect();
        let offsets = vec![0, cut as i64, n as i64];
        let tensors = vec![
            ("weights".to_string(), Dtype::F32, vec![n], weights),
            ("token_ids".to_string(), Dtype::I64, vec![n], ids.clone()),
            ("offsets".to_string(), Dtype::I64, vec![3], offsets),
        ];
        let file = TensorFile::from_bytes(Path::new("e.safetensors"), safetensors_file(&tensors, HashMap::new())).unwrap();
        let got = file.vectors(OutputKind::Sparse, &Names::embed(OutputKind::Sparse));
        let valid = |r: &[i64]| r.iter().all(|&x| x >= 0) && r.windows(2).all(|w| w[0] < w[1]);
        prop_assert_eq!(got.is_ok(), valid(&ids[..cut]) && valid(&ids[cut..]), "{:?}", got.err());
    }

    #[test]
    fn suite_toml_parser_survives_arbitrary_text(text in ".{0,200}") {
        let _ = SuiteSpec::parse(Path::new("suite-dir"), &text);
    }

    #[test]
    fn suite_toml_parser_accepts_only_finite_tolerances(text in suite_toml()) {
        if let Ok(spec) = SuiteSpec::parse(Path::new("suite-dir"), &text) {
            prop_assert!(!spec.pipelines.is_empty());
            prop_assert!(spec.batch_size >= 1);
            for p in PipelineKind::ALL {
                let t = spec.tolerance_for(p);
                prop_assert!(t.min_cosine.is_finite() && t.max_rel_l2.is_finite() && t.max_abs.is_finite() && t.min_jaccard.is_finite(), "{t:?}\n{text}");
            }
        }
    }

    #[test]
    fn texts_parser_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_texts(Path::new("texts.jsonl"), &bytes);
    }

    #[test]
    fn texts_parser_survives_arbitrary_lines(lines in prop::collection::vec(texts_line(), 0..6)) {
        let bytes = lines.join(&b'\n');
        if let Ok(texts) = parse_texts(Path::new("texts.jsonl"), &bytes) {
            prop_assert!(!texts.is_empty());
            let ids: std::collections::HashSet<&str> = texts.iter().map(|t| t.id.as_str()).collect();
            prop_assert_eq!(ids.len(), texts.len());
        }
    }

    #[test]
    fn sparse_metrics_survive_arbitrary_maps(
        a in prop::collection::btree_map(any::<u32>(), any::<f32>(), 0..12),
        e in prop::collection::btree_map(any::<u32>(), any::<f32>(), 0..12),
    ) {
        let a: Vec<(u32, f32)> = a.into_iter().collect();
        let e: Vec<(u32, f32)> = e.into_iter().collect();
        let m = metrics::sparse(&a, &e);
        let j = m.jaccard.unwrap();
        prop_assert!((0.0..=1.0).contains(&j));
        let _ = metrics::lexical_score(&a, &e);
    }
}
