"""Per-sample Brownian paths revealed lazily (Levy's bridge construction), for adaptive SDE solvers
whose rejected steps must keep the noise they drew."""
from __future__ import annotations

from typing import Optional, Tuple

import torch


class BrownianPath:
    """Per-sample Brownian increments ahead of each sample's time, revealed lazily by Levy's bridge
    construction.  A rejected step keeps the noise it drew: the retry with a smaller step draws its
    increment from the Brownian bridge to the known value.  Redrawing fresh noise after a rejection
    (as the paper's Algorithm 1 does) favours small increments, since large ones are the rejected
    ones, and biases the mode weights (README has the measurements), the more so with tighter
    tolerances (more rejections)."""

    def __init__(self, like: torch.Tensor, generator: Optional[torch.Generator], tol: float) -> None:
        self.d = like.new_zeros(like.shape[0], 1)  # segment durations, earliest first; 0 = empty slot
        self.w = like.new_zeros(like.shape[0], 1, like[0].numel())  # their increments
        self.generator, self.tol = generator, tol

    def _noise(self, rows: int) -> torch.Tensor:
        w = self.w
        return torch.randn((rows, w.shape[2]), generator=self.generator, device=w.device, dtype=w.dtype)

    def _shift(self, offset: torch.Tensor, start: torch.Tensor) -> None:
        """Move the segments at index >= start[b] by offset[b] columns (+1: open a slot; -m: drop m)."""
        cols = torch.arange(self.d.shape[1] + 1, device=self.d.device)[None]
        src = torch.where(cols >= start[:, None] + offset.clamp(min=0)[:, None], cols - offset[:, None], cols)
        valid = (src >= 0) & (src < self.d.shape[1])
        src = src.clamp(0, self.d.shape[1] - 1)
        self.d = self.d.gather(1, src) * valid
        self.w = self.w.gather(1, src[..., None].expand(-1, -1, self.w.shape[2])) * valid[..., None]

    def increment(self, h: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """W over [0, h] for each row (B, n), and how many known segments that interval covers (B,)."""
        count = (self.d > 0).sum(1)
        if int(count.max()) >= self.d.shape[1]:
            self._shift(torch.zeros_like(count), torch.full_like(count, self.d.shape[1]))
        extra = h - self.d.sum(1)
        rows = torch.nonzero(extra > self.tol).flatten()
        if rows.numel():  # beyond the known path: a fresh segment
            self.d[rows, count[rows]] = extra[rows]
            self.w[rows, count[rows]] = extra[rows, None].sqrt() * self._noise(rows.numel())
        cum = self.d.cumsum(1)
        inside = (self.d > 0) & (cum - self.d < h[:, None] - self.tol) & (cum > h[:, None] + self.tol)
        split = inside.any(1)
        if bool(split.any()):  # h ends inside a known segment: bridge it at h
            j = inside.float().argmax(1)
            self._shift(split.long(), j + 1)
            rows = torch.nonzero(split).flatten()
            jr = j[rows]
            d, w = self.d[rows, jr], self.w[rows, jr]
            a = h[rows] - (cum[rows, jr] - d)
            wa = (a / d)[:, None] * w + (a * (d - a) / d).sqrt()[:, None] * self._noise(rows.numel())
            self.d[rows, jr], self.w[rows, jr] = a, wa
            self.d[rows, jr + 1], self.w[rows, jr + 1] = d - a, w - wa
        covered = (self.d > 0) & (self.d.cumsum(1) <= h[:, None] + self.tol)
        return (self.w * covered[..., None]).sum(1), covered.sum(1)

    def advance(self, accept: torch.Tensor, used: torch.Tensor) -> None:
        """Accepted rows move past the segments their step used."""
        m = torch.where(accept, used, torch.zeros_like(used))
        self._shift(-m, torch.zeros_like(m))
        keep = max(1, int((self.d > 0).sum(1).max()))
        self.d, self.w = self.d[:, :keep], self.w[:, :keep]
