"""Offline sample quality: streaming feature statistics, FID and KID with a pluggable feature extractor.

- ``FeatureStats``: running mean and covariance of features (float64 sums, batch by batch), optionally the
  features themselves (for KID); saved to and loaded from ``.npz`` (``mu``, ``sigma``, ``n``, ``extractor``,
  optional ``features``), the reference statistics of a dataset.
- ``frechet_distance``: ||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1^1/2 S_2 S_1^1/2)^1/2), the 2-Wasserstein
  distance between Gaussians (Heusel et al. 2017, eq. 6; Dowson & Landau 1982), computed from symmetric
  eigen-decompositions.
- ``kernel_inception_distance``: the unbiased MMD^2 with the cubic polynomial kernel
  k(x, y) = (x.y / d + 1)^3, averaged over random subsets (Binkowski et al. 2018, Sec. 3.2).
- ``evaluate``: FID and KID of samples against reference statistics, with both sample counts recorded.

Feature extractors (``sde_score.features``): any callable images (B, C, H, W) in [0, 1] -> (B, F).  FID
values are only comparable at equal sample counts and with the same extractor: both are recorded.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Tuple, Union

import numpy as np
import torch

from .checks import check_finite, check_int
from .io import atomic_path

Extractor = Callable[[torch.Tensor], torch.Tensor]


class FeatureStats:
    """Streaming mean and covariance of (N, F) features; ``keep_features`` also keeps them (for KID)."""

    def __init__(self, dim: Optional[int] = None, keep_features: bool = False, extractor: str = "") -> None:
        self.n, self.dim, self.extractor = 0, dim, extractor
        self._sum: Optional[torch.Tensor] = None
        self._outer: Optional[torch.Tensor] = None
        self.features = [] if keep_features else None

    def update(self, feats: torch.Tensor) -> "FeatureStats":
        """Add a batch of features (B, F)."""
        feats = check_finite("features", torch.as_tensor(feats)).detach().to("cpu", torch.float64)
        if feats.dim() != 2 or (self.dim is not None and feats.shape[1] != self.dim):
            raise ValueError(f"features must have shape (B, {self.dim or 'F'}), got {tuple(feats.shape)}")
        if self._sum is None:
            self.dim = feats.shape[1]
            self._sum = torch.zeros(self.dim, dtype=torch.float64)
            self._outer = torch.zeros(self.dim, self.dim, dtype=torch.float64)
        self.n += feats.shape[0]
        self._sum += feats.sum(0)
        self._outer += feats.T @ feats
        if self.features is not None:
            self.features.append(feats)
        return self

    @property
    def mu(self) -> np.ndarray:
        self._need(1)
        return (self._sum / self.n).numpy()

    @property
    def sigma(self) -> np.ndarray:
        """The unbiased covariance (F, F)."""
        self._need(2)
        mean = self._sum / self.n
        return ((self._outer - self.n * torch.outer(mean, mean)) / (self.n - 1)).numpy()

    def all_features(self) -> np.ndarray:
        if self.features is None or not self.features:
            raise ValueError("these statistics kept no features (keep_features=True, or a reference .npz saved "
                             "with its features) and KID needs them")
        return torch.cat(self.features).numpy()

    def _need(self, n: int) -> None:
        if self.n < n:
            raise ValueError(f"feature statistics need at least {n} samples, got {self.n}")

    def save(self, path: Union[str, Path]) -> None:
        """Write ``.npz`` with mu, sigma, n, extractor (and the features if kept), atomically."""
        arrays = dict(mu=self.mu, sigma=self.sigma, n=np.int64(self.n), extractor=np.str_(self.extractor))
        if self.features:
            arrays["features"] = self.all_features().astype(np.float32)

        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: savez adds no suffix
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "FeatureStats":
        with np.load(path, allow_pickle=False) as z:
            missing = {"mu", "sigma", "n"} - set(z.files)
            if missing:
                raise ValueError(f"{str(path)!r} is not a feature-statistics file (lacks {', '.join(sorted(missing))})")
            mu, sigma, n = z["mu"].astype(np.float64), z["sigma"].astype(np.float64), int(z["n"])
            stats = cls(dim=len(mu), keep_features="features" in z.files,
                        extractor=str(z["extractor"]) if "extractor" in z.files else "")
            if "features" in z.files:
                stats.features = [torch.from_numpy(z["features"].astype(np.float64))]
        stats.n = n
        stats._sum = torch.from_numpy(mu * n)
        stats._outer = torch.from_numpy(sigma * (n - 1) + n * np.outer(mu, mu))
        return stats


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    # eigenvalues of a covariance are >= 0; round-off leaves values of order -1e-12 * max
    return (v * np.sqrt(np.maximum(w, 0.0))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2) for PSD S1, S2 (F, F)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs "
                         f"{sigma2.shape}")
    r = _sqrt_psd(sigma1)
    cross = np.linalg.eigvalsh(r @ sigma2 @ r)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2)
                 - 2 * np.sqrt(np.maximum(cross, 0.0)).sum())


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> Tuple[float, float]:
    """KID: mean and standard deviation over ``subsets`` random subsets (of min(subset_size, N_a, N_b) each)
    of the unbiased MMD^2 between features a (N_a, F) and b (N_b, F), cubic polynomial kernel."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"KID needs features (N, F) of equal F, got {a.shape} and {b.shape}")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples on each side, got {len(a)} and {len(b)}")
    check_int("subsets", subsets)
    d, rng = a.shape[1], np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


@torch.no_grad()
def feature_stats(images: Union[torch.Tensor, Iterable[torch.Tensor]], extractor: Extractor,
                  batch_size: int = 256, keep_features: bool = True, name: str = "") -> FeatureStats:
    """Statistics of ``extractor`` features of images (N, C, H, W) in [0, 1] (a tensor or an iterable of
    batches), computed batch by batch."""
    stats = FeatureStats(keep_features=keep_features, extractor=name or type(extractor).__name__)
    batches = images.split(batch_size) if torch.is_tensor(images) else images
    for x in batches:
        stats.update(extractor(x))
    return stats


def evaluate(images: Union[torch.Tensor, Iterable[torch.Tensor]], reference: Union[FeatureStats, str, Path],
             extractor: Extractor, *, batch_size: int = 256, kid_subsets: int = 100, kid_subset_size: int = 1000,
             seed: int = 0) -> Dict[str, float]:
    """FID (and KID when the reference kept its features) of images (N, C, H, W) in [0, 1] against
    reference statistics (or their ``.npz``).  Returns {"fid", "kid", "kid_std", "num_samples",
    "num_reference", "extractor"}: a score without its sample counts cannot be compared."""
    ref = FeatureStats.load(reference) if isinstance(reference, (str, Path)) else reference
    name = type(extractor).__name__
    if ref.extractor and ref.extractor != name:
        raise ValueError(f"the reference statistics were computed with {ref.extractor!r}, not {name!r}")
    stats = feature_stats(images, extractor, batch_size, keep_features=ref.features is not None, name=name)
    if stats.dim != ref.dim:
        raise ValueError(f"features of dimension {stats.dim} against reference statistics of dimension {ref.dim}")
    out = {"fid": frechet_distance(stats.mu, stats.sigma, ref.mu, ref.sigma), "kid": math.nan, "kid_std": math.nan,
           "num_samples": stats.n, "num_reference": ref.n, "extractor": name}
    if ref.features is not None:
        out["kid"], out["kid_std"] = kernel_inception_distance(stats.all_features(), ref.all_features(), kid_subsets,
                                                               kid_subset_size, seed)
    return out
