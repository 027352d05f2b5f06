"""Guidance: score functions of a conditional model or of a model plus a classifier, usable by every sampler.

- ``classifier_free``: s_w(x, t) = s(x, t) + w (s(x, t | y) - s(x, t)) (Ho & Salimans 2022, eq. 6 written
  for scores): w = 1 is the conditional score, w = 0 the unconditional one, w > 1 sharpens toward y.
- ``classifier_guided``: s(x, t) + w grad_x log p_t(y | x) with a noise-conditional classifier
  ``classifier(x, t) -> logits (B, C)`` (Song et al. 2021, Sec. 5, eq. 14; Dhariwal & Nichol 2021):
  at w = 1 with the exact p_t(y | x) it is exactly grad_x log p_t(x | y) (Bayes' rule).
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from .checks import ScoreFn, check_labels, check_number
from .score_model import call_score

Labels = Union[int, torch.Tensor]
Classifier = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def classifier_free(score_fn, labels: Labels, scale: float = 1.0, num_classes: Optional[int] = None) -> ScoreFn:
    """The guided score (x, t) -> s(x, t) + scale (s(x, t, labels) - s(x, t)) of a model that takes
    ``score(x, t, labels)`` and, without labels, gives its unconditional score.  Scale 1 (0) calls only
    the conditional (unconditional) score; otherwise both are evaluated (2 model calls)."""
    scale = check_number("guidance_scale", scale)

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        y = check_labels(labels, x, num_classes)
        if scale == 0:
            return score_fn(x, t)
        cond = call_score(score_fn, x, t, y)
        if scale == 1:
            return cond
        uncond = score_fn(x, t)
        return uncond + scale * (cond - uncond)
    return guided


def classifier_guided(score_fn: ScoreFn, classifier: Classifier, labels: Labels, scale: float = 1.0) -> ScoreFn:
    """score(x, t) + scale grad_x log softmax(classifier(x, t))[labels]: a score function for any sampler.

    ``classifier(x, t)`` returns logits (B, C) of the class of x_t (noise-conditional, e.g.
    ``ClassifierModule`` or ``GaussianMixture.class_logits_fn``); ``labels`` an int or (B,)."""
    scale = check_number("scale", scale)
    if not callable(classifier):
        raise ValueError(f"classifier must be callable as classifier(x, t) -> logits (B, C), got {classifier!r}")

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = score_fn(x, t)
        if scale == 0:
            return s
        with torch.enable_grad():  # samplers run without gradients
            xr = x.detach().requires_grad_(True)
            logits = classifier(xr, t)
            if not torch.is_tensor(logits) or logits.dim() != 2 or logits.shape[0] != x.shape[0]:
                raise ValueError(f"classifier must return logits of shape ({x.shape[0]}, C), got "
                                 f"{tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__}")
            y = check_labels(labels, x, logits.shape[1])
            log_p = torch.log_softmax(logits, dim=1).gather(1, y[:, None]).sum()
            grad, = torch.autograd.grad(log_p, xr)
        return s + scale * grad.to(s.dtype)
    return guided
