"""Side-by-side throughput: sentence-transformers (PyTorch) vs `embcheck embed`, same texts, same cores.

    cargo build --release
    .venv-ref/bin/python scripts/bench_vs_pytorch.py [--model fixtures/external/all-MiniLM-L6-v2]
        [--texts 1000] [--repeat 3] [--threads N] [--xlmr-layout | --modernbert-layout | --qwen3-layout]

Two deterministic corpora:
  current  lognormal lengths (8-400 words) over a list of 150 common words (the corpus this script always had);
  varied   words drawn Zipf-like from the model's own WordPiece vocabulary (whole words: varied vocabulary,
           rare words split into several pieces), capitalization, digits and punctuation, and a heavy tail:
           85% of texts lognormal(3.2, 0.8) words, 15% 150-400 words (truncated at the model's max length).

Both sides are timed the same way, each repetition from cold:
  embcheck  the whole process (`embcheck embed`: start, model load, tokenize, embed, write the file);
  PyTorch   SentenceTransformer(model) (the load) plus encode(texts, batch_size=32), in this process (the
            Python start and `import torch` are not counted: that favours PyTorch).
Each side's median over the repetitions is reported (and the fastest); the ratio is PyTorch's time over
embcheck's. Outputs are compared row by row with the f32 parity tolerance (cosine >= 1 - 1e-6, relative L2
<= 1e-5, max abs <= 1e-4); a failure exits 1. "cores busy" is CPU time over wall time.

--xlmr-layout builds (in a temporary directory) an XLM-RoBERTa in BAAI/bge-m3's layout with MiniLM's layer
sizes (hidden 384, 6 layers, 12 heads, intermediate 1536; random weights, seeded) from the bundled
tiny-xlmr-spm model's tokenizer and sentence-transformers files (CLS pooling + Normalize, pad id 1,
positions from 2, max length 256), and benchmarks that instead.

--modernbert-layout builds (scripts/make_modernbert_model.py, in a temporary directory) a ModernBERT of
ModernBERT-base's shape (hidden 768, 22 layers, 12 heads, intermediate 1152, local window 128, global attention
every 3rd layer, RoPE thetas 160000 / 10000, no biases; random weights std 0.02, seeded) with the bundled
tiny-modernbert's byte-level BPE tokenizer (a small vocabulary: more tokens per word than ModernBERT's own),
mean pooling + Normalize, max length 512, and benchmarks that instead.

--qwen3-layout builds (scripts/make_decoder_model.py, in a temporary directory) a Qwen3Model of
Qwen3-Embedding-0.6B's proportions at half its width and 8 of its 28 layers (hidden 512, 8 query heads on 4
key/value heads of width 128 so that heads x width is twice the hidden size, intermediate 1536 = 3x hidden, RoPE
theta 1e6, q/k norms; random weights std 0.02, seed 5) with the bundled tiny-qwen3's tokenizer files (959-token
byte-level BPE, EOS appended, left padding) and last-token pooling + Normalize, max length 512, and benchmarks
that instead. 2026-12-06, Intel Xeon (AVX-512), 2 threads, 100 texts, 2 repetitions alternating the sides, medians,
load average 6.2-8.8 from other jobs (each side got ~0.5 cores busy: contended figures), the decoder's fused f32
path against the build before it, in one session: current 11,342 tokens, PyTorch 69.5 s, embcheck 21.4 s, 3.24x
(before: 66.8 s vs 40.6 s, 1.65x); varied 18,702 tokens, 72.4 s vs 31.4 s, 2.31x (before: 68.3 s vs 67.0 s,
1.02x); max rel L2 1.7e-6. Right after, at load 2.0-3.7, varied only, 1 repetition: PyTorch 30.4 s, embcheck 8.6 s,
3.52x (cores busy 1.12 / 1.72); before: 31.5 s vs 32.3 s, 0.98x (embcheck's cores busy 0.96).
Quiet machine (nothing else running, both sides 1.7-1.9 cores busy): current 14.88 s vs 5.26 s, 2.83x; varied
16.11 s vs 9.80 s, 1.64x (the build before, quiet, the same day: 14.00 s vs 9.35 s, 1.50x; 16.63 s vs 17.77 s, 0.94x).
"""
import argparse, json, math, os, random, resource, shutil, statistics, subprocess, sys, tempfile, time

import numpy as np
import torch
from safetensors.numpy import load_file
from sentence_transformers import SentenceTransformer
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()  # the XLM-R layout model has no pooler weights: ST's warning is noise here

