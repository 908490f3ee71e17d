#!/usr/bin/env python3
"""Times `embcheck gate` at corpus scale on synthetic suites, with its peak memory (a benchmark, not a test).

For each size N it writes a suite of N texts (ids and short placeholder texts) whose `normalized-cls`
reference holds clustered random unit vectors of width 384, and a candidate `.npy` file: the same vectors
with small Gaussian noise, renormalized (a candidate that should pass). With --retrieval-passages P it also
writes a suite of Q queries + P passages carrying a retrieval set (each query is a noisy copy of one
passage, judged relevant). Then it runs, once per suite,

    /usr/bin/time -v EMBCHECK gate --baseline SUITE --candidate CANDIDATE.npy --mode parity --report-dir REPORTS

and prints a table: texts, wall and CPU seconds, peak resident memory (GiB), the load average when it
started (the machine may be shared: CPU seconds say more then), the gate's verdict. The data is made
with a fixed seed in numpy (cheap: seconds for 100k texts) and kept under --out (not in the repository).

    .venv-ref/bin/python scripts/bench_gate_scale.py --embcheck target/release/embcheck \\
        --out /tmp/gate-scale --sizes 2000 10000 100000
    .venv-ref/bin/python scripts/bench_gate_scale.py --embcheck target/release/embcheck \\
        --out /tmp/gate-scale --sizes --retrieval-passages 1000000 --retrieval-queries 1000

Needs numpy and safetensors (both in .venv-ref). Report the CPU with the figures: lscpu | grep 'Model name'.
"""
import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

WIDTH = 384
PIPELINE = "normalized-cls"


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def vectors(n, rng, chunk=100_000):
    """n clustered unit vectors (about 50 texts a cluster), made in chunks to bound memory."""
    centers = rng.standard_normal((max(1, n // 50), WIDTH)).astype(np.float32)
    out = np.empty((n, WIDTH), dtype=np.float32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        c = centers[rng.integers(0, len(centers), e - s)]
        out[s:e] = unit(c + 0.6 * rng.standard_normal((e - s, WIDTH)).astype(np.float32))
    return out


def noisy(v, rng, scale, chunk=100_000):
    out = np.empty_like(v)
    for s in range(0, len(v), chunk):
        e = min(len(v), s + chunk)
        out[s:e] = unit(v[s:e] + scale / np.sqrt(WIDTH) * rng.standard_normal((e - s, WIDTH)).astype(np.float32))
    return out


def write_texts(path, ids):
    with open(path, "w") as f:
        for i in ids:
            f.write(json.dumps({"id": i, "text": f"synthetic text {i}"}) + "\n")


def write_suite(d, name, ids, base, cand, retrieval=None, gate_extra=""):
    d.mkdir(parents=True, exist_ok=True)
    write_texts(d / "texts.jsonl", ids)
    save_file({PIPELINE: base}, str(d / "reference.safetensors"), metadata={"synthetic": "scripts/bench_gate_scale.py"})
    np.save(d / "candidate.npy", cand)
    toml = [f'name = "{name}"', 'model = "none (synthetic vectors)"', f'pipelines = ["{PIPELINE}"]']
    if retrieval:
        toml.append(f'retrieval = "{retrieval}"')
    if gate_extra:
        toml.append("[gate]\n" + gate_extra)
    (d / "suite.toml").write_text("\n".join(toml) + "\n")


def make_plain(out, n, seed):
    d = out / f"texts-{n}"
    if not (d / "candidate.npy").exists():
        rng = np.random.default_rng(seed)
        base = vectors(n, rng)
        write_suite(d, f"synthetic-{n}", [f"t{i}" for i in range(n)], base, noisy(base, rng, 0.05))
    return d


def make_retrieval(out, passages, queries, seed, gate_extra):
    d = out / f"retrieval-{queries}x{passages}"
    if not (d / "candidate.npy").exists():
        rng = np.random.default_rng(seed)
        corpus = vectors(passages, rng)
        target = rng.choice(passages, size=queries, replace=False)
        q = noisy(corpus[target], rng, 1.0)
        base = np.concatenate([q, corpus])
        del corpus
        cand = noisy(base, rng, 0.05)
        qids = [f"q{i}" for i in range(queries)]
        pids = [f"p{i}" for i in range(passages)]
        r = d / "retrieval"
        r.mkdir(parents=True, exist_ok=True)
        write_texts(r / "queries.jsonl", qids)
        write_texts(r / "corpus.jsonl", pids)
        with open(r / "qrels.tsv", "w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for i, t in enumerate(target):
                f.write(f"q{i}\tp{t}\t1\n")
        write_suite(d, f"synthetic-retrieval-{queries}x{passages}", qids + pids, base, cand, "retrieval", gate_extra)
    return d


def run(embcheck, suite, reports):
    cmd = ["/usr/bin/time", "-v", embcheck, "gate", "--baseline", str(suite), "--candidate", str(suite / "candidate.npy"), "--mode", "parity", "--report-dir", str(reports)]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", p.stderr))
    verdict = "PASS" if p.returncode == 0 else ("FAIL" if p.returncode == 1 else f"exit {p.returncode}")
    if p.returncode not in (0, 1):
        print(p.stderr[-2000:], file=sys.stderr)
    lines = [line.strip() for line in p.stdout.splitlines() if "Spearman" in line]
    spearman = next((x for x in lines if "sample" in x), lines[0] if lines else "")
    return wall, cpu, int(rss.group(1)) / 2**20 if rss else float("nan"), verdict, spearman


def main():
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--embcheck", required=True)
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    a.add_argument("--retrieval-passages", type=int, default=0)
    a.add_argument("--retrieval-queries", type=int, default=1000)
    a.add_argument("--retrieval-gate", default="neighbour_texts = 1000",
                   help="[gate] lines for the retrieval suite (default: neighbours of a 1,000-text sample)")
    a.add_argument("--seed", type=int, default=17)
    args = a.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if l.startswith("Model name")), "?")
    print(f"CPU: {cpu}; embcheck: {args.embcheck}")
    print("| texts | gate wall s | CPU s (user+sys) | peak RSS GiB | load avg (1 min) | verdict | Spearman |\n|---|---|---|---|---|---|---|")
    suites = [(n, make_plain(args.out, n, args.seed)) for n in args.sizes]
    if args.retrieval_passages:
        d = make_retrieval(args.out, args.retrieval_passages, args.retrieval_queries, args.seed, args.retrieval_gate)
        suites.append((f"{args.retrieval_queries} queries x {args.retrieval_passages} passages", d))
    for n, d in suites:
        load = Path("/proc/loadavg").read_text().split()[0]
        wall, cpu_s, gib, verdict, spearman = run(args.embcheck, d, d / f"reports-{Path(args.embcheck).name}")
        print(f"| {n} | {wall:.1f} | {cpu_s:.1f} | {gib:.2f} | {load} | {verdict} | {spearman} |", flush=True)


if __name__ == "__main__":
    main()
