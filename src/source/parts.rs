//! A candidate's embedding split by text across the jobs of a CI matrix: `embed --partition M/N` embeds the
//! texts of [`Part::range`] (contiguous, by position) and records in the part file's metadata which part
//! of which texts it holds ([`PARTITION`], [`TEXTS_SHA256`]); [`merge`] puts the parts back together as
//! the one file an unpartitioned `embed` writes, refusing a part missing, given twice, covering other
//! texts, of another N, or made from other texts or settings.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{file, write, Output};
use crate::error::{Error, Result};
use crate::fixture::TextItem;
use crate::partition::Part;
use crate::pipeline::OutputKind;

/// Metadata key: the part a file holds, a JSON [`PartRecord`].
pub const PARTITION: &str = "partition";
/// Metadata key: [`texts_sha256`] of every text that was embedded (all parts'), written by `embed` in
/// every safetensors file so that a file is never compared with vectors of other texts.
pub const TEXTS_SHA256: &str = "texts_sha256";

/// Which texts a part file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    /// The part's number, 1-based.
    pub part: u64,
    /// How many parts split the texts.
    pub parts: u64,
    /// How they are split: `contiguous` (part M holds texts [(M−1)·T/N, M·T/N) of T, by position).
    pub split: String,
    /// How many texts all parts hold together.
    pub texts: usize,
    /// The position of the part's first text (0-based).
    pub first: usize,
    /// One past the position of its last text.
    pub end: usize,
}

/// The one split there is.
const CONTIGUOUS: &str = "contiguous";

