//! Typed library errors. Every message names the file, tensor or item it is about and what was expected.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the library.
///
/// The CLI maps [`Error::Model`] whose model is absent, [`Error::Input`], [`Error::Io`] and friends to exit
/// code 2 (bad input); an out-of-tolerance result is not an error but a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file exists but its content is not what was expected (bad JSON/TOML, missing key, wrong shape).
    #[error("{path}: {message}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong with it and what was expected.
        message: String,
    },
    /// The model could not be found or is of a kind embcheck does not support.
    #[error("model {model}: {message}")]
    Model {
        /// The model as the user named it (directory or hub id).
        model: String,
        /// What is wrong.
        message: String,
    },
    /// `config.json` names a model type whose encoder embcheck does not implement. The model-free checks
    /// (a system's vectors against the references, `diff`, a gate's candidate source) still run; only what
    /// needs embcheck's own encoder is refused.
    #[error("{path}: model_type {model_type:?} is not implemented (embcheck implements {})", crate::model::config::IMPLEMENTED.join(", "))]
    Unimplemented {
        /// The model's `config.json`.
        path: PathBuf,
        /// Its `model_type`.
        model_type: String,
    },
    /// The tensor library failed while computing.
    #[error("{context}: {source}")]
    Compute {
        /// What was being computed.
        context: String,
        /// candle's error.
        source: candle_core::Error,
    },
    /// A command-line or API usage error.
    #[error("{0}")]
    Usage(String),
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Input`] about `path`.
    pub fn input(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Input { path: path.as_ref().to_path_buf(), message: message.into() }
    }

    /// An [`Error::Io`] about `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }

    /// The message on one line (candle's and some parsers' messages span several), for terminals and
    /// reports: line breaks become `; `.
    ///
    /// With `RUST_BACKTRACE` set, candle appends a backtrace to its messages (frame `0:` first): that is for
    /// debugging embcheck, not for the user's line, and is cut.
    pub fn one_line(&self) -> String {
        let text = self.to_string();
        text.lines()
            .map(str::trim)
            .take_while(|l| !l.starts_with("0: "))
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Whether this is a write to a closed pipe (`embcheck diff a b | head`): the reader has gone, which is
    /// not an error worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// An [`Error::Model`] about `model`.
    pub fn model(model: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Model { model: model.into(), message: message.into() }
    }
}

/// Adds context to candle errors.
pub(crate) trait ComputeContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> ComputeContext<T> for candle_core::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Compute { context: what(), source })
    }
}

/// Reads a whole file, naming it on failure.
pub(crate) fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Reads and parses a JSON file, naming it (and the line) on failure.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_to_string(path)?;
    serde_json::from_str(&text).map_err(|e| Error::input(path, format!("invalid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_lines_and_drops_a_backtrace() {
        let e = Error::input("f.toml", "first\n  second\n\n   0: candle_core::error::Error::bt\n      at src/x.rs:1\n   1: main");
        assert_eq!(e.one_line(), "f.toml: first; second");
    }
}
