//! Vectors in a file, as a system under test wrote them: `.safetensors` (embcheck's `embed` layout, or a
//! reference's tensors named after the pipeline), `.npy` (`[n, dim]`, f16/f32/f64, as `numpy.save` writes
//! it) or `.jsonl` (`{"id": …, "embedding": […]}` or `{"id": …, "sparse": {"token id": weight}}`, optionally
//! `"token_ids": […]`). Rows are matched to texts by id when the file has ids, else by order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use super::{check_kind, sparse_from_pairs, Output};
use crate::error::{read_to_string, Error, Result};
use crate::fixture::{Names, TensorFile, TextItem};
use crate::pipeline::{OutputKind, PipelineKind, Vector};

/// The rows of a vectors file, with their ids when the file has them.
#[derive(Debug, Clone)]
pub struct FileVectors {
    /// What kind of values the file holds.
    pub kind: OutputKind,
    /// One output per row.
    pub rows: Vec<Output>,
    /// One id per row, when the file names them.
    pub ids: Option<Vec<String>>,
    /// A safetensors file's metadata (provenance, a part's [`super::parts::PARTITION`]); empty for others.
    pub metadata: BTreeMap<String, String>,
}

/// Reads a vectors file of any supported format. `pipeline` picks a reference file's tensors (`<pipeline>`,
/// `<pipeline>.offsets`, …) and the kind a `.jsonl` or `.npy` file must hold.
pub fn read(path: &Path, pipeline: Option<PipelineKind>) -> Result<FileVectors> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let out = match ext.as_str() {
        "safetensors" => read_safetensors(path, pipeline)?,
        "npy" => FileVectors {
            kind: OutputKind::Dense,
            rows: read_npy(path)?.into_iter().map(|v| Output::value(Vector::Dense(v))).collect(),
            ids: None,
            metadata: BTreeMap::new(),
        },
        "jsonl" | "ndjson" => read_jsonl(path)?,
        _ => return Err(Error::input(path, "unknown vectors file type: expected .safetensors, .npy or .jsonl")),
    };
    if out.rows.is_empty() {
        return Err(Error::input(path, "holds no vectors"));
    }
    if let Some(p) = pipeline {
        if p.output() != out.kind {
            return Err(Error::input(path, format!("holds {:?} values; pipeline {p} compares {:?} values", out.kind, p.output())));
        }
    }
    Ok(out)
}

/// Reads a vectors file and puts its rows in the order of `texts`: by id when the file has ids (a missing,
/// extra or duplicate id is an input error naming it), else by row order with an exact count check.
pub fn read_matched(path: &Path, pipeline: PipelineKind, texts: &[TextItem]) -> Result<Vec<Output>> {
    let file = read(path, Some(pipeline))?;
    matched(path, file, pipeline, texts)
}

/// [`read_matched`] for the texts a file claims to be the embedding of (a suite's, for `check` and `gate`):
/// a part of a partitioned embedding (`embed --partition M/N`, N > 1) is refused, since it holds only
/// some texts, and so is a file that records the sha256 of other texts than these.
pub fn read_for_texts(path: &Path, pipeline: PipelineKind, texts: &[TextItem]) -> Result<Vec<Output>> {
    let file = read(path, Some(pipeline))?;
    if let Some(p) = super::parts::record(path, &file.metadata)?.filter(|p| p.parts > 1) {
        return Err(Error::input(
            path,
            format!("is part {}/{} of a partitioned embedding (texts {}..{} of {}): merge every part with `embcheck merge-embeddings`", p.part, p.parts, p.first, p.end, p.texts),
        ));
    }
    if let Some(h) = file.metadata.get(super::parts::TEXTS_SHA256) {
        let ours = super::parts::texts_sha256(texts);
        if *h != ours {
            return Err(Error::input(path, format!("was embedded from other texts (sha256 {h}) than these (sha256 {ours}): embed the suite's texts.jsonl")));
        }
    }
    matched(path, file, pipeline, texts)
}

fn matched(path: &Path, file: FileVectors, pipeline: PipelineKind, texts: &[TextItem]) -> Result<Vec<Output>> {
    let mut rows = match file.ids {
        None => {
            if file.rows.len() != texts.len() {
                return Err(Error::input(
                    path,
                    format!("has {} rows and no ids, the suite has {} texts: expected one row per text, in order", file.rows.len(), texts.len()),
                ));
            }
            file.rows
        }
        Some(ids) => match_by_id(path, ids, file.rows, texts)?,
    };
    for r in rows.iter_mut() {
        if let Ok(v) = &r.value {
            if let Err(msg) = check_kind(pipeline, v) {
                r.value = Err(msg);
            }
        }
    }
    Ok(rows)
}

