"""Lightning callbacks: the prediction writer (samples.npz + PNG, atomic, DDP-gathered), the sample picture
logged after validation, and the EMA of the weights with the paper code's warm-up."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, List, Optional, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter, WeightAveraging

from .io import atomic_path, check_writable_dir
from .plotting import save_image_grid, save_scatter


def warmup_ema_decay(decay: float, num_updates) -> float:
    """The decay of the n-th EMA update with score_sde's warm-up (its ExponentialMovingAverage with
    use_num_updates): min(decay, (1 + n) / (10 + n))."""
    n = float(num_updates)
    return min(decay, (1 + n) / (10 + n))


class WarmupEMA(WeightAveraging):
    """Exponential moving average of the weights after every optimizer step, with the paper code's warm-up
    (``warmup_ema_decay``): a plain EMA still holds decay^n of the initial weights (30 % after 1200 steps at
    0.999), which ruins short or time-limited runs.  Checkpoints, validation and prediction use the average
    as with Lightning's ``EMAWeightAveraging``."""

    def __init__(self, decay: float = 0.999, device: Optional[Any] = None, use_buffers: bool = True) -> None:
        if not 0.0 < float(decay) < 1.0:
            raise ValueError(f"decay must lie in (0, 1), got {decay!r}")
        self.decay = float(decay)

        def avg_fn(averaged: torch.Tensor, current: torch.Tensor, num_averaged) -> torch.Tensor:
            d = warmup_ema_decay(self.decay, num_averaged)
            return d * averaged + (1 - d) * current

        super().__init__(device=device, use_buffers=use_buffers, avg_fn=avg_fn)


def _datamodule(trainer: "pl.Trainer"):
    return getattr(trainer, "datamodule", None)


def save_samples_picture(path: str, x: torch.Tensor, datamodule=None, title: str = "") -> None:
    """Scatter over the training data for 2-D samples, an image grid (data space) for images."""
    x = x.detach().cpu()
    if x.dim() == 2 and x.shape[1] == 2:
        ref = None
        if datamodule is not None and getattr(datamodule, "train", None) is not None:
            ref = datamodule.train[: len(x)]
        save_scatter(path, x, ref, title=title)
    elif x.dim() == 4:
        scaler = getattr(datamodule, "scaler", None)
        imgs = scaler.to_data(x) if scaler is not None else x
        save_image_grid(path, imgs[:256], title=title)
    else:
        raise ValueError(f"no picture for samples of shape {tuple(x.shape)}")


def log_samples_picture(trainer: "pl.Trainer", module: "pl.LightningModule", x: torch.Tensor, name: str) -> None:
    """Write samples as a PNG under the run's log dir and hand it to the logger (wandb) if it can show it."""
    log_dir = Path(trainer.log_dir or trainer.default_root_dir) / "samples"
    path = log_dir / f"{name}.png"
    save_samples_picture(str(path), x, _datamodule(trainer), title=name)
    for logger in trainer.loggers:
        if hasattr(logger, "log_image"):
            logger.log_image(key="samples", images=[str(path)], step=trainer.global_step)


def _publish(staged: Path, path: Path) -> None:
    os.replace(staged, path)


class PredictionWriter(BasePredictionWriter):
    """Writes ``samples.npz`` (model and data space) and ``samples.png`` into ``output_dir``.

    Every rank writes its shard; rank 0 merges them in batch order after a barrier and removes the
    shards.  All files are written atomically (temporary file + rename), the npz/png pair together."""

    def __init__(self, output_dir: str = "outputs/predict", write_interval: str = "epoch") -> None:
        super().__init__(write_interval)
        self.output_dir = Path(output_dir)

    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if stage == "predict" and trainer.is_global_zero:  # not after all the sampling
            check_writable_dir(self.output_dir, "the prediction output_dir")

    def write_on_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule",
                           predictions: Sequence[Any], batch_indices: Optional[Sequence[Any]]) -> None:
        preds: List[dict] = list(predictions[0] if predictions and isinstance(predictions[0], list) else predictions)
        shard = {"index": torch.tensor([p["index"] for p in preds], dtype=torch.long),
                 "samples": torch.cat([p["samples"].cpu() for p in preds]) if preds else torch.empty(0),
                 "sizes": torch.tensor([len(p["samples"]) for p in preds], dtype=torch.long)}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        rank, world = trainer.global_rank, trainer.world_size
        shard_path = self.output_dir / f".shard{rank}.pt"
        with atomic_path(shard_path) as tmp:
            torch.save(shard, tmp)
        trainer.strategy.barrier()
        if rank == 0:
            self._merge(trainer, [self.output_dir / f".shard{r}.pt" for r in range(world)])
        trainer.strategy.barrier()

    def _merge(self, trainer: "pl.Trainer", shard_paths: List[Path]) -> None:
        pieces = []
        for p in shard_paths:
            s = torch.load(p, weights_only=True)
            for idx, chunk in zip(s["index"].tolist(), torch.split(s["samples"], s["sizes"].tolist())):
                pieces.append((idx, chunk))
            os.unlink(p)
        pieces.sort(key=lambda item: item[0])
        x = torch.cat([c for _, c in pieces])
        dm = _datamodule(trainer)
        scaler = getattr(dm, "scaler", None)
        data = scaler.to_data(x) if scaler is not None else x
        # The pair is published together: both are staged first, the old picture goes before the new
        # samples.npz lands, so a kill at any point never leaves a new samples.npz beside an old samples.png.
        npz, png = self.output_dir / "samples.npz", self.output_dir / "samples.png"
        staged_png = None
        try:
            with atomic_path(npz) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, samples=x.numpy(), samples_data_space=data.numpy())
                staged_png = tmp.with_suffix(".png")
                save_samples_picture(str(staged_png), x, dm, title=f"{len(x)} samples")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(png)
            _publish(staged_png, png)
        finally:
            if staged_png is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(staged_png)
