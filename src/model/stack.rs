//! Which Python stack embcheck mirrors: the transformers and sentence-transformers versions whose text
//! handling (tokenizer construction, stripping, lowercasing) the pipelines copy.
//!
//! `check` takes the versions a reference records (metadata key `libraries`); `embed` takes `--stack`.
//! Behaviour was read in the libraries' source: transformers 4.56 and 5.24, sentence-transformers 5.1, 5.3,
//! 5.4, 5.7, 6.0 and 6.2. A transformers major version other than 4 or 5 is refused.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};

/// A library version, major and minor (the patch level never changes text handling here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
}

impl Version {
    /// `"5.24.0"`, `"4.56.2"`, `"6.2.0.dev0"` → major and minor; `None` when they do not parse.
    pub fn parse(s: &str) -> Option<Version> {
        let mut it = s.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty());
        Some(Version { major: it.next()?.parse().ok()?, minor: it.next()?.parse().ok()? })
    }

    const fn new(major: u32, minor: u32) -> Version {
        Version { major, minor }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The Python stack whose text handling is mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stack {
    /// transformers: decides how `AutoTokenizer` builds the tokenizer (4: `tokenizer.json` as is, with
    /// BERT's normalizer options from tokenizer_config.json; 5: rebuilt from the vocabulary per class).
    pub transformers: Version,
    /// sentence-transformers: decides stripping, lowercasing and CLS pooling under a masked prompt.
    pub sentence_transformers: Version,
}

impl Default for Stack {
    /// The pinned reference stack (scripts/requirements-reference.txt), the only one FlagEmbedding runs on.
    fn default() -> Self {
        Stack::TRANSFORMERS4
    }
}

impl Stack {
    /// transformers 4.56 / sentence-transformers 5.1 (with FlagEmbedding 1.4.2): every pipeline.
    pub const TRANSFORMERS4: Stack = Stack { transformers: Version::new(4, 56), sentence_transformers: Version::new(5, 1) };
    /// transformers 5.24 / sentence-transformers 6.2: what `pip install sentence-transformers` brings today.
    pub const TRANSFORMERS5: Stack = Stack { transformers: Version::new(5, 24), sentence_transformers: Version::new(6, 2) };
    /// The names `--stack` accepts.
    pub const NAMES: &'static str = "transformers4 (transformers 4.56, sentence-transformers 5.1) or transformers5 (transformers 5.24, sentence-transformers 6.2)";

    /// A stack by name: `transformers4` / `tf4` / `4`, `transformers5` / `tf5` / `5`.
    pub fn named(name: &str) -> Result<Stack> {
        match name {
            "transformers4" | "tf4" | "4" => Ok(Stack::TRANSFORMERS4),
            "transformers5" | "tf5" | "5" => Ok(Stack::TRANSFORMERS5),
            other => Err(Error::Usage(format!("--stack {other:?}: expected {}", Stack::NAMES))),
        }
    }

    /// The stack a reference was made with, from its metadata key `libraries` (a JSON object of name →
    /// version). No `libraries` key: the pinned stack. A transformers version that is missing, does not parse
    /// or is not 4.x / 5.x is an error: embcheck cannot tell what to mirror. A missing sentence-transformers
    /// version takes the one pinned with that transformers major.
    pub fn from_reference(metadata: &BTreeMap<String, String>) -> Result<Stack> {
        let Some(raw) = metadata.get("libraries") else { return Ok(Stack::default()) };
        let libs: BTreeMap<String, String> = serde_json::from_str(raw)
            .map_err(|e| Error::Usage(format!("reference metadata \"libraries\" is not a JSON object of versions: {e}")))?;
        let tf = libs.get("transformers").ok_or_else(|| {
            Error::Usage("reference metadata \"libraries\" has no transformers version: cannot tell which tokenizer to mirror".into())
        })?;
        let transformers = Version::parse(tf)
            .ok_or_else(|| Error::Usage(format!("reference metadata: transformers version {tf:?} does not parse")))?;
        let pinned = match transformers.major {
            4 => Stack::TRANSFORMERS4,
            5 => Stack::TRANSFORMERS5,
            _ => {
                return Err(Error::Usage(format!(
                    "the reference was made with transformers {tf}; embcheck mirrors transformers 4.x and 5.x only"
                )))
            }
        };
        let sentence_transformers = match libs.get("sentence-transformers") {
            Some(v) => Version::parse(v)
                .ok_or_else(|| Error::Usage(format!("reference metadata: sentence-transformers version {v:?} does not parse")))?,
            None => pinned.sentence_transformers,
        };
        Ok(Stack { transformers, sentence_transformers })
    }

    /// transformers 5 rebuilds tokenizers from the vocabulary (see `tokenizer.rs`).
    pub fn rebuilds_tokenizers(&self) -> bool {
        self.transformers.major >= 5
    }

    /// `SentenceTransformer.encode` strips every text with `str.strip()` up to 5.3; from 5.4 it passes the
    /// texts on as they are (transformers 5's XLM-R tokenizer drops outer whitespace by itself).
    pub fn st_strips(&self) -> bool {
        self.sentence_transformers < Version::new(5, 4)
    }

    /// How sentence-transformers applies `do_lower_case`: up to 5.3 `str.lower()` on the text; from 5.4 it
    /// puts a `Lowercase` normalizer in front of the fast tokenizer's normalizer (unless that already has
    /// one), which lowercases character by character after special tokens are split off.
    pub fn st_lowercases_in_normalizer(&self) -> bool {
        self.sentence_transformers >= Version::new(5, 4)
    }

    /// Whether CLS pooling with `include_prompt: false` and a prompt takes a position other than 0:
    /// 5.7 and later take the first position the prompt-masked attention mask keeps, up to 5.4 position 0;
    /// 5.5 and 5.6 were not read, so they count as "changed" (and are refused rather than guessed).
    pub fn st_cls_skips_prompt(&self) -> bool {
        self.sentence_transformers >= Version::new(5, 5)
    }
}

impl fmt::Display for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "transformers {}, sentence-transformers {}", self.transformers, self.sentence_transformers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(libs: &str) -> BTreeMap<String, String> {
        [("libraries".to_string(), libs.to_string())].into_iter().collect()
    }

    #[test]
    fn versions_decide_text_handling() {
        let s = |tf: &str, st: &str| Stack::from_reference(&meta(&format!(r#"{{"transformers":"{tf}","sentence-transformers":"{st}"}}"#))).unwrap();
        assert!(s("4.56.2", "5.1.2").st_strips());
        assert!(s("4.56.2", "5.3.0").st_strips());
        assert!(!s("4.56.2", "5.4.0").st_strips());
        assert!(!s("5.24.0", "6.2.0").st_strips());
        assert!(s("5.24.0", "6.2.0").rebuilds_tokenizers());
        assert!(!s("4.56.2", "5.1.2").rebuilds_tokenizers());
        assert!(!s("4.56.2", "5.1.2").st_lowercases_in_normalizer());
        assert!(s("5.24.0", "6.2.0").st_lowercases_in_normalizer());
        assert!(!s("4.56.2", "5.4.0").st_cls_skips_prompt());
        assert!(s("5.24.0", "6.2.0").st_cls_skips_prompt());
    }

    #[test]
    fn unknown_stacks_are_refused() {
        assert!(Stack::from_reference(&meta(r#"{"transformers":"6.0.0"}"#)).is_err());
        assert!(Stack::from_reference(&meta(r#"{"transformers":"dev"}"#)).is_err());
        assert!(Stack::from_reference(&meta(r#"{"torch":"2.9.1"}"#)).is_err());
        assert!(Stack::from_reference(&meta("not json")).is_err());
        assert_eq!(Stack::from_reference(&BTreeMap::new()).unwrap(), Stack::TRANSFORMERS4);
        assert_eq!(Stack::from_reference(&meta(r#"{"transformers":"5.24.0"}"#)).unwrap(), Stack::TRANSFORMERS5);
        assert!(Stack::named("transformers6").is_err());
        assert_eq!(Stack::named("tf5").unwrap(), Stack::TRANSFORMERS5);
    }
}