fn match_by_id(path: &Path, ids: Vec<String>, rows: Vec<Output>, texts: &[TextItem]) -> Result<Vec<Output>> {
    let mut by_id: HashMap<String, Output> = HashMap::new();
    for (id, row) in ids.into_iter().zip(rows) {
        if by_id.contains_key(&id) {
            return Err(Error::input(path, format!("id {id:?} appears more than once")));
        }
        by_id.insert(id, row);
    }
    let wanted: HashSet<&str> = texts.iter().map(|t| t.id.as_str()).collect();
    let mut extra: Vec<&String> = by_id.keys().filter(|k| !wanted.contains(k.as_str())).collect();
    extra.sort();
    if !extra.is_empty() {
        return Err(Error::input(path, format!("has ids that are not in the suite's texts: {}", list(&extra))));
    }
    let missing: Vec<&String> = texts.iter().map(|t| &t.id).filter(|id| !by_id.contains_key(*id)).collect();
    if !missing.is_empty() {
        return Err(Error::input(path, format!("has no row for the suite's ids {}", list(&missing))));
    }
    Ok(texts.iter().map(|t| by_id.remove(&t.id).expect("checked above")).collect())
}

/// The first few items, quoted, and how many more.
fn list(items: &[&String]) -> String {
    let shown: Vec<String> = items.iter().take(5).map(|s| format!("{s:?}")).collect();
    let more = if items.len() > 5 { format!(" and {} more", items.len() - 5) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

fn read_safetensors(path: &Path, pipeline: Option<PipelineKind>) -> Result<FileVectors> {
    let file = TensorFile::read(path)?;
    let (kind, names) = match pipeline {
        Some(p) if file.has(p.name()) => (p.output(), Names::reference(p)),
        _ => {
            let kind = [OutputKind::Dense, OutputKind::Sparse, OutputKind::Multi]
                .into_iter()
                .find(|k| file.has(Names::embed(*k).values()))
                .ok_or_else(|| {
                    // A suite's reference names its tensors after the pipelines: say which --pipeline reads them.
                    let named: Vec<&str> = PipelineKind::ALL.iter().map(|p| p.name()).filter(|n| file.has(n)).collect();
                    let hint = match (pipeline, named.is_empty()) {
                        (_, true) => String::new(),
                        (Some(p), false) => format!("; it has no {:?} but holds {}: choose one with --pipeline", p.name(), named.join(", ")),
                        (None, false) => format!("; it holds the pipelines {}: choose one with --pipeline", named.join(", ")),
                    };
                    Error::input(path, format!("has none of the tensors embeddings, weights, vectors (nor one named after the pipeline){hint}"))
                })?;
            (kind, Names::embed(kind))
        }
    };
    let stored = file.vectors(kind, &names)?;
    let n = stored.vectors.len();
    let ids = match file.metadata().get("ids") {
        None => None,
        Some(s) => {
            let ids: Vec<String> = serde_json::from_str(s)
                .map_err(|e| Error::input(path, format!("metadata \"ids\" is not a JSON list of strings: {e}")))?;
            if ids.len() != n {
                return Err(Error::input(path, format!("metadata \"ids\" has {} ids for {n} rows", ids.len())));
            }
            Some(ids)
        }
    };
    let tokens = stored.input_ids.map(|t| t.into_iter().map(Some).collect()).unwrap_or_else(|| vec![None; n]);
    let mut rows: Vec<Output> = stored.vectors.into_iter().zip(tokens).map(|(v, token_ids)| Output { value: Ok(v), token_ids }).collect();
    let metadata = file.metadata();
    // A rejected text's row is a placeholder; its message is in the metadata (see `super::write`).
    if let Some(s) = metadata.get(super::write::REJECTED) {
        let bad = |m: String| Error::input(path, format!("metadata \"{}\" {m}", super::write::REJECTED));
        let rejected: BTreeMap<String, String> = serde_json::from_str(s).map_err(|e| bad(format!("is not a JSON object of id → message: {e}")))?;
        let ids = ids.as_ref().ok_or_else(|| bad("names texts but the file has no \"ids\"".into()))?;
        let at: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        for (id, message) in rejected {
            let i = *at.get(id.as_str()).ok_or_else(|| bad(format!("names {id:?}, which is not among the file's ids")))?;
            rows[i].value = Err(message);
        }
    }
    Ok(FileVectors { kind, rows, ids, metadata })
}

/// Reads a 2-D `.npy` array of little-endian f16/f32/f64 in C order. Hand-written because the format is a
/// short header and raw data, and the crates that read it pull in an n-dimensional array library.
pub fn read_npy(path: &Path) -> Result<Vec<Vec<f32>>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |m: &str| Error::input(path, format!("not a .npy file of shape [n, dim]: {m}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no \\x93NUMPY magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(bad(&format!("unsupported format version {v}"))),
    };
    let header = bytes.get(start..start + header_len).ok_or_else(|| bad("header runs past the end"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let value = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}':"))? + key.len() + 3;
        Some(header[at..].trim_start())
    };
    let descr = value("descr").and_then(|v| v.strip_prefix('\'')).and_then(|v| v.split('\'').next()).ok_or_else(|| bad("no descr"))?;
    if value("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(bad("Fortran order; save with numpy.ascontiguousarray"));
    }
    let shape_text = value("shape").and_then(|v| v.strip_prefix('(')).and_then(|v| v.split(')').next()).ok_or_else(|| bad("no shape"))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad(&format!("shape ({shape_text})"))))
        .collect::<Result<_>>()?;
    let [n, dim] = shape[..] else { return Err(bad(&format!("shape ({shape_text}) has {} dimensions", shape.len()))) };
    let width = match descr {
        "<f2" => 2,
        "<f4" => 4,
        "<f8" => 8,
        other => return Err(bad(&format!("dtype {other:?}; expected <f2, <f4 or <f8"))),
    };
    let data = &bytes[start + header_len..];
    let want = n.checked_mul(dim).and_then(|x| x.checked_mul(width)).ok_or_else(|| bad("shape too large"))?;
    if data.len() != want {
        return Err(bad(&format!("{} data bytes, shape ({n}, {dim}) of {descr} needs {want}", data.len())));
    }
    let values: Vec<f32> = match width {
        2 => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        4 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        _ => data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect(),
    };
    if dim == 0 {
        return Err(bad("zero-width vectors"));
    }
    Ok(values.chunks_exact(dim).map(<[f32]>::to_vec).collect())
}

