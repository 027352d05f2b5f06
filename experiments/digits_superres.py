"""Super-resolution of test digits with a trained checkpoint: each 8x8 digit is observed only through its
2x2 average pooling (4x4), and ``solve_inverse`` samples 8x8 digits that pool to exactly that.

    python experiments/digits_superres.py --ckpt outputs/digits_cond/checkpoints/last.ckpt

A class-conditional model is used through its unconditional (null-label) score.  Writes digits_superres.png
under --out: rows = original, observed 4x4 (shown at 8x8), SMC reconstruction, replacement reconstruction;
prints the largest |pool(x) - y| of the reconstructions (data space, 0 up to float round-off).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.nn import functional as F

import sde_score
from sde_score.benchmarks import reconstruction_args, smc_and_replacement
from sde_score.data import DigitsDataModule
from sde_score.module import ScoreModule
from sde_score.plotting import save_image_grid


class Pool2x2:
    """y = A x: 2x2 average pooling of (N, 1, 8, 8) images, flattened to (N, 16)."""

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2).flatten(1)


def main(argv=None) -> Path:
    args = reconstruction_args(__doc__, argv, default_ckpt="outputs/digits_cond/checkpoints/last.ckpt")
    module = ScoreModule.load(args.ckpt)
    dm = DigitsDataModule(seed=args.seed)
    x = dm.dequantized("test")[: args.num_images]
    op = Pool2x2()
    y = op.A(x)  # model space: pooling is linear, so it commutes with the affine data <-> model map
    rows = [x, F.interpolate(y.reshape(-1, 1, 4, 4), scale_factor=2, mode="nearest")]
    outs = smc_and_replacement(lambda method, **kw: sde_score.solve_inverse(module, y, op, method=method, **kw), args)
    worst = max(float((op.A(dm.scaler.to_data(out)) - op.A(dm.scaler.to_data(x))).abs().max()) for out in outs)
    rows += outs
    grid = dm.scaler.to_data(torch.cat(rows))
    path = Path(args.out) / "digits_superres.png"
    save_image_grid(path, grid, nrow=args.num_images,
                    title="original / observed 2x2 means / SMC / replacement")
    print(f"largest |pool(x) - y| of the reconstructions (data space): {worst:.2e}")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
