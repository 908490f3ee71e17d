//! `bisect --against cmd:…`: a program as the port. The program here is a stand-in for the protocol only — it
//! replays states `embcheck embed --layers` computed for a faulty model copy, looked up by the `input_ids` each
//! request carries — so the cmd route must find exactly what the file route finds. Hostile programs (silent,
//! chatty, wrong shapes) end as input errors, bounded in time.

mod common;

use common::{embcheck, show, suite};
use embcheck::bisect::Bisection;

/// A python3 program that answers layer requests from a layers file (safetensors read with the standard
/// library: an 8-byte header length, a JSON header, raw little-endian data).
const REPLAY: &str = r#"
import json, struct, sys
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
header = json.loads(raw[8:8 + n]); base = 8 + n
def tensor(name, fmt, size):
    a, b = header[name]['data_offsets']
    data = raw[base + a: base + b]
    return list(struct.unpack('<%d%s' % (len(data) // size, fmt), data)), header[name]['shape']
stages = json.loads(header['__metadata__']['stages'])
ids, _ = tensor('input_ids', 'q', 8); offsets, _ = tensor('offsets', 'q', 8)
values = {s: tensor(s, 'f', 4) for s in stages}
by_ids = {}
for k in range(len(offsets) - 1):
    a, b = offsets[k], offsets[k + 1]
    layers = {}
    for s, (v, shape) in values.items():
        h = shape[1]
        layers[s] = [v[(a + t) * h:(a + t + 1) * h] for t in range(b - a)]
    by_ids[tuple(ids[a:b])] = layers
for line in sys.stdin:
    req = json.loads(line)
    assert req['layers'] is True
    print(json.dumps({'id': req['id'], 'layers': by_ids[tuple(req['input_ids'])]}), flush=True)
"#;

fn bisect_json(args: &[&str], dir: &std::path::Path) -> (Option<i32>, Option<Bisection>, String) {
    let report = dir.join("r");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--report-dir", report.to_str().unwrap()]);
    let o = embcheck(&all);
    let b = std::fs::read(report.join("bisect.json")).ok().map(|b| serde_json::from_slice(&b).unwrap());
    (o.status.code(), b, show(&o))
}

#[test]
fn a_program_port_is_bisected_as_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = suite("tiny-xlmr-m3");
    // The port: the model with tanh GELU (a config change), its states written by embed --layers.
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for e in std::fs::read_dir(common::root().join("fixtures/models/tiny-xlmr-m3")).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            std::fs::copy(e.path(), model.join(e.file_name())).unwrap();
        }
    }
    let cfg = model.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["hidden_act"] = "gelu_pytorch_tanh".into();
    std::fs::write(&cfg, v.to_string()).unwrap();
    let file = dir.path().join("port.safetensors");
    let o = embcheck(&["embed", "--suite", s.to_str().unwrap(), "--model", model.to_str().unwrap(), "--layers", "--output", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let program = dir.path().join("replay.py");
    std::fs::write(&program, REPLAY).unwrap();

    let (code, by_file, out) = bisect_json(&["bisect", s.to_str().unwrap(), "--against", file.to_str().unwrap()], &dir.path().join("f"));
    assert_eq!(code, Some(1), "{out}");
    let cmd = format!("cmd:python3 {} {}", program.display(), file.display());
    let (code, by_cmd, out) = bisect_json(&["bisect", s.to_str().unwrap(), "--against", &cmd], &dir.path().join("c"));
    assert_eq!(code, Some(1), "{out}");
    let (by_file, by_cmd) = (by_file.unwrap(), by_cmd.unwrap());
    assert_eq!(by_cmd.first.as_ref().unwrap().stage, "layers.0.mlp", "{out}");
    assert_eq!(by_cmd.first.as_ref().unwrap().texts, by_file.first.as_ref().unwrap().texts);
    for (a, b) in by_cmd.summary.iter().zip(&by_file.summary) {
        // JSON carries each number as its shortest round-trip text: the same f32 values.
        assert_eq!(a.max_rel_l2, b.max_rel_l2, "{}", a.stage);
    }
}

#[test]
fn hostile_programs_are_input_errors_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let s = suite("tiny-bert-mean");
    for (program, expect) in [
        ("cat > /dev/null; echo not json", "answer no text"),
        ("cat > /dev/null; exit 3", "exit status"),
        ("sleep 1000", "no answer in 1 s"),
        (r#"python3 -c 'import sys, json
for l in sys.stdin: print(json.dumps({"id": json.loads(l)["id"], "layers": {"embeddings": [[1.0, 2.0]]}}), flush=True)'"#, "expected 32"),
        (r#"python3 -c 'import sys, json
for l in sys.stdin: print(json.dumps({"id": json.loads(l)["id"], "error": "cannot"}), flush=True)'"#, "cannot"),
    ] {
        let started = std::time::Instant::now();
        let cmd = format!("cmd:{program}");
        let (code, _, out) = bisect_json(&["bisect", s.to_str().unwrap(), "--against", &cmd, "--timeout", "1"], dir.path());
        assert_eq!(code, Some(2), "{program}: {out}");
        assert!(out.contains(expect), "{program}: expected {expect:?} in {out}");
        assert!(started.elapsed().as_secs() < 30, "{program} took {:?}", started.elapsed());
    }
}
