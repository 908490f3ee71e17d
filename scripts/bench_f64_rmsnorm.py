#!/usr/bin/env python3
"""How far transformers' float64 decoder is from float64: its RMSNorms (LlamaRMSNorm and copies) normalize in
float32 even in a float64 model. A random Qwen3Model (real transformers class, seeded) run on random ids in
float64 as it is, with the RMSNorms kept in float64 (the generator's rmsnorm_in_float64), and in float32; the
relative L2 of the last token's hidden state to the float64 value. The README's figures ("f32 noise, proven in f64").

  .venv-ref/bin/python scripts/bench_f64_rmsnorm.py --layers 28 --hidden 256 --tokens 256 --std 0.2
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate_fixtures as g  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import Qwen3Config, Qwen3Model  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--layers", type=int, default=28)
ap.add_argument("--hidden", type=int, default=256, help="a multiple of 64 (heads of 64)")
ap.add_argument("--tokens", type=int, default=256)
ap.add_argument("--std", type=float, default=0.2, help="initializer_range: the weights' standard deviation")
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
torch.manual_seed(a.seed)
torch.set_num_threads(2)
heads = max(a.hidden // 64, 2)
cfg = Qwen3Config(vocab_size=1000, hidden_size=a.hidden, intermediate_size=3 * a.hidden, num_hidden_layers=a.layers,
                  num_attention_heads=heads, num_key_value_heads=max(heads // 2, 1), head_dim=64,
                  max_position_embeddings=max(4096, a.tokens), initializer_range=a.std)
model = Qwen3Model(cfg).double().eval()
ids = torch.randint(0, 1000, (1, a.tokens))
with torch.no_grad():
    as_is = model(input_ids=ids)[0][0, -1].numpy()
    with g.rmsnorm_in_float64(model):
        exact = model(input_ids=ids)[0][0, -1].numpy()
    f32 = model.float()(input_ids=ids)[0][0, -1].double().numpy()
rel = lambda x: np.linalg.norm(x - exact) / np.linalg.norm(exact)  # noqa: E731
print(f"layers {a.layers}, hidden {a.hidden}, {a.tokens} tokens, std {a.std}: transformers float64 as it is "
      f"{rel(as_is):.2e} from float64, float32 {rel(f32):.2e}")
