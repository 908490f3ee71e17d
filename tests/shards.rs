//! CI shards: `check --partition hash:M/N` jobs and `merge-reports` give the reports and verdict of one run.

mod common;

use std::path::Path;

use common::*;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let o = embcheck(args);
    (o.status.code(), show(&o))
}

fn same_files(a: &Path, b: &Path) {
    for f in ["summary.json", "summary.md", "junit.xml"] {
        let (x, y) = (std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap());
        assert!(x == y, "{f} differs between one run and the merged shards");
    }
}

#[test]
fn shards_merge_into_the_reports_and_verdict_of_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    // Three suites, one of them failing (a NaN in its reference).
    let names = ["tiny-bert-cls", "tiny-bert-mean", "tiny-xlmr-spm"];
    let dirs: Vec<String> = names.iter().map(|n| suite_copy(n, tmp.path()).to_string_lossy().into_owned()).collect();
    let bad = Path::new(&dirs[1]).join("reference.safetensors");
    let mut t = read_tensors(&bad);
    t.f32s.get_mut("normalized-cls").unwrap().1[3] = f32::NAN;
    write_tensors(&bad, &t);

    let all = tmp.path().join("all");
    let mut args: Vec<&str> = dirs.iter().map(String::as_str).collect();
    let one = [vec!["check", "--report-dir", all.to_str().unwrap()], args.clone()].concat();
    let (code, out) = run(&one);
    assert_eq!(code, Some(1), "{out}");

    let mut shards = Vec::new();
    let mut seen = 0;
    for m in 1..=3 {
        let dir = tmp.path().join(format!("shard-{m}"));
        let spec = format!("hash:{m}/3");
        let a = [vec!["check", "--partition", &spec, "--report-dir", dir.to_str().unwrap()], args.clone()].concat();
        let (code, out) = run(&a);
        assert!(matches!(code, Some(0) | Some(1)), "a shard, even an empty one, is not an error\n{out}");
        seen += out.lines().filter(|l| l.starts_with("PASS ") || l.starts_with("FAIL ")).count();
        shards.push(dir.to_string_lossy().into_owned());
    }
    assert!(seen >= names.len(), "every suite is in one shard");
    let merged = tmp.path().join("merged");
    args = shards.iter().map(String::as_str).collect();
    let (code, out) = run(&[vec!["merge-reports", "--report-dir", merged.to_str().unwrap()], args].concat());
    assert_eq!(code, Some(1), "the merged verdict is the single run's\n{out}");
    same_files(&all, &merged);

    // A shard given twice, or one left out, would change the verdict: refused, naming it.
    let m = merged.to_str().unwrap();
    let (code, out) = run(&["merge-reports", "--report-dir", m, &shards[0], &shards[0], &shards[1], &shards[2]]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("hash:1/3 is given twice"), "{out}");
    let (code, out) = run(&["merge-reports", "--report-dir", m, &shards[0], &shards[2]]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("hash:2/3 is missing"), "{out}");
    // A plain check's reports are not a shard.
    let (code, out) = run(&["merge-reports", "--report-dir", m, all.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("partition.json"), "{out}");

    let (code, out) = run(&["check", &dirs[0], "--partition", "hash:4/3"]);
    assert_eq!(code, Some(2), "{out}");
    let (code, out) = run(&["merge-reports", tmp.path().join("nope").to_str().unwrap()]);
    assert_eq!(code, Some(2), "{out}");
}
