"""The adaptive reverse-SDE sampler and the Brownian path it rejects steps on."""
import math

import pytest
import torch

from sde_score import get_sde, get_target, sample
from sde_score.metrics import mode_weight_tv, tv_floor


def test_adaptive_sde_tolerance():
    target, sde = get_target("ring8"), get_sde("vp")
    x, info = sample(target.score_fn(sde), sde, "sde_adaptive", rtol=1e-3, shape=(4000, 2),
                     generator=torch.Generator().manual_seed(3), progress=False, return_info=True)
    assert mode_weight_tv(target, x) < 4 * tv_floor(target, 4000) and info.nfe < 2000


def test_brownian_path_survives_rejections():
    # reject every full step whose increment is large and redo it in halves: with fresh noise on the
    # retry the accepted path is too tame (variance 0.54 t); the bridge keeps it exactly N(0, t)
    from sde_score.sampling.brownian import BrownianPath

    B, f64 = 20000, dict(dtype=torch.float64)
    path = BrownianPath(torch.zeros(B, 1, **f64), torch.Generator().manual_seed(0), tol=1e-12)
    t, h, total = torch.zeros(B, **f64), torch.full((B,), 0.25, **f64), torch.zeros(B, 1, **f64)
    for _ in range(40):
        step = torch.minimum(h, 1 - t)
        w, used = path.increment(step)
        accept = (step > 0) & ((w[:, 0].abs() < 0.8 * step.sqrt()) | (step < 0.25))
        total += torch.where(accept[:, None], w, torch.zeros_like(w))
        t = torch.where(accept, t + step, t)
        path.advance(accept, used)
        on_grid = (4 * t - (4 * t).round()).abs() < 1e-9
        h = torch.where(accept & on_grid, torch.full_like(h, 0.25), torch.full_like(h, 0.125))
    assert torch.allclose(t, torch.ones_like(t))
    var, se = float(total.var()), math.sqrt(2 / B)
    assert abs(var - 1) < 4 * se and abs(float(total.mean())) < 4 / math.sqrt(B), var


@pytest.mark.parametrize("sde_name,opts", [("ve", dict()), ("vp", dict()), ("vp", dict(atol=1e-3))])
def test_adaptive_sde_mode_weights(sde_name, opts):
    # tighter tolerances mean more rejections: with fresh noise on rejection TV was 0.06-0.18 here
    # (floor 0.014 at 5000 samples); with the Brownian bridge 0.011-0.019
    target, n = get_target("ring8"), 5000
    sde = get_sde(sde_name)
    x = sample(target.score_fn(sde), sde, "sde_adaptive", shape=(n, 2), generator=torch.Generator().manual_seed(4),
               progress=False, **opts)
    assert mode_weight_tv(target, x) < 3 * tv_floor(target, n)
