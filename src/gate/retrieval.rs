//! A retrieval set: `queries.jsonl` and `corpus.jsonl` (JSON Lines with `"id"` and `"text"`) and
//! `qrels.tsv` (`query-id<TAB>corpus-id<TAB>grade`, an optional header line starting with `query-id`;
//! grade > 0 is relevant). A suite carries one with `retrieval = "DIR"` in `suite.toml`; the suite's texts
//! must include every query and passage by id, so its reference holds their Python-made vectors.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::error::{read_to_string, Error, Result};
use crate::fixture::{read_texts, TextItem};

/// A retrieval set mapped onto a suite's texts.
#[derive(Debug, Clone)]
pub struct RetrievalSet {
    /// Where it was read from.
    pub dir: PathBuf,
    /// Queries with at least one relevant passage: (index among the suite's texts, judgments as
    /// (index among `corpus`, grade)).
    pub queries: Vec<(usize, Vec<(usize, f64)>)>,
    /// The passages: indices among the suite's texts.
    pub corpus: Vec<usize>,
    /// Queries without any relevant passage, left out of the figures.
    pub unjudged: usize,
}

impl RetrievalSet {
    /// Reads the set in `dir` and finds each query and passage among `texts` by id.
    pub fn load(dir: &Path, texts: &[TextItem]) -> Result<Self> {
        let queries = read_texts(&dir.join("queries.jsonl"))?;
        let corpus = read_texts(&dir.join("corpus.jsonl"))?;
        let qrels_path = dir.join("qrels.tsv");
        let qrels = read_qrels(&qrels_path)?;
        let by_id: HashMap<&str, usize> = texts.iter().enumerate().map(|(i, t)| (t.id.as_str(), i)).collect();
        let locate = |file: &str, items: &[TextItem]| -> Result<Vec<usize>> {
            items
                .iter()
                .map(|t| {
                    let i = *by_id.get(t.id.as_str()).ok_or_else(|| {
                        Error::input(dir.join(file), format!("id {:?} is not among the suite's texts: the suite's reference must include every query and passage", t.id))
                    })?;
                    if texts[i].text != t.text {
                        return Err(Error::input(dir.join(file), format!("id {:?} has another text in the suite's texts.jsonl", t.id)));
                    }
                    Ok(i)
                })
                .collect()
        };
        let q_idx = locate("queries.jsonl", &queries)?;
        let c_idx = locate("corpus.jsonl", &corpus)?;
        let c_pos: HashMap<&str, usize> = corpus.iter().enumerate().map(|(i, t)| (t.id.as_str(), i)).collect();
        let q_pos: HashMap<&str, usize> = queries.iter().enumerate().map(|(i, t)| (t.id.as_str(), i)).collect();
        let mut judged: BTreeMap<usize, Vec<(usize, f64)>> = BTreeMap::new();
        for (line, q, d, g) in &qrels {
            let at = |m: String| Error::input(&qrels_path, format!("line {line}: {m}"));
            let qi = *q_pos.get(q.as_str()).ok_or_else(|| at(format!("query {q:?} is not in queries.jsonl")))?;
            let di = *c_pos.get(d.as_str()).ok_or_else(|| at(format!("passage {d:?} is not in corpus.jsonl")))?;
            judged.entry(qi).or_default().push((di, *g));
        }
        let mut out = Vec::new();
        let mut unjudged = 0;
        for (qi, &text_index) in q_idx.iter().enumerate() {
            match judged.remove(&qi) {
                Some(j) if j.iter().any(|(_, g)| *g > 0.0) => out.push((text_index, j)),
                _ => unjudged += 1,
            }
        }
        if out.is_empty() {
            return Err(Error::input(&qrels_path, "no query has a relevant passage (grade > 0)"));
        }
        Ok(RetrievalSet { dir: dir.to_path_buf(), queries: out, corpus: c_idx, unjudged })
    }
}

/// `(line number, query id, passage id, grade)` per judgment.
fn read_qrels(path: &Path) -> Result<Vec<(usize, String, String, f64)>> {
    let mut out = Vec::new();
    for (n, line) in read_to_string(path)?.lines().enumerate() {
        if line.trim().is_empty() || (n == 0 && line.starts_with("query-id")) {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let at = |m: &str| Error::input(path, format!("line {}: {m}", n + 1));
        if f.len() != 3 {
            return Err(at("expected query-id<TAB>corpus-id<TAB>grade"));
        }
        let g: f64 = f[2].trim().parse().map_err(|_| at("the grade is not a number"))?;
        if !g.is_finite() || g < 0.0 {
            return Err(at("the grade must be a finite number >= 0"));
        }
        out.push((n + 1, f[0].to_string(), f[1].to_string(), g));
    }
    Ok(out)
}
