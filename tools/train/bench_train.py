"""Training throughput of the reference trainer: tokens/s of forward + backward + AdamW steps.

    python3 bench_train.py [--preset shakespeare-qtf] [--batch 64] [--steps 20] [--model_py OLD/model.py]

--model_py measures another implementation of model.py (e.g. `git show REV:tools/train/model.py`), so
before/after figures come from the same device, batch and config. One JSON line per run.
"""
import argparse
import importlib.util
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="shakespeare-qtf")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--model_py", default=None)
    ap.add_argument("--label", default=None)
    ap.add_argument("--profile", action="store_true", help="also print the top operators of one step (torch.profiler)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    import train
    if args.model_py:
        spec = importlib.util.spec_from_file_location("model_under_test", args.model_py)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    else:
        import model as mod
    cfg, _ = train.parse_sets(args.set, train.PRESETS[args.preset])
    fields = mod.Config.__dataclass_fields__
    cfg = mod.Config(**{k: v for k, v in cfg.to_dict().items() if k in fields})
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    model = mod.QTensorFormer(cfg).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, cfg.vocab_size, (args.batch, cfg.context), device=args.device)
    y = torch.randint(0, cfg.vocab_size, (args.batch, cfg.context), device=args.device)

    def step():
        logits, stats = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    if args.profile:
        from torch.profiler import profile, ProfilerActivity
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
        with profile(activities=acts) as prof:
            step()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
        key = "self_cuda_time_total" if args.device.startswith("cuda") else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=30), file=sys.stderr)
    print(json.dumps({"label": args.label or (args.model_py or "model.py"), "preset": args.preset, "set": args.set,
                      "batch": args.batch, "context": cfg.context, "steps": args.steps,
                      "tokens_per_s": round(args.steps * args.batch * cfg.context / dt),
                      "ms_per_step": round(1000 * dt / args.steps, 1), "device": args.device,
                      "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                      "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
