//! What the reference did to each text before its model ran: the settings a system under test must honour
//! to be comparable with a suite (max length, prompt or instruction, stripping, lowercasing).

use crate::pipeline::{Lowercase, Pipeline, TextPrep};

/// How a suite's reference prepared and cut each text, for one pipeline, as the Python library did it with
/// the suite's settings (read by [`Suite::settings`](crate::Suite::settings)).
///
/// A system under test receives every text exactly as `texts.jsonl` holds it; to match the reference it must
/// prepare it as these say ([`TextSettings::prepare`]) and cut it at [`TextSettings::max_length`] tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextSettings {
    /// The most tokens per text, special tokens included: the reference cut every longer text there.
    pub max_length: usize,
    /// Prepended to every text before tokenizing (FlagEmbedding's query instruction, a sentence-transformers
    /// prompt); empty for none.
    pub prefix: String,
    /// Whether leading and trailing whitespace was stripped (Python's `str.strip()`: sentence-transformers up
    /// to 5.3).
    pub strip: bool,
    /// Whether the text was lowercased (`do_lower_case`).
    pub lowercase: bool,
    prep: TextPrep,
}

impl TextSettings {
    pub(crate) fn of(pipeline: &Pipeline) -> Self {
        let prep = pipeline.prep.clone();
        TextSettings { max_length: pipeline.max_length, prefix: prep.prefix.clone(), strip: prep.strip, lowercase: prep.lowercase != Lowercase::No, prep }
    }

    /// `text` as the reference's library handed it to its tokenizer: prefixed, stripped (Python's notion of
    /// whitespace) and lowercased as these settings say. Lowercasing that sentence-transformers 5.4+ does in
    /// the tokenizer's normalizer (character by character) is left to the tokenizer, as there.
    pub fn prepare(&self, text: &str) -> String {
        self.prep.apply(text)
    }
}
