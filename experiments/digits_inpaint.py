"""Digits inpainting with a trained checkpoint: the bottom half of test digits is hidden and filled
in by SMC imputation (default) and by the paper's replacement method.

    python experiments/digits_inpaint.py --ckpt outputs/digits/checkpoints/last.ckpt

Writes a PNG grid under --out: rows = original, masked, SMC, replacement.
"""
from __future__ import annotations

from pathlib import Path

import torch

import sde_score
from sde_score.benchmarks import reconstruction_args, smc_and_replacement
from sde_score.data import DigitsDataModule
from sde_score.module import ScoreModule
from sde_score.plotting import save_image_grid


def main(argv=None) -> Path:
    args = reconstruction_args(__doc__, argv)
    module = ScoreModule.load(args.ckpt)
    dm = DigitsDataModule(seed=args.seed)
    x = dm.dequantized("test")[: args.num_images]
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[:, :4] = True  # top half known
    rows = [x, torch.where(mask, x, torch.full_like(x, -1.0))]
    rows += smc_and_replacement(lambda method, **kw: sde_score.impute(module, x, mask, method=method,
                                                                      **kw), args)
    grid = dm.scaler.to_data(torch.cat(rows))
    path = Path(args.out) / "digits_inpaint.png"
    save_image_grid(path, grid, nrow=args.num_images,
                    title="original / top half known / SMC / replacement")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
