"""Side-by-side throughput: sentence-transformers (PyTorch) vs `embcheck embed`, same texts, same cores.

    .venv-ref/bin/python scripts/bench_vs_pytorch.py [--model fixtures/external/all-MiniLM-L6-v2] [--texts 1000]

Builds a deterministic corpus (lognormal lengths, 8-400 words), encodes it with
SentenceTransformer.encode (batch 32) and with the release binary (`cargo build --release` first), and
prints tokens/s for both. The model load is timed separately for embcheck and left out of its rate.
"""
import argparse, json, math, os, random, subprocess, tempfile, time

import torch
from sentence_transformers import SentenceTransformer

WORDS = ("the of and to in is was for on that with as by at from his an were are which this be or had not "
         "first one their its new after who they have her she two been other when there all during into school "
         "time may years more most only over city some world would where later up such used many can state about "
         "national out known university united then made").split()


def corpus(n, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = int(min(400, max(8, math.exp(rng.gauss(3.6, 0.9)))))
        out.append(" ".join(rng.choice(WORDS) for _ in range(k)).capitalize() + ".")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="fixtures/external/all-MiniLM-L6-v2")
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--binary", default="target/release/embcheck")
    a = ap.parse_args()
    texts = corpus(a.texts)
    st = SentenceTransformer(a.model, device="cpu")
    tokens = sum(len(st.tokenize([t])["input_ids"][0]) for t in texts)
    torch.set_num_threads(os.cpu_count())
    st.encode(texts[:32], batch_size=32)  # warm-up
    t = time.perf_counter()
    st.encode(texts, batch_size=32)
    py = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        inp = os.path.join(d, "texts.jsonl")
        with open(inp, "w") as f:
            for t_ in texts:
                f.write(json.dumps({"text": t_}) + "\n")
        cmd = [a.binary, "embed", "--model", a.model, "--pipeline", "sentence-transformers", "--input", inp,
               "--output", os.path.join(d, "o.safetensors"), "--batch-size", "32"]
        small = os.path.join(d, "one.jsonl")
        with open(small, "w") as f:
            f.write(json.dumps({"text": "warm"}) + "\n")
        t = time.perf_counter()
        subprocess.run(cmd[:7] + [small] + cmd[8:], check=True)
        load = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        rs = time.perf_counter() - t - load
    print(f"corpus: {len(texts)} texts, {tokens} tokens, {os.cpu_count()} cores")
    print(f"sentence-transformers {torch.__version__}: {tokens / py:8.0f} tokens/s")
    print(f"embcheck embed:            {tokens / rs:8.0f} tokens/s  (load {load:.2f}s excluded)")
    print(f"ratio embcheck / PyTorch:  {py / rs:.2f}x")


if __name__ == "__main__":
    main()
