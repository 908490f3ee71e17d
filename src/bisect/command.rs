//! A program as the port (`bisect --against cmd:COMMAND`): the `cmd:` protocol of `check`, asked for layers.
//! Each recorded text is one line `{"id": "<line in texts.jsonl>", "text": …, "input_ids": […], "layers": true}`
//! (the ids the reference tokenized it to, so the program need not tokenize); the program answers one line
//! `{"id": …, "layers": {"<stage>": [[H numbers] per token], …}}` (or `"error"`), stages named as in a layers
//! file. Bounded in time and refused on stray output exactly as `check`'s programs are.

use std::time::Duration;

use super::states::LayerStates;
use crate::error::{Error, Result};
use crate::fixture::TextItem;
use crate::source::command::exchange;

use super::StageStates as Stages;

/// Runs `cmd` over the reference's texts and collects its states; a text it rejects or leaves unanswered is
/// an error naming it (a bisection needs every recorded text's states).
pub fn command_states(cmd: &str, reference: &LayerStates, texts: &[TextItem], timeout: Duration) -> Result<LayerStates> {
    let requests: Vec<(String, serde_json::Value)> = reference
        .texts
        .iter()
        .map(|t| {
            let text = texts.get(t.index).map_or("", |x| x.text.as_str());
            let id = t.index.to_string();
            (id.clone(), serde_json::json!({"id": id, "text": text, "input_ids": t.ids, "layers": true}))
        })
        .collect();
    let h = reference.hidden;
    let (answers, ended) = exchange(cmd, &requests, &move |v| parse(v, h), timeout, None)?;
    let given = reference
        .texts
        .iter()
        .zip(answers)
        .map(|(r, answer)| answer.map_err(|m| Error::Usage(format!("cmd:{cmd}: text {}: {m} ({ended})", r.index))));
    LayerStates::of_port(reference, given, &format!("cmd:{cmd}"))
}

/// One answer line: its id and its stages (each a list of per-token rows of `h` numbers, flattened).
fn parse(v: &serde_json::Value, h: usize) -> (Option<String>, std::result::Result<Stages, String>) {
    let id = match v.get("id") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let stages = || -> std::result::Result<Stages, String> {
        if let Some(e) = v.get("error") {
            return Err(e.as_str().map_or_else(|| e.to_string(), str::to_string));
        }
        let layers = v.get("layers").and_then(|l| l.as_object()).ok_or("expected \"layers\": an object of stage name → rows")?;
        layers
            .iter()
            .map(|(name, rows)| {
                let rows = rows.as_array().ok_or(format!("stage {name:?} is not a list of rows"))?;
                let mut flat = Vec::with_capacity(rows.len() * h);
                for row in rows {
                    let row = crate::source::json_floats(row, name)?;
                    if row.len() != h {
                        return Err(format!("stage {name:?} has a row of {} numbers, expected {h}", row.len()));
                    }
                    flat.extend(row);
                }
                Ok((name.clone(), flat))
            })
            .collect()
    };
    (id, stages())
}