WORDS = ("the of and to in is was for on that with as by at from his an were are which this be or had not "
         "first one their its new after who they have her she two been other when there all during into school "
         "time may years more most only over city some world would where later up such used many can state about "
         "national out known university united then made").split()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def corpus_current(n, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = int(min(400, max(8, math.exp(rng.gauss(3.6, 0.9)))))
        out.append(" ".join(rng.choice(WORDS) for _ in range(k)).capitalize() + ".")
    return out


def vocabulary():
    """Whole words of all-MiniLM-L6-v2's WordPiece vocabulary (the fetched model), else of WORDS."""
    path = os.path.join(ROOT, "fixtures/external/all-MiniLM-L6-v2/vocab.txt")
    if not os.path.exists(path):
        return WORDS
    with open(path, encoding="utf-8") as f:
        words = [w.strip() for w in f]
    return [w for w in words if w.isalpha() and w.isascii() and len(w) > 1 and not w.startswith("[")]


def corpus_varied(n, seed=1):
    rng = random.Random(seed)
    vocab = vocabulary()
    # Zipf-like: rank r drawn with weight 1/(r+10), ranks shuffled so frequent words are not alphabetical.
    order = list(range(len(vocab)))
    rng.shuffle(order)
    weights = [1.0 / (r + 10) for r in range(len(vocab))]
    out = []
    for _ in range(n):
        k = rng.randint(150, 400) if rng.random() < 0.15 else int(min(400, max(8, math.exp(rng.gauss(3.2, 0.8)))))
        words = [vocab[order[i]] for i in rng.choices(range(len(vocab)), weights, k=k)]
        for j in range(len(words)):
            u = rng.random()
            if u < 0.06:
                words[j] = words[j].capitalize()
            elif u < 0.08:
                words[j] = str(rng.randint(0, 20000))
            elif u < 0.13:
                words[j] += rng.choice([",", ".", ";", ":", "?", "!"])
        out.append(" ".join(words).capitalize() + ".")
    return out


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or "unknown CPU"


def busy_warning():
    """Other work on the machine skews the ratio (PyTorch's OpenMP threads suffer more from sharing): say so."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return
    if load > 1.0:
        print(f"WARNING: load average {load:.1f} before the runs on {os.cpu_count()} CPUs: the machine is not quiet, so "
              "the rates and the ratio are not reliable; report them as contended")


def make_xlmr_layout(dest):
    """An XLM-R in bge-m3's layout with MiniLM's layer sizes; tokenizer and ST files from tiny-xlmr-spm."""
    from transformers import XLMRobertaConfig, XLMRobertaModel
    src = os.path.join(ROOT, "fixtures/models/tiny-xlmr-spm")
    shutil.copytree(src, dest)
    for f in ("model.safetensors", "colbert_linear.pt", "sparse_linear.pt"):
        os.remove(os.path.join(dest, f))
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    cfg.update(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536, initializer_range=0.02)
    torch.manual_seed(0)
    model = XLMRobertaModel(XLMRobertaConfig(**cfg), add_pooling_layer=False).eval()
    model.save_pretrained(dest, safe_serialization=True)
    with open(os.path.join(dest, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": 256, "do_lower_case": False}, f)
    return dest


def make_modernbert_layout(dest):
    """ModernBERT-base's shape, random weights (scripts/make_modernbert_model.py)."""
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts/make_modernbert_model.py"), "--out", dest, "--std", "0.02",
                    "--max-seq-length", "512", "--pooling", "mean", "--seed", "3"], check=True, stdout=subprocess.DEVNULL)
    return dest


def make_qwen3_layout(dest):
    """Qwen3-Embedding-0.6B's proportions at half its width, random weights (scripts/make_decoder_model.py)."""
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts/make_decoder_model.py"), "--out", dest, "--kind", "qwen3",
                    "--hidden", "512", "--layers", "8", "--heads", "8", "--kv-heads", "4", "--head-dim", "128",
                    "--intermediate", "1536", "--theta", "1000000", "--std", "0.02", "--pooling", "lasttoken",
                    "--max-seq-length", "512", "--seed", "5"], check=True, stdout=subprocess.DEVNULL)
    return dest


def time_pytorch(model, texts):
    c0, t0 = time.process_time(), time.perf_counter()
    st = SentenceTransformer(model, device="cpu")
    t1 = time.perf_counter()
    emb = st.encode(texts, batch_size=32, convert_to_numpy=True)
    t2, c2 = time.perf_counter(), time.process_time()
    return t1 - t0, t2 - t1, (c2 - c0) / (t2 - t0), emb


def time_embcheck(binary, model, inp, out, threads):
    cmd = [binary, "embed", "--model", model, "--pipeline", "sentence-transformers", "--input", inp, "--output", out,
           "--batch-size", "32"] + (["--threads", str(threads)] if threads else [])
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu / wall, load_file(out)["embeddings"]


