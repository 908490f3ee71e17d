//! Secrets of a system under test (request header values, the password of a URL) kept out of every message
//! embcheck prints or reports: header names and values are validated before anything is sent, and every
//! message a source produces (transport errors, server answers that echo the key, URLs) is redacted.

use crate::error::{Error, Result};

/// What replaces a secret in a message.
pub const REDACTED: &str = "[redacted]";

/// The values to remove from messages.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: Vec<String>,
}

impl Secrets {
    /// Adds a secret value: the whole value, and each of its whitespace-separated words of 6 or more characters
    /// (a server that echoes `sk-…` out of `Bearer sk-…`).
    pub fn add(&mut self, value: &str) {
        let mut add = |s: &str| {
            if !s.is_empty() && !self.values.iter().any(|v| v == s) {
                self.values.push(s.to_string());
            }
        };
        add(value);
        add(value.trim());
        for word in value.split_whitespace().filter(|w| w.chars().count() >= 6) {
            add(word);
        }
        // Longest first, so that a value is never half replaced by one of its own words.
        self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    /// `message` with every secret value replaced by [`REDACTED`].
    pub fn redact(&self, message: &str) -> String {
        let mut out = message.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), REDACTED);
            }
        }
        out
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Checks a request header as HTTP defines it (RFC 9110: the name a token, the value visible ASCII with inner
/// spaces or tabs). The message names the header and where its value came from, never the value.
pub fn validate_header(name: &str, value: &str, from: &str) -> Result<()> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(tchar) {
        return Err(Error::Usage(format!(
            "--header {name:?}: not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only; no spaces, no '=' or ':')"
        )));
    }
    if let Some(bad) = value.bytes().find(|&b| !(b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b))) {
        let what = match bad {
            b'\r' => "a carriage return (\\r; a value written with Windows line endings?)".to_string(),
            b'\n' => "a line feed (\\n)".to_string(),
            b if b < 0x20 || b == 0x7f => format!("the control character 0x{b:02x}"),
            _ => "a character outside printable ASCII".to_string(),
        };
        return Err(Error::Usage(format!("--header {name}: the value of {from} holds {what}, which an HTTP header cannot carry")));
    }
    if value.trim().is_empty() {
        return Err(Error::Usage(format!("--header {name}: the value of {from} is empty")));
    }
    Ok(())
}

/// A URL's credentials (`http://user:password@host/…`) split off: the URL without them, and the
/// `Authorization: Basic …` value they stand for (sent as curl sends it), if any.
pub fn split_credentials(url: &str) -> Result<(String, Option<String>)> {
    use base64::Engine as _;
    let mut parsed = url::Url::parse(url).map_err(|e| Error::Usage(format!("--against {}: not a valid URL: {e}", without_userinfo(url))))?;
    if parsed.username().is_empty() && parsed.password().is_none() {
        return Ok((url.to_string(), None));
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let user = decode(parsed.username());
    let password = parsed.password().map(decode).unwrap_or_default();
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
    // Both setters only fail on URLs that cannot have credentials, which a parsed http(s) URL can.
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    let mut clean = parsed.to_string();
    if !url.ends_with('/') && clean.ends_with('/') && parsed.path() == "/" {
        clean.pop();
    }
    Ok((clean, Some(basic)))
}

/// The URL with anything between `://` and `@` of its authority removed (for messages about a URL that
/// does not parse).
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// The secrets of a URL's credentials: the raw password and `user:password` as written.
pub fn url_secrets(url: &str, secrets: &mut Secrets) {
    let Some((_, rest)) = url.split_once("://") else { return };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if let Some(at) = rest[..end].rfind('@') {
        let userinfo = &rest[..at];
        secrets.add(userinfo);
        if let Some((_, pw)) = userinfo.split_once(':') {
            secrets.add(pw);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_and_its_long_words_are_redacted() {
        let mut s = Secrets::default();
        s.add("Bearer sk-abcdef123\r");
        assert_eq!(s.redact("Incorrect API key provided: sk-abcdef123."), "Incorrect API key provided: [redacted].");
        assert_eq!(s.redact("got 'Bearer sk-abcdef123\r'"), "got '[redacted]'");
        assert_eq!(s.redact("nothing here"), "nothing here");
    }

    #[test]
    fn headers_are_validated_without_naming_the_value() {
        assert!(validate_header("Authorization", "Bearer x", "V").is_ok());
        let e = validate_header("Authorization", "Bearer sk-1\r", "EMBED_AUTH").unwrap_err().to_string();
        assert!(e.contains("Authorization") && e.contains("EMBED_AUTH") && e.contains("carriage return") && !e.contains("sk-1"), "{e}");
        let e = validate_header("X Api Key", "sk-1", "V").unwrap_err().to_string();
        assert!(e.contains("X Api Key") && !e.contains("sk-1"), "{e}");
        assert!(validate_header("A", "", "V").is_err());
        assert!(validate_header("A", "\u{e9}", "V").is_err());
    }

    #[test]
    fn url_credentials_become_a_basic_header() {
        let (clean, basic) = split_credentials("http://user:p%40ss@127.0.0.1:8080/v1").unwrap();
        assert_eq!(clean, "http://127.0.0.1:8080/v1");
        // base64("user:p@ss")
        assert_eq!(basic.as_deref(), Some("Basic dXNlcjpwQHNz"));
        assert_eq!(split_credentials("http://127.0.0.1:8080").unwrap(), ("http://127.0.0.1:8080".to_string(), None));
        assert_eq!(without_userinfo("http://u:pw@h:1/x@y"), "http://h:1/x@y");
        let mut s = Secrets::default();
        url_secrets("http://u:pw-long@h/", &mut s);
        assert_eq!(s.redact("http://u:pw-long@h/"), "http://[redacted]@h/");
    }
}
