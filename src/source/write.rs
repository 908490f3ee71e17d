//! Writing vectors files as `embed` and `merge-embeddings` do, in the formats [`super::file`] reads back:
//! `.safetensors` (`embed`'s tensor names; ids and provenance in the metadata) or `.jsonl` (one object per
//! text, as `cmd:` programs answer). A text the system rejected is kept as a rejection: in JSON Lines as
//! `"error"`, in safetensors as a placeholder row (zeros, or empty) named with its message in the metadata
//! key [`REJECTED`], which the reader turns back into the rejection.

use std::collections::{BTreeMap, HashMap};

use super::Output;
use crate::error::Result;
use crate::fixture::{format, Names};
use crate::pipeline::{OutputKind, Vector};

/// Metadata key: the texts' ids, a JSON list, one per row.
pub const IDS: &str = "ids";
/// Metadata key: the rejected texts, a JSON object of id → the system's message.
pub const REJECTED: &str = "rejected";

/// `rows` (one per id) as an `embed`-layout safetensors file; `metadata` is written as given, plus
/// [`IDS`] and, when a text was rejected, [`REJECTED`]. Token ids are written when any row has them (a row
/// without them gets an empty list, which comparison reads as unknown).
pub fn to_safetensors(kind: OutputKind, ids: &[String], rows: &[Output], metadata: BTreeMap<String, String>) -> Result<Vec<u8>> {
    let dim = rows.iter().find_map(|r| match &r.value {
        Ok(Vector::Dense(d)) => Some(d.len()),
        _ => None,
    });
    let placeholder = || match kind {
        OutputKind::Dense => Vector::Dense(vec![0.0; dim.unwrap_or(0)]),
        OutputKind::Sparse => Vector::Sparse(Vec::new()),
        OutputKind::Multi => Vector::Multi(Vec::new()),
    };
    let mut rejected = BTreeMap::new();
    let vectors: Vec<Vector> = ids
        .iter()
        .zip(rows)
        .map(|(id, r)| match &r.value {
            Ok(v) => v.clone(),
            Err(m) => {
                rejected.insert(id.clone(), m.clone());
                placeholder()
            }
        })
        .collect();
    let tokens: Option<Vec<Vec<u32>>> = rows.iter().any(|r| r.token_ids.is_some()).then(|| rows.iter().map(|r| r.token_ids.clone().unwrap_or_default()).collect());
    let mut metadata: HashMap<String, String> = metadata.into_iter().collect();
    metadata.insert(IDS.into(), serde_json::to_string(ids).unwrap_or_default());
    if !rejected.is_empty() {
        metadata.insert(REJECTED.into(), serde_json::to_string(&rejected).unwrap_or_default());
    }
    format::to_bytes(kind, &vectors, tokens.as_deref(), &Names::embed(kind), metadata)
}

/// `rows` (one per id) as JSON Lines: `{"id", "embedding" | "sparse" | "colbert" | "error", "token_ids"}`
/// per text (`token_ids` when the row has them).
pub fn to_jsonl(ids: &[String], rows: &[Output]) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, r) in ids.iter().zip(rows) {
        let mut obj = serde_json::Map::new();
        match &r.value {
            Ok(Vector::Dense(d)) => obj.insert("embedding".into(), serde_json::json!(d)),
            Ok(Vector::Sparse(s)) => {
                let m: serde_json::Map<String, serde_json::Value> = s.iter().map(|(id, w)| (id.to_string(), serde_json::json!(w))).collect();
                obj.insert("sparse".into(), serde_json::Value::Object(m))
            }
            Ok(Vector::Multi(m)) => obj.insert("colbert".into(), serde_json::json!(m)),
            Err(e) => obj.insert("error".into(), serde_json::json!(e)),
        };
        obj.insert("id".into(), serde_json::json!(id));
        if let Some(t) = &r.token_ids {
            obj.insert("token_ids".into(), serde_json::json!(t));
        }
        out.extend_from_slice(serde_json::Value::Object(obj).to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::file;

    /// What is written is read back as it was: values, ids, token ids, rejections.
    #[test]
    fn round_trips_with_rejections() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let rows = vec![
            Output { value: Ok(Vector::Dense(vec![1.0, -2.5])), token_ids: Some(vec![101, 7, 102]) },
            Output { value: Err("413 Payload Too Large".into()), token_ids: None },
            Output { value: Ok(Vector::Dense(vec![0.25, f32::MIN_POSITIVE])), token_ids: Some(vec![101, 102]) },
        ];
        for name in ["v.safetensors", "v.jsonl"] {
            let path = dir.path().join(name);
            let bytes = if name.ends_with("jsonl") { to_jsonl(&ids, &rows) } else { to_safetensors(OutputKind::Dense, &ids, &rows, BTreeMap::new()).unwrap() };
            std::fs::write(&path, bytes).unwrap();
            let back = file::read(&path, None).unwrap();
            assert_eq!(back.ids.as_deref(), Some(ids.as_slice()), "{name}");
            let values: Vec<_> = back.rows.iter().map(|r| r.value.clone()).collect();
            assert_eq!(values, rows.iter().map(|r| r.value.clone()).collect::<Vec<_>>(), "{name}");
            assert_eq!(back.rows[0].token_ids, rows[0].token_ids, "{name}");
        }
    }
}
