"""Digits inpainting with a trained checkpoint: the bottom half of test digits is hidden and filled
in by SMC imputation (default) and by the paper's replacement method.

    python experiments/digits_inpaint.py --ckpt outputs/digits/checkpoints/last.ckpt

Writes a PNG grid under --out: rows = original, masked, SMC, replacement.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import sde_score
from sde_score.data import DigitsDataModule
from sde_score.module import ScoreModule
from sde_score.plotting import save_image_grid


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="outputs/digits/checkpoints/last.ckpt")
    p.add_argument("--num-images", type=int, default=10)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--num-particles", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="experiments/results")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    module = ScoreModule.load(args.ckpt)
    dm = DigitsDataModule(seed=args.seed)
    x = dm.dequantized("test")[: args.num_images]
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, :4] = True  # top half known
    rows = [x, torch.where(mask, x, torch.full_like(x, -1.0))]
    for method, opts in (("smc", dict(num_particles=args.num_particles)), ("replacement", {})):
        rows.append(sde_score.impute(module, x, mask, method=method, steps=args.steps,
                                     generator=torch.Generator().manual_seed(args.seed),
                                     progress=not args.no_progress, **opts))
    grid = dm.scaler.to_data(torch.cat(rows))
    path = Path(args.out) / "digits_inpaint.png"
    save_image_grid(path, grid, nrow=args.num_images,
                    title="original / top half known / SMC / replacement")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