/// The sha256 (hex) of a list of texts, ids and order included: one JSON `[id, text]` line per text.
pub fn texts_sha256(texts: &[TextItem]) -> String {
    let mut h = Sha256::new();
    for t in texts {
        h.update(serde_json::to_string(&[&t.id, &t.text]).unwrap_or_default().as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The texts of `part` among `texts`, with the record its file keeps. More parts than texts is a usage
/// error (a part would hold nothing).
pub fn select(part: Part, texts: &[TextItem]) -> Result<(PartRecord, &[TextItem])> {
    if part.n > texts.len() as u64 {
        return Err(Error::Usage(format!("--partition {part}: {} texts cannot be split into {} parts; use at most {} parts", texts.len(), part.n, texts.len())));
    }
    let r = part.range(texts.len());
    let record = PartRecord { part: part.m, parts: part.n, split: CONTIGUOUS.into(), texts: texts.len(), first: r.start, end: r.end };
    Ok((record, &texts[r]))
}

/// The metadata entries of a part file: its record and the sha256 of all the texts.
pub fn metadata(record: &PartRecord, all_texts: &[TextItem]) -> BTreeMap<String, String> {
    BTreeMap::from([
        (PARTITION.to_string(), serde_json::to_string(record).unwrap_or_default()),
        (TEXTS_SHA256.to_string(), texts_sha256(all_texts)),
    ])
}

/// The part a file's metadata records, if any; a malformed record is an input error naming `path`.
pub fn record(path: &Path, metadata: &BTreeMap<String, String>) -> Result<Option<PartRecord>> {
    metadata
        .get(PARTITION)
        .map(|s| serde_json::from_str(s).map_err(|e| Error::input(path, format!("metadata \"{PARTITION}\" is not a part record: {e}"))))
        .transpose()
}

/// Every part merged, in text order: what an unpartitioned `embed` of the same texts writes.
#[derive(Debug, Clone)]
pub struct Merged {
    /// What kind of values.
    pub kind: OutputKind,
    /// One id per text.
    pub ids: Vec<String>,
    /// One output per text.
    pub rows: Vec<Output>,
    /// The parts' common metadata, without [`PARTITION`] (and without the ids and rejections, which
    /// [`write::to_safetensors`] writes from `ids` and `rows`).
    pub metadata: BTreeMap<String, String>,
}

/// Keys that differ between the parts of one embedding by design.
const PER_PART: [&str; 3] = [PARTITION, write::IDS, write::REJECTED];

/// Reads and merges the part files `paths` (any order). Refused, naming the file: a file that is no part, a
/// part of another N, of other texts (another suite, or its texts changed), made with other settings
/// (pipeline, model, source, dtype, …: any other metadata), covering texts other than its number says, a
/// part given twice, a part missing.
pub fn merge(paths: &[PathBuf]) -> Result<Merged> {
    let mut parts: Vec<(&PathBuf, PartRecord, file::FileVectors)> = Vec::new();
    for path in paths {
        if path.extension().is_none_or(|e| e != "safetensors") {
            return Err(Error::input(path, "is not a part file: `embed --partition M/N` writes .safetensors files"));
        }
        let f = file::read(path, None)?;
        let rec = record(path, &f.metadata)?.ok_or_else(|| Error::input(path, "records no partition: it was not written by `embed --partition M/N`"))?;
        if rec.part == 0 || rec.part > rec.parts || rec.first > rec.end || rec.end > rec.texts {
            return Err(Error::input(path, format!("records an impossible part: {}", f.metadata[PARTITION])));
        }
        if f.ids.is_none() {
            return Err(Error::input(path, "names no ids: part files are written with the ids of their texts"));
        }
        parts.push((path, rec, f));
    }
    let Some((first_path, first, first_file)) = parts.first() else { return Err(Error::Usage("merge-embeddings needs the part files".into())) };
    let common = |f: &file::FileVectors| f.metadata.iter().filter(|(k, _)| !PER_PART.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>();
    let shared = common(first_file);
    for (path, rec, f) in &parts {
        let fp = first_path.display();
        if rec.parts != first.parts {
            return Err(Error::input(path, format!("is part {}/{}, {fp} is part {}/{}: merge the parts of one split (the same N)", rec.part, rec.parts, first.part, first.parts)));
        }
        if rec.split != CONTIGUOUS {
            return Err(Error::input(path, format!("records a {:?} split; this embcheck splits texts {CONTIGUOUS}", rec.split)));
        }
        let theirs = common(f);
        if theirs.get(TEXTS_SHA256) != shared.get(TEXTS_SHA256) || rec.texts != first.texts {
            return Err(Error::input(path, format!("was embedded from other texts than {fp} (another suite, or its texts changed): merge the parts of one embedding")));
        }
        if let Some(key) = shared.keys().chain(theirs.keys()).find(|k| shared.get(*k) != theirs.get(*k)) {
            let show = |m: &BTreeMap<String, String>| m.get(key).map_or_else(|| "absent".to_string(), |v| format!("{v:?}"));
            return Err(Error::input(
                path,
                format!("was made with other settings than {fp}: {key} is {} there and {} here (another pipeline, model, source or embcheck)", show(&shared), show(&theirs)),
            ));
        }
        let want = Part { m: rec.part, n: rec.parts }.range(rec.texts);
        let n_ids = f.ids.as_ref().map_or(0, Vec::len);
        if (rec.first, rec.end) != (want.start, want.end) || f.rows.len() != want.len() || n_ids != want.len() {
            return Err(Error::input(
                path,
                format!(
                    "covers texts {}..{} ({} rows, {n_ids} ids) but part {}/{} of {} texts is texts {}..{}: it overlaps or leaves out another part's texts",
                    rec.first, rec.end, f.rows.len(), rec.part, rec.parts, rec.texts, want.start, want.end
                ),
            ));
        }
    }
    let (n, total, kind) = (first.parts, first.texts, first_file.kind);
    for m in 1..=n {
        let with: Vec<&PathBuf> = parts.iter().filter(|(_, r, _)| r.part == m).map(|(p, _, _)| *p).collect();
        match with.as_slice() {
            [] => {
                let r = Part { m, n }.range(total);
                return Err(Error::Usage(format!("part {m}/{n} (texts {}..{} of {total}) is missing: merge every part", r.start, r.end)));
            }
            [_] => {}
            [a, b, ..] => return Err(Error::Usage(format!("part {m}/{n} is given twice ({} and {})", a.display(), b.display()))),
        }
    }
    parts.sort_by_key(|(_, r, _)| r.part);
    let (mut ids, mut rows) = (Vec::with_capacity(total), Vec::with_capacity(total));
    let mut seen = HashSet::new();
    for (path, _, f) in parts {
        if f.kind != kind {
            return Err(Error::input(path, format!("holds {:?} values, the other parts {kind:?} values", f.kind)));
        }
        for id in f.ids.unwrap_or_default() {
            if !seen.insert(id.clone()) {
                return Err(Error::input(path, format!("holds id {id:?}, which an earlier part holds too")));
            }
            ids.push(id);
        }
        rows.extend(f.rows);
    }
    Ok(Merged { kind, ids, rows, metadata: shared })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Vector;

    /// A part file of `rows` dense rows with `record` as its partition (ids p0, p1, …).
    fn part_file(dir: &Path, name: &str, record: &str, rows: usize, with_ids: bool) -> PathBuf {
        let ids: Vec<String> = (0..rows).map(|i| format!("{name}{i}")).collect();
        let outputs: Vec<Output> = (0..rows).map(|i| Output::value(Vector::Dense(vec![i as f32, 1.0]))).collect();
        let meta = BTreeMap::from([(PARTITION.to_string(), record.to_string()), (TEXTS_SHA256.to_string(), "x".to_string())]);
        let mut bytes = write::to_safetensors(OutputKind::Dense, &ids, &outputs, meta).unwrap();
        if !with_ids {
            let ft = crate::fixture::TensorFile::from_bytes(dir, bytes.clone()).unwrap();
            let mut m: std::collections::HashMap<String, String> = ft.metadata().into_iter().collect();
            m.remove(write::IDS);
            bytes = crate::fixture::format::to_bytes(OutputKind::Dense, &outputs.iter().map(|o| o.value.clone().unwrap()).collect::<Vec<_>>(), None, &crate::fixture::Names::embed(OutputKind::Dense), m).unwrap();
        }
        let path = dir.join(format!("{name}.safetensors"));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn rec(part: u64, parts: u64, texts: usize, first: usize, end: usize) -> String {
        serde_json::to_string(&PartRecord { part, parts, split: CONTIGUOUS.into(), texts, first, end }).unwrap()
    }

    /// Hand-made records that no `embed` writes are refused with a message, never a panic.
    #[test]
    fn impossible_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ok = [part_file(d, "a", &rec(1, 2, 4, 0, 2), 2, true), part_file(d, "b", &rec(2, 2, 4, 2, 4), 2, true)];
        let merged = merge(&ok).unwrap();
        assert_eq!(merged.ids, ["a0", "a1", "b0", "b1"]);
        assert!(!merged.metadata.contains_key(PARTITION) && merged.metadata.contains_key(TEXTS_SHA256));
        for (record, rows, ids, says) in [
            (rec(1, 0, 4, 0, 2), 2, true, "impossible part"),
            (rec(0, 2, 4, 0, 2), 2, true, "impossible part"),
            (rec(3, 2, 4, 0, 2), 2, true, "impossible part"),
            (rec(1, 2, 4, 0, 9), 2, true, "impossible part"),
            (rec(1, 2, 4, 0, 2), 2, false, "names no ids"),
            (rec(1, 2, 4, 0, 3), 3, true, "covers texts 0..3"),
            ("{\"part\": 1}".to_string(), 2, true, "not a part record"),
        ] {
            let bad = part_file(d, "c", &record, rows, ids);
            let e = merge(&[bad, ok[1].clone()]).unwrap_err().to_string();
            assert!(e.contains(says), "{record}: {e}");
        }
        // The same id in two parts.
        let first = dir.path().join("first.safetensors");
        std::fs::copy(&ok[0], &first).unwrap();
        let twin = part_file(d, "a", &rec(2, 2, 4, 2, 4), 2, true);
        let e = merge(&[first, twin]).unwrap_err().to_string();
        assert!(e.contains("which an earlier part holds too"), "{e}");
    }
}