def agreement(a, e):
    a, e = a.astype(np.float64), e.astype(np.float64)
    cos = (a * e).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(e, axis=1))
    rel = np.linalg.norm(a - e, axis=1) / np.linalg.norm(e, axis=1)
    mabs = np.abs(a - e).max()
    ok = bool(np.isfinite(a).all() and cos.min() >= 1 - 1e-6 and rel.max() <= 1e-5 and mabs <= 1e-4)
    return ok, cos.min(), rel.max(), mabs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "fixtures/external/all-MiniLM-L6-v2"))
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="both sides (default: every logical CPU)")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/embcheck"))
    ap.add_argument("--corpus", choices=["current", "varied", "both"], default="both")
    ap.add_argument("--xlmr-layout", action="store_true", help="benchmark an XLM-R in bge-m3's layout instead")
    ap.add_argument("--modernbert-layout", action="store_true", help="benchmark a ModernBERT of ModernBERT-base's shape instead")
    ap.add_argument("--qwen3-layout", action="store_true", help="benchmark a Qwen3 of Qwen3-Embedding-0.6B's proportions instead")
    a = ap.parse_args()
    threads = a.threads or os.cpu_count()
    torch.set_num_threads(threads)
    tmp = tempfile.mkdtemp()
    try:
        if a.xlmr_layout:
            model, name = make_xlmr_layout(os.path.join(tmp, "xlmr-m3-layout")), "XLM-R in bge-m3 layout (384x6, random weights)"
        elif a.modernbert_layout:
            model = make_modernbert_layout(os.path.join(tmp, "modernbert-base-layout"))
            name = "ModernBERT-base shape (768x22, window 128, global every 3rd; random weights)"
        elif a.qwen3_layout:
            model = make_qwen3_layout(os.path.join(tmp, "qwen3-embedding-layout"))
            name = "Qwen3 of Qwen3-Embedding-0.6B's proportions (512x8, 8 heads on 4 KV heads of 128; random weights)"
        else:
            model, name = a.model, os.path.basename(a.model.rstrip("/"))
        import sentence_transformers
        print(f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; threads: {threads} (torch) / {threads} (embcheck)")
        busy_warning()
        print(f"model: {name}; torch {torch.__version__}, sentence-transformers {sentence_transformers.__version__}; "
              f"{a.repeat} repetitions, median (fastest)")
        failed = False
        corpora = [("current", corpus_current), ("varied", corpus_varied)]
        for cname, make in corpora:
            if a.corpus not in (cname, "both"):
                continue
            texts = make(a.texts)
            inp = os.path.join(tmp, f"{cname}.jsonl")
            with open(inp, "w") as f:
                for t in texts:
                    f.write(json.dumps({"text": t}) + "\n")
            st = SentenceTransformer(model, device="cpu")
            tokens = int(st.tokenize(texts)["attention_mask"].sum())
            del st
            py, rs = [], []
            for _ in range(a.repeat):
                load, enc, busy_py, emb_py = time_pytorch(model, texts)
                py.append((load + enc, load, enc, busy_py))
                wall, busy_rs, emb_rs = time_embcheck(a.binary, model, inp, os.path.join(tmp, "out.safetensors"), a.threads)
                rs.append((wall, busy_rs))
            ok, cmin, rmax, amax = agreement(emb_rs, emb_py)
            failed |= not ok
            med = lambda xs, i: statistics.median(x[i] for x in xs)
            best = lambda xs, i: min(x[i] for x in xs)
            py_t, rs_t = med(py, 0), med(rs, 0)
            print(f"\ncorpus {cname}: {len(texts)} texts, {tokens} tokens (after truncation)")
            print(f"  PyTorch  load + encode {py_t:6.2f} s ({best(py, 0):.2f})  = load {med(py, 1):.2f} + encode {med(py, 2):.2f};"
                  f" {tokens / py_t:7.0f} tokens/s; cores busy {med(py, 3):.2f}")
            print(f"  embcheck whole process {rs_t:6.2f} s ({best(rs, 0):.2f});{'':29}"
                  f"{tokens / rs_t:7.0f} tokens/s; cores busy {med(rs, 1):.2f}")
            print(f"  ratio embcheck / PyTorch: {py_t / rs_t:.2f}x (fastest runs: {best(py, 0) / best(rs, 0):.2f}x)")
            print(f"  outputs {'agree' if ok else 'DISAGREE'} within the f32 parity tolerance: min cosine {cmin:.9f}, "
                  f"max rel L2 {rmax:.3e}, max abs {amax:.3e}")
        sys.exit(1 if failed else 0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
