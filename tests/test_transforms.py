"""AffineScaler: the data <-> model map and its change of density (nats, bits/dim)."""
import math

import pytest
import torch

from sde_score.transforms import IDENTITY, AffineScaler


def test_round_trip_and_log_jacobian():
    s = AffineScaler(scale=2.0, shift=-1.0)
    x = torch.rand(5, 3)
    torch.testing.assert_close(s.to_data(s.to_model(x)), x)
    # a uniform density on [0, 1]^D in data space is 2^-D on [-1, 1]^D in model space
    logp_model = torch.full((5,), -3 * math.log(2.0))
    torch.testing.assert_close(s.data_logp(logp_model, 3), torch.zeros(5))


def test_bits_per_dim_with_levels():
    # uniform over K levels per dimension: the dequantized density is 1 on [0, 1]^D, so exactly log2 K bits/dim
    s = AffineScaler(scale=2.0, shift=-1.0, num_levels=256)
    logp_model = torch.full((4,), -10 * math.log(2.0))  # D = 10, uniform on [-1, 1]^10
    torch.testing.assert_close(s.bits_per_dim(logp_model, 10), torch.full((4,), 8.0))
    torch.testing.assert_close(IDENTITY.bits_per_dim(torch.tensor([-math.log(2.0)]), 1), torch.tensor([1.0]))


@pytest.mark.parametrize("kwargs,match", [(dict(scale=0.0), "scale must be non-zero"),
                                          (dict(scale=float("nan")), "scale must be finite"),
                                          (dict(num_levels=1), "num_levels must be an integer >= 2, got 1")])
def test_bad_scalers(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AffineScaler(**kwargs)
