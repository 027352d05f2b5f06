"""solve_inverse: the SVD reduction of a noise-free linear inverse problem to imputation, against the exact
posterior of a mixture (``GaussianMixture.posterior``)."""
import pytest
import torch

from sde_score import GaussianMixture, get_sde, get_target, solve_inverse

from samplers_helpers import assert_mode_moments


def _image_target():
    g = get_target("gmm16d")
    return GaussianMixture(g.weights, g.means, g.covs, data_shape=(1, 4, 4))


def _pool2x2() -> torch.Tensor:
    """2 x 2 average pooling of a (1, 4, 4) image: super-resolution's observation, (4, 16)."""
    A = torch.zeros(4, 16, dtype=torch.float64)
    for bi in range(2):
        for bj in range(2):
            for di in range(2):
                for dj in range(2):
                    A[bi * 2 + bj, (2 * bi + di) * 4 + 2 * bj + dj] = 0.25
    return A


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_super_resolution_matches_the_exact_posterior(sde_name):
    """A low-resolution observation of a draw: its posterior is one component (weights 0/0/0/1), whose mean and
    covariance on the plane A x = y the samples must reproduce (4.5 SE), exactly satisfying A x = y."""
    target, A, sde = _image_target(), _pool2x2(), get_sde(sde_name)
    y = A @ target.sample(1, torch.Generator().manual_seed(1), dtype=torch.float64).reshape(16)
    post = target.posterior(A, y)
    n = 1000
    x = solve_inverse(target.score_fn(sde), y[None].expand(n, 4).float(), A, sde, data_shape=(1, 4, 4), steps=300,
                      num_particles=8, generator=torch.Generator().manual_seed(0), progress=False)
    assert x.shape == (n, 1, 4, 4)
    assert (x.reshape(n, 16).double() @ A.T - y).abs().max() < 1e-5
    assert post.distance(x.double()).max() < 1e-5
    assert_mode_moments(post.latent, post.coordinates(x.double()), n_se=4.5)


def test_operator_objects_and_matrices_give_the_same_samples():
    target, A, sde = _image_target(), _pool2x2(), get_sde("vp")

    class Pool:
        def A(self, x):
            return torch.nn.functional.avg_pool2d(x, 2).flatten(1)

    y = (A @ target.sample(2, torch.Generator().manual_seed(3), dtype=torch.float64).reshape(2, 16).T).T.float()
    opts = dict(data_shape=(1, 4, 4), steps=30, num_particles=4, progress=False)
    a = solve_inverse(target.score_fn(sde), y, A, sde, generator=torch.Generator().manual_seed(0), **opts)
    b = solve_inverse(target.score_fn(sde), y, Pool(), sde, generator=torch.Generator().manual_seed(0), **opts)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kwargs,match", [
    (dict(noise_std=0.1), "noise-free observations only"),
    (dict(operator=torch.zeros(4, 9)), r"operator must be \(m, 16\)"),
    (dict(operator=torch.zeros(4, 16)), "full row rank"),
    (dict(y=torch.zeros(2, 3)), r"y must have shape \(B, 4\)"),
    (dict(data_shape=None), "give data_shape"),
])
def test_solve_inverse_errors(kwargs, match):
    target, sde = _image_target(), get_sde("vp")
    args = dict(y=torch.zeros(2, 4), operator=_pool2x2(), data_shape=(1, 4, 4))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        solve_inverse(target.score_fn(sde), args.pop("y"), args.pop("operator"), sde, steps=5, progress=False, **args)
