"""Sample-quality measures against an exact mixture, and mean +- standard error."""
import math

import pytest
import torch

from sde_score import GaussianMixture, get_target
from sde_score.benchmarks import load_yaml
from sde_score.metrics import log_density_gap, mean_se, mode_moments, mode_weight_tv, mode_weights, tv_floor


def test_metrics_on_true_samples_are_at_the_floor():
    gm = get_target("ring8")
    n = 10000
    x = gm.sample(n, torch.Generator().manual_seed(6))
    assert mode_weight_tv(gm, x) < 3 * tv_floor(gm, n)
    torch.testing.assert_close(mode_weights(gm, x).sum(), torch.tensor(1.0, dtype=torch.float64))
    means, covs = mode_moments(gm, x)
    assert (means - gm.means).abs().max() < 0.05 and (covs - gm.covs).abs().max() < 0.02
    ref = gm.sample(n, torch.Generator().manual_seed(7))
    assert abs(log_density_gap(gm, x, ref)) < 0.05
    # a sampler that forgets the weights is far above the floor
    uniform = GaussianMixture(torch.ones(8), gm.means, gm.covs).sample(n, torch.Generator().manual_seed(8))
    assert mode_weight_tv(gm, uniform) > 10 * tv_floor(gm, n)


def test_mean_se():
    m, se = mean_se(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert m == 2.5 and se == pytest.approx(math.sqrt(5 / 3) / 2)
    with pytest.raises(ValueError, match="at least 2 values, got 1"):
        mean_se(torch.tensor([1.0]))


def test_load_yaml(tmp_path):
    (tmp_path / "a.yaml").write_text("model: {sde: vp}\n")
    assert load_yaml(tmp_path / "a.yaml") == {"model": {"sde": "vp"}}
    (tmp_path / "b.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match="is not a YAML mapping"):
        load_yaml(tmp_path / "b.yaml")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_yaml(tmp_path / "none.yaml")
