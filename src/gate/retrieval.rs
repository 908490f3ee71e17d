//! A retrieval set: `queries.jsonl` and `corpus.jsonl` (JSON Lines with `"id"` and `"text"`) and
//! `qrels.tsv` (`query-id<TAB>corpus-id<TAB>grade`, an optional header line starting with `query-id`;
//! grade > 0 is relevant). BEIR's layout is read as it is: `"_id"` for the id, a passage's `"title"` joined
//! to its text with a space as BEIR's dense models do, and the judgments in `qrels/test.tsv` (or the only
//! `.tsv` under `qrels/`). A query's slice (its language, say) is a field of its line, named by
//! `[gate] slice_field` (default `lang`), at the top level or in BEIR's `"metadata"` object.
//! A suite carries one with `retrieval = "DIR"` in `suite.toml`; the suite's texts must include every
//! query and passage by id, so its reference holds their Python-made vectors.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::error::{read_to_string, Error, Result};
use crate::fixture::TextItem;

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
    /// Each of `queries`' slice (the value of the slice field), `None` where the line has none.
    pub slices: Vec<Option<String>>,
}

impl RetrievalSet {
    /// Reads the set in `dir` and finds each query and passage among `texts` by id.
    pub fn load(dir: &Path, texts: &[TextItem], slice_field: &str) -> Result<Self> {
        let (queries, query_slices) = read_lines(&dir.join("queries.jsonl"), slice_field)?;
        let (corpus, _) = read_lines(&dir.join("corpus.jsonl"), slice_field)?;
        let qrels_path = qrels_file(dir)?;
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
        let mut slices = Vec::new();
        let mut unjudged = 0;
        for (qi, &text_index) in q_idx.iter().enumerate() {
            match judged.remove(&qi) {
                Some(j) if j.iter().any(|(_, g)| *g > 0.0) => {
                    out.push((text_index, j));
                    slices.push(query_slices[qi].clone());
                }
                _ => unjudged += 1,
            }
        }
        if out.is_empty() {
            return Err(Error::input(&qrels_path, "no query has a relevant passage (grade > 0)"));
        }
        Ok(RetrievalSet { dir: dir.to_path_buf(), queries: out, corpus: c_idx, unjudged, slices })
    }
}

/// The judgments: `qrels.tsv`, else BEIR's `qrels/test.tsv`, else the only `.tsv` under `qrels/`.
fn qrels_file(dir: &Path) -> Result<PathBuf> {
    let flat = dir.join("qrels.tsv");
    if flat.is_file() {
        return Ok(flat);
    }
    let beir = dir.join("qrels");
    if beir.join("test.tsv").is_file() {
        return Ok(beir.join("test.tsv"));
    }
    let tsv: Vec<PathBuf> = std::fs::read_dir(&beir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "tsv")).collect())
        .unwrap_or_default();
    match tsv.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(Error::input(dir, "no judgments: expected qrels.tsv, or BEIR's qrels/test.tsv")),
        _ => Err(Error::input(&beir, "several .tsv files and no test.tsv: which split to judge on is ambiguous")),
    }
}

/// A queries or corpus file's texts (`"id"` or BEIR's `"_id"`; BEIR's `"title"` joined to the text) and
/// each line's slice. Blank lines are skipped; errors name the line.
fn read_lines(path: &Path, slice_field: &str) -> Result<(Vec<TextItem>, Vec<Option<String>>)> {
    let mut items = Vec::new();
    let mut slices = Vec::new();
    for (n, line) in read_to_string(path)?.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let at = |m: String| Error::input(path, format!("line {}: {m}", n + 1));
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| at(format!("invalid JSON: {e}")))?;
        let text = v.get("text").and_then(|t| t.as_str()).ok_or_else(|| at("expected an object with a string \"text\"".into()))?;
        let id = match v.get("id").or_else(|| v.get("_id")) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) if !other.is_null() => other.to_string(),
            _ => return Err(at("expected an \"id\" (or BEIR's \"_id\")".into())),
        };
        // BEIR's dense models embed `title + " " + text`, stripped, when a passage has a title.
        let text = match v.get("title").and_then(|t| t.as_str()).filter(|t| !t.is_empty()) {
            Some(title) => format!("{title} {text}").trim().to_string(),
            None => text.to_string(),
        };
        let field = v.get(slice_field).or_else(|| v.get("metadata").and_then(|m| m.get(slice_field)));
        slices.push(match field {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        });
        items.push(TextItem { id, text });
    }
    if items.is_empty() {
        return Err(Error::input(path, "holds no texts"));
    }
    Ok((items, slices))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, text: &str) -> TextItem {
        TextItem { id: id.into(), text: text.into() }
    }

    #[test]
    fn beir_layout_is_read_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("queries.jsonl"), "{\"_id\": \"1\", \"text\": \"wie alt\", \"metadata\": {\"lang\": \"de\"}}\n{\"_id\": \"2\", \"text\": \"how old\", \"metadata\": {}}\n").unwrap();
        std::fs::write(d.join("corpus.jsonl"), "{\"_id\": \"d1\", \"title\": \"Age\", \"text\": \"It is old.\"}\n{\"_id\": \"d2\", \"title\": \"\", \"text\": \"Other.\"}\n").unwrap();
        std::fs::create_dir(d.join("qrels")).unwrap();
        std::fs::write(d.join("qrels/test.tsv"), "query-id\tcorpus-id\tscore\n1\td1\t1\n2\td1\t1\n").unwrap();
        std::fs::write(d.join("qrels/train.tsv"), "query-id\tcorpus-id\tscore\n2\td2\t1\n").unwrap();
        let texts = [item("1", "wie alt"), item("2", "how old"), item("d1", "Age It is old."), item("d2", "Other.")];
        let r = RetrievalSet::load(d, &texts, "lang").unwrap();
        assert_eq!(r.queries, vec![(0, vec![(0, 1.0)]), (1, vec![(0, 1.0)])], "the test split; title + text");
        assert_eq!(r.slices, vec![Some("de".to_string()), None]);
        // Without test.tsv, two splits are ambiguous.
        std::fs::remove_file(d.join("qrels/test.tsv")).unwrap();
        std::fs::write(d.join("qrels/dev.tsv"), "2\td2\t1\n").unwrap();
        assert!(RetrievalSet::load(d, &texts, "lang").unwrap_err().to_string().contains("ambiguous"));
    }

    #[test]
    fn the_bundled_set_has_a_slice_per_language_and_one_for_cross_lingual_queries() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/retrieval");
        let (q, slices) = read_lines(&dir.join("queries.jsonl"), "lang").unwrap();
        let count = |s: &str| slices.iter().filter(|x| x.as_deref() == Some(s)).count();
        assert_eq!(q.len(), 130);
        let langs = ["en", "de", "fr", "es", "ja", "zh", "cross-lingual", "pt", "it"];
        assert_eq!(langs.map(count), [49, 14, 13, 13, 13, 13, 13, 1, 1]);
        assert!(slices.iter().all(Option::is_some));
    }
}
