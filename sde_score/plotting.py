"""PNG pictures of samples: 2-D scatter plots and image grids (written atomically)."""
from __future__ import annotations

import math
from typing import Optional

import torch

from .io import PathLike, atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display on servers / CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def log_log(ax, xlabel: str, ylabel: str) -> None:
    """Log scales on both axes, with labels."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def save_figure(fig, path: PathLike, dpi: int = 100) -> None:
    """Lay out ``fig``, write it as a PNG atomically and close it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)


def save_scatter(path: PathLike, samples: torch.Tensor, reference: Optional[torch.Tensor] = None,
                 title: str = "", lim: Optional[float] = None) -> None:
    """Scatter 2-D ``samples`` (N, 2) over optional ``reference`` points into a PNG."""
    if samples.dim() != 2 or samples.shape[1] != 2:
        raise ValueError(f"save_scatter needs samples of shape (N, 2), got {tuple(samples.shape)}")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    if reference is not None:
        r = reference.detach().cpu()
        ax.scatter(r[:, 0], r[:, 1], s=1, alpha=0.3, c="tab:gray", label="data")
    s = samples.detach().cpu()
    ax.scatter(s[:, 0], s[:, 1], s=1, alpha=0.5, c="tab:blue", label="samples")
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(loc="upper right", markerscale=8)
    save_figure(fig, path)


def save_image_grid(path: PathLike, images: torch.Tensor, nrow: Optional[int] = None,
                    value_range: tuple = (0.0, 1.0), title: str = "") -> None:
    """Tile images (N, C, H, W) with C in {1, 3} into one PNG; values outside ``value_range``
    are shown saturated (the data are not modified)."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"save_image_grid needs images of shape (N, 1|3, H, W), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    lo, hi = value_range
    grid = torch.ones(c, ncol * (h + 1) + 1, nrow * (w + 1) + 1)
    imgs = ((images.detach().cpu().float() - lo) / (hi - lo)).clamp(0, 1)
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[:, 1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = imgs[i]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(2, nrow * 0.6), max(2, ncol * 0.6)), dpi=100)
    ax.imshow(grid.permute(1, 2, 0).squeeze(-1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    save_figure(fig, path)