/// Parses one JSON object of a system's output into an id (if any) and an output. Shared by files and by
/// commands: `"embedding": [f32]`, `"sparse": {"id": w}` (or `[[id, w], …]`), `"colbert": [[f32]]`,
/// optional `"token_ids": [u32]` and `"error": "message"` (the system rejected that text).
pub(crate) fn parse_line(v: &serde_json::Value) -> (Option<String>, std::result::Result<Output, String>) {
    let id = match v.get("id") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    (id, parse_value(v))
}

fn parse_value(v: &serde_json::Value) -> std::result::Result<Output, String> {
    let obj = v.as_object().ok_or("expected a JSON object")?;
    let token_ids = match obj.get("token_ids") {
        None | Some(serde_json::Value::Null) => None,
        Some(t) => Some(
            t.as_array()
                .ok_or("\"token_ids\" is not a list")?
                .iter()
                .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()).ok_or("\"token_ids\" holds a value that is not a token id"))
                .collect::<std::result::Result<Vec<u32>, _>>()?,
        ),
    };
    if let Some(e) = obj.get("error") {
        let msg = e.as_str().map_or_else(|| e.to_string(), str::to_string);
        return Ok(Output { value: Err(msg), token_ids });
    }
    let floats = super::json_floats;
    let value = if let Some(e) = obj.get("embedding") {
        Vector::Dense(floats(e, "embedding")?)
    } else if let Some(s) = obj.get("sparse") {
        let pairs: Vec<(i64, f32)> = match s {
            serde_json::Value::Object(m) => m
                .iter()
                .map(|(k, w)| {
                    let id = k.parse::<i64>().map_err(|_| format!("sparse key {k:?} is not a token id"))?;
                    Ok((id, w.as_f64().ok_or(format!("sparse weight of {k:?} is not a number"))? as f32))
                })
                .collect::<std::result::Result<_, String>>()?,
            serde_json::Value::Array(items) => items
                .iter()
                .map(|p| match p.as_array().map(Vec::as_slice) {
                    Some([i, w]) => Ok((i.as_i64().ok_or("sparse pair id is not an integer")?, w.as_f64().ok_or("sparse pair weight is not a number")? as f32)),
                    _ => Err("\"sparse\" as a list holds [token id, weight] pairs".to_string()),
                })
                .collect::<std::result::Result<_, String>>()?,
            _ => return Err("\"sparse\" is neither {\"token id\": weight} nor [[token id, weight], …]".into()),
        };
        sparse_from_pairs(pairs)?
    } else if let Some(c) = obj.get("colbert") {
        let rows = c.as_array().ok_or("\"colbert\" is not a list of vectors")?;
        Vector::Multi(rows.iter().map(|r| floats(r, "colbert")).collect::<std::result::Result<_, _>>()?)
    } else {
        return Err("expected \"embedding\", \"sparse\", \"colbert\" or \"error\"".into());
    };
    Ok(Output { value: Ok(value), token_ids })
}

fn read_jsonl(path: &Path) -> Result<FileVectors> {
    let content = read_to_string(path)?;
    let (mut rows, mut ids, mut without_id) = (Vec::new(), Vec::new(), 0usize);
    let mut kind = None;
    for (lineno, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |m: String| Error::input(path, format!("line {}: {m}", lineno + 1));
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| at(format!("invalid JSON: {e}")))?;
        let (id, out) = parse_line(&v);
        let out = out.map_err(at)?;
        if let Ok(value) = &out.value {
            let k = value.kind();
            if kind.is_some_and(|seen| seen != k) {
                return Err(at("mixes dense, sparse and per-token values".into()));
            }
            kind = Some(k);
        }
        match id {
            Some(id) => ids.push(id),
            None => without_id += 1,
        }
        rows.push(out);
    }
    if !ids.is_empty() && without_id > 0 {
        return Err(Error::input(path, format!("{without_id} lines have no \"id\" while {} do: give every line an id, or none", ids.len())));
    }
    Ok(FileVectors { kind: kind.unwrap_or(OutputKind::Dense), rows, ids: if ids.is_empty() { None } else { Some(ids) }, metadata: BTreeMap::new() })
}
