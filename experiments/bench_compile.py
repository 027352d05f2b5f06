"""Benchmark ``ScoreModule(compile_net=True)`` (torch.compile of the network) against eager execution:
a training step (DSM loss, backward, Adam) and a sampling evaluation (no_grad forward), per network.

    python experiments/bench_compile.py                 # inductor: minutes on 2 CPU cores (compilation)
    python experiments/bench_compile.py --backend eager # graph capture only: checks the path, no speed-up

Reported: the first compiled call's time (compilation), then the median of --reps timed calls after
--warmup untimed ones, eager and compiled in the same run, and their ratio.  Prints a table and writes
bench_compile.json.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Dict, List

import torch

from sde_score.io import write_json
from sde_score.module import ScoreModule

NETS = {
    "unet_digits": ({"class_path": "sde_score.models.UNet",
                     "init_args": {"data_shape": [1, 8, 8], "channels": [32, 64]}}, "vp", "t"),
    "ncsnpp_digits": ({"class_path": "sde_score.models.NCSNpp",
                       "init_args": {"data_shape": [1, 8, 8], "nf": 32, "ch_mult": [1, 2], "num_res_blocks": 2,
                                     "attn_resolutions": [4], "fir": True, "progressive_input": "residual",
                                     "dropout": 0.0}}, "vp", "t"),
    "ncsnpp_16px": ({"class_path": "sde_score.models.NCSNpp",
                     "init_args": {"data_shape": [3, 16, 16], "nf": 32, "ch_mult": [1, 2, 2], "num_res_blocks": 1,
                                   "attn_resolutions": [8], "fir": True, "progressive_input": "residual",
                                   "sigma_input": True, "centered": False, "dropout": 0.0}}, "ve", "sigma"),
}


def _median_time(fn, warmup: int, reps: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _measure(name: str, compiled: bool, backend: str, batch: int, warmup: int, reps: int, seed: int) -> Dict:
    net, sde, time_input = NETS[name]
    torch.manual_seed(seed)
    module = ScoreModule(net, sde=sde, time_input=time_input, compile_net=backend if compiled else False)
    opt = torch.optim.Adam(module.parameters(), lr=1e-4)
    x = torch.randn(batch, *module.data_shape, generator=torch.Generator().manual_seed(seed))
    t = torch.rand(batch, generator=torch.Generator().manual_seed(seed + 1)) * 0.99 + 0.01

    def train_step():
        opt.zero_grad(set_to_none=True)
        module.loss(module, x, generator=torch.Generator().manual_seed(seed)).mean().backward()
        opt.step()

    def sample_eval():
        with torch.no_grad():
            module(x, t)

    out = {"network": name, "mode": f"compiled ({backend})" if compiled else "eager",
           "params": sum(p.numel() for p in module.net.parameters())}
    for label, fn in (("train", train_step), ("eval", sample_eval)):
        t0 = time.perf_counter()
        fn()
        out[f"{label}_first_s"] = time.perf_counter() - t0
        out[f"{label}_step_s"] = _median_time(fn, warmup, reps)
    return out


def main(argv=None) -> Dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    p.add_argument("--backend", default="inductor", help="torch.compile backend (inductor, eager, aot_eager)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="experiments/results")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    rows: List[Dict] = []
    for name in args.nets:
        eager = _measure(name, False, args.backend, args.batch, args.warmup, args.reps, args.seed)
        comp = _measure(name, True, args.backend, args.batch, args.warmup, args.reps, args.seed)
        for key in ("train", "eval"):
            comp[f"{key}_speedup"] = eager[f"{key}_step_s"] / comp[f"{key}_step_s"]
        rows += [eager, comp]
    print(f"{'network':15s} {'mode':20s} {'params':>9s} {'train 1st s':>11s} {'train step s':>12s} "
          f"{'eval 1st s':>10s} {'eval step s':>11s} {'train x':>8s} {'eval x':>7s}")
    for r in rows:
        print(f"{r['network']:15s} {r['mode']:20s} {r['params']:9d} {r['train_first_s']:11.3f} "
              f"{r['train_step_s']:12.4f} {r['eval_first_s']:10.3f} {r['eval_step_s']:11.4f} "
              f"{r.get('train_speedup', 1.0):8.2f} {r.get('eval_speedup', 1.0):7.2f}")
    result = {"backend": args.backend, "batch": args.batch, "reps": args.reps, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "rows": rows}
    write_json(f"{args.out}/bench_compile.json", result)
    return result


if __name__ == "__main__":
    main()
