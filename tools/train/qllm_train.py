"""Trains a byte-level QLLM-style model (docs/qllm.md) on tiny Shakespeare and exports it.

    python3 qllm_train.py --preset qllm-646k --out runs/qllm [--time_budget_s 280]

The model is tools/train/llama.py's Llama with QLLM's options: UTF-8 byte vocabulary (256), LayerNorm,
learned positions, GELU, biases, a separate classifier, the phase gain on the embeddings, 16 learned
memory slots (counted in the 256-slot context: 240 bytes of text per window), LoRA (rank 8, alpha 16) on
q, k, v, o trained together with the base weights as QLLM does (lora_train_only off), and QLLM's
coherence regulariser on the phases. Export merges the adapters into the dense weights (the default of
docs/qllm.md); --keep-lora also writes NAME-lora.qtf with them kept apart (same logits). Data: the bytes
of input.txt, first 90% train, last 10% validation (the char models' split: the text is ASCII, so a
byte is a char). AdamW, warmup then cosine to min_lr over the wall-clock budget, clip 1.0, dropout,
best validation weights exported; summary NAME.json.
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

import data
from llama import Llama, LlamaConfig, byte_tokens, export_qtf, merge_lora

QLLM = dict(vocab_size=256, n_heads=4, context=256, norm="layernorm", positions="learned", activation="gelu",
            linear_bias=1, tied_embeddings=0, phase_rotation=1, memory_tokens=16, lora_rank=8, lora_alpha=16.0,
            lora_targets=["q", "k", "v", "o"], dropout=0.1)
PRESETS = {
    # as many parameters as shakespeare-dense (636,160): d 128, L 3, d_ff 448 -> 646,208 after merging
    "qllm-646k": dict(QLLM, d_model=128, n_layers=3, n_kv_heads=4, d_ff=448),
    # as many as shakespeare-qtf (114,688) / shakespeare-tt8 (109,696): d 48, L 3, d_ff 160 -> 113,280
    "qllm-113k": dict(QLLM, d_model=48, n_layers=3, n_kv_heads=4, d_ff=160),
}


def params_merged(cfg):
    m = Llama(LlamaConfig(**{**cfg, "lora_rank": 0}))
    return sum(p.numel() for p in m.parameters())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True)
    ap.add_argument("--name")
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min_lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight_decay", type=float, default=0.1)
    ap.add_argument("--coherence", type=float, default=0.01, help="weight of QLLM's phase coherence loss")
    ap.add_argument("--time_budget_s", type=float, default=280)
    ap.add_argument("--max_steps", type=int, default=1000000)
    ap.add_argument("--eval_every", type=int, default=250)
    ap.add_argument("--eval_iters", type=int, default=10)
    ap.add_argument("--keep-lora", action="store_true")
    ap.add_argument("--seed", type=int, default=1337)
    args = ap.parse_args()
    name = args.name or "shakespeare-" + args.preset
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True

    path = data.data_path(args.data)
    raw = np.frombuffer(open(path, "rb").read(), dtype=np.uint8).astype(np.int64)
    train_ids, val_ids = data.split(raw)
    cfg = LlamaConfig(**PRESETS[args.preset])
    T = cfg.context - cfg.memory_tokens  # text bytes per window: the memory slots share the context
    model = Llama(cfg).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and n != "memory"]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or n == "memory"]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(args.seed)

    def batch(ids, g):
        ix = torch.randint(len(ids) - T - 1, (args.batch,), generator=g).tolist()
        x = torch.stack([torch.from_numpy(ids[i:i + T]) for i in ix])
        y = torch.stack([torch.from_numpy(ids[i + 1:i + 1 + T]) for i in ix])
        return x.to(device), y.to(device)

    @torch.no_grad()
    def validate():
        model.eval()
        g = torch.Generator().manual_seed(1234)
        losses = []
        for _ in range(args.eval_iters):
            x, y = batch(val_ids, g)
            losses.append(F.cross_entropy(model(x)[0].reshape(-1, 256), y.reshape(-1)).item())
        model.train()
        return float(np.mean(losses))

    print("%s: %d parameters while training (LoRA apart), %d after merging; %d train / %d val bytes" % (
        name, sum(p.numel() for p in model.parameters()), params_merged(PRESETS[args.preset]), len(train_ids),
        len(val_ids)), flush=True)
    start, step, best, best_state, log = time.time(), 0, float("inf"), None, []
    model.train()
    while step < args.max_steps:
        elapsed = time.time() - start
        if elapsed > args.time_budget_s:
            break
        progress = min(1.0, max(step / args.max_steps, elapsed / args.time_budget_s))
        lr = args.lr * (step + 1) / args.warmup if step < args.warmup else \
            args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * progress))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batch(train_ids, gen)
        logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))
        total = loss + args.coherence * model.coherence_loss()
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % args.eval_every == 0:
            v = validate()
            log.append({"step": step, "train_loss": loss.item(), "val_loss": v, "lr": lr, "s": round(time.time() - start, 1)})
            print(json.dumps(log[-1]), flush=True)
            if v < best:
                best, best_state = v, {k: t.detach().clone() for k, t in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    final = validate()
    model = model.cpu().eval()
    prov = {"created_by": "tools/train/qllm_train.py --preset %s (torch %s, %s)" % (
                args.preset, torch.__version__, torch.cuda.get_device_name(0) if device == "cuda" else "cpu"),
            "data_sha256": data.sha256_file(path), "train_steps": step, "train_bytes": step * args.batch * T,
            "val_loss": final, "lora": "rank %d alpha %g on %s, merged at export" % (
                cfg.lora_rank, cfg.lora_alpha, ",".join(cfg.lora_targets))}
    if args.keep_lora:
        export_qtf(model, os.path.join(args.out, name + "-lora.qtf"), byte_tokens(), prov, tokenizer_type="byte")
    merge_lora(model)
    export_qtf(model, os.path.join(args.out, name + ".qtf"), byte_tokens(), prov, tokenizer_type="byte")
    summary = {"name": name, "preset": args.preset, "config": PRESETS[args.preset], "steps": step,
               "seconds": round(time.time() - start, 1), "best_val_loss": best, "final_val_loss": final,
               "params_merged": params_merged(PRESETS[args.preset]), "train_bytes": step * args.batch * T,
               "args": vars(args), "log": log}
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(summary, f, indent=1)
    print("done: %s val %.4f after %d steps" % (name, final, step), flush=True)


if __name__ == "__main__":
    main()
