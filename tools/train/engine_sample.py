"""Sequences sampled from a model by the engine (qtf's Python binding): the original's own distribution,
data for distillation (budget.py's healing, compress_llama.py's training and held-out sets). Imports
nothing from this directory, so both can import it."""
import numpy as np


def sample_engine(binding, model_path, n, T, seed, bos):
    """n sequences of T ids: bos, then tokens drawn at temperature 1 from the engine's full softmax. binding is
    the `qtf` package; returns an int64 array [n, T]."""
    m = binding.Model(model_path)
    rng = np.random.default_rng(seed)
    out = np.zeros((n, T), dtype=np.int64)
    for i in range(n):
        ctx = m.context(n_ctx=T)
        tok = bos
        out[i, 0] = bos
        for j in range(1, T):
            ctx.decode([tok])
            z = ctx.logits.astype(np.float64)
            p = np.exp(z - z.max())
            tok = int(rng.choice(len(p), p=p / p.sum()))
            out[i, j] = tok
        ctx.close()
    m.close()
    return out
