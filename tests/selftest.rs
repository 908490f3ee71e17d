//! `embcheck selftest`, the real CLI: every injected fault is caught with its diagnosis and every benign
//! change passes (exit 0), and the printed matrix has a row for every mutation.

mod common;

#[test]
fn the_detection_matrix_is_as_expected() {
    let out = common::embcheck(&["selftest"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| mutation")).collect();
    let expected = embcheck::selftest::matrix();
    assert_eq!(rows.len(), expected.len(), "one table row per mutation\n{}", common::show(&out));
    for (row, m) in rows.iter().zip(&expected) {
        assert!(row.starts_with(&format!("| {} | {} / {} |", m.name, m.suite, m.pipeline)), "row {row:?} for {m:?}");
        let verdict = row.split(" | ").nth(3).unwrap_or_default();
        match m.expect {
            embcheck::selftest::Expect::Pass => assert!(verdict.starts_with("pass 0/"), "{row}"),
            embcheck::selftest::Expect::Fail(_) | embcheck::selftest::Expect::FailEither(..) => assert!(verdict.starts_with("FAIL "), "{row}"),
        }
    }
    // Every kind of row is present: faults and benign changes.
    for needle in ["normalization dropped", "pooling", "max length", "pad id", "lowercasing", "stripping", "prompt", "rounded to f16",
        "rounded to bf16", "computed in f16", "weight noise 1e-6", "weight noise 1e-3", "weight noise 1e-1", "layer dropped",
        "tokenizer of", "batch size 1", "batch size 7", "input order reversed", "RAYON_NUM_THREADS=1"]
    {
        assert!(rows.iter().any(|r| r.contains(needle)), "no row for {needle:?}\n{stdout}");
    }
    assert_eq!(out.status.code(), Some(0), "every row must match its expectation\n{}", common::show(&out));
    assert!(rows.iter().all(|r| r.ends_with("| yes |")), "{stdout}");
}
