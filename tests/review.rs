//! Reviewing a new reference: a pending `reference.safetensors.new` (made by the Python generator) is never
//! compared against; `accept` promotes it with a provenance entry, `reject` removes it; with CI set, neither
//! writes anything.

mod common;

use common::*;

#[test]
fn a_pending_reference_is_reviewed_and_ci_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = suite_copy("tiny-bert-mean", tmp.path());
    let d = dir.to_str().unwrap();
    // A reference the Python libraries made for the same texts at max length 24, as --pending would write it.
    let pending = dir.join("reference.safetensors.new");
    std::fs::copy(root().join("fixtures/corruptions/tiny-bert-mean-max24/reference.safetensors"), &pending).unwrap();
    let before = std::fs::read(dir.join("reference.safetensors")).unwrap();

    let o = embcheck(&["check", d, "--report-dir", tmp.path().join("r1").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "the pending file changes nothing\n{}", show(&o));
    assert!(show(&o).contains("pending review"), "{}", show(&o));

    for cmd in [&["accept", d, "--reason", "x"][..], &["reject", d][..]] {
        let o = embcheck_env(cmd, &[("CI", "true")]);
        assert_eq!(o.status.code(), Some(2), "{}", show(&o));
        assert!(pending.is_file() && std::fs::read(dir.join("reference.safetensors")).unwrap() == before);
    }

    let o = embcheck_env(&["accept", d, "--reason", "max length 24 on purpose"], &[("CI", "")]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(!pending.exists());
    let log = std::fs::read_to_string(dir.join("provenance.jsonl")).unwrap();
    let entry: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(entry["why"], "max length 24 on purpose");
    assert_eq!(entry["new_sha256"].as_str().unwrap().len(), 64);
    assert_ne!(entry["old_sha256"], entry["new_sha256"]);
    // Now the accepted reference is the one compared against: made at 24 tokens, it disagrees with the suite.
    let o = embcheck(&["check", d, "--report-dir", tmp.path().join("r2").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));

    std::fs::write(&pending, b"not a reference").unwrap();
    let o = embcheck_env(&["accept", d], &[("CI", "")]);
    assert_eq!(o.status.code(), Some(2), "a broken pending file is refused\n{}", show(&o));
    let o = embcheck_env(&["reject", d], &[("CI", "")]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(!pending.exists());
    let o = embcheck_env(&["reject", d], &[("CI", "")]);
    assert_eq!(o.status.code(), Some(2), "nothing to reject\n{}", show(&o));
}
