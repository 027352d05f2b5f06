"""Analytic Gaussian-mixture targets with exact perturbed densities and scores.

For every SDE here the kernel is N(alpha(t) x_0, sigma(t)^2 I), so a mixture
p_0 = sum_k w_k N(mu_k, Sigma_k) perturbs to the exact mixture
    p_t = sum_k w_k N(alpha mu_k, alpha^2 Sigma_k + sigma^2 I).
Each Sigma_k = U_k diag(lam_k) U_k^T is diagonalised once, so the perturbed covariances
U_k diag(alpha^2 lam_k + sigma^2) U_k^T are inverted and log-det'ed in O(D) per component at
any noise level, tiny or huge.  All arithmetic is float64; results come back in x's dtype.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

from .checks import check_finite, check_int, check_labels
from .registry import Registry
from .sdes import SDE

TARGETS: Registry[Callable[[], "GaussianMixture"]] = Registry("target")
register_target = TARGETS.register


def get_target(name: str) -> "GaussianMixture":
    """A named exact mixture, e.g. ``get_target("ring8")``; see ``TARGETS.names()``."""
    return TARGETS.get(name)()


class GaussianMixture:
    """sum_k w_k N(mu_k, Sigma_k) in D dimensions, reshaped to ``data_shape`` (prod = D).

    Args:
        weights: (K,) non-negative; normalised to sum to one.
        means: (K, D).
        covs: (K, D, D) symmetric positive definite, or (K, D) diagonals.
        data_shape: shape of one sample, e.g. (1, 8, 8); defaults to (D,).
    """

    def __init__(self, weights, means, covs, data_shape: Optional[Sequence[int]] = None) -> None:
        w = torch.as_tensor(weights, dtype=torch.float64)
        mu = torch.as_tensor(means, dtype=torch.float64)
        cov = torch.as_tensor(covs, dtype=torch.float64)
        if mu.dim() != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(mu.shape)}")
        K, D = mu.shape
        if w.shape != (K,):
            raise ValueError(f"weights must have shape ({K},) to match means, got {tuple(w.shape)}")
        if cov.shape == (K, D):
            cov = torch.diag_embed(cov)
        if cov.shape != (K, D, D):
            raise ValueError(f"covs must have shape ({K}, {D}, {D}) or ({K}, {D}), got {tuple(cov.shape)}")
        for name, v in (("weights", w), ("means", mu), ("covs", cov)):
            check_finite(name, v)
        if bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {w.tolist()}")
        if not torch.allclose(cov, cov.transpose(-1, -2), atol=1e-10):
            raise ValueError("covs must be symmetric")
        lam, U = torch.linalg.eigh(cov)
        if bool((lam <= 0).any()):
            k = int(torch.nonzero((lam <= 0).any(-1))[0])
            raise ValueError(f"covs[{k}] is not positive definite (smallest eigenvalue {lam[k].min().item():.3g})")
        self.data_shape = tuple(data_shape) if data_shape is not None else (D,)
        if math.prod(self.data_shape) != D:
            raise ValueError(f"data_shape {self.data_shape} has {math.prod(self.data_shape)} entries, "
                             f"means have D={D}")
        self.weights, self.means, self.covs = w / w.sum(), mu, cov
        self._lam, self._U = lam, U
        self._chol = torch.linalg.cholesky(cov)
        self._cache: Dict[torch.device, Tuple[torch.Tensor, ...]] = {}

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def _params(self, device: torch.device):
        if device not in self._cache:
            self._cache[device] = tuple(p.to(device) for p in (self.weights, self.means, self._lam, self._U))
        return self._cache[device]

    def _flatten(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, self.data_shape))}), "
                             f"got {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1).to(torch.float64)

    # -- exact densities and scores --------------------------------------------------------------
    def _log_joint(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor):
        """log w_k + log N_k(x; alpha mu_k, alpha^2 Sigma_k + sigma^2 I) (B, K), plus the
        eigen-coordinates y (K, B, D) of x - alpha mu_k and the variances var (K, B or 1, D)."""
        w, mu, lam, U = self._params(x.device)
        alpha, sigma = alpha.to(torch.float64), sigma.to(torch.float64)
        if bool((alpha == alpha[0]).all() and (sigma == sigma[0]).all()):
            alpha, sigma = alpha[:1], sigma[:1]  # samplers share t: one (K, 1, D) variance, not B
        # component-major layout (K, B, D): the rotations are K batched (B, D) @ (D, D) products
        a = alpha[None, :, None]
        var = a ** 2 * lam[:, None, :] + sigma[None, :, None] ** 2
        y = torch.bmm(x[None] - a * mu[:, None, :], U)
        log_n = -0.5 * ((y ** 2 / var).sum(-1) + torch.log(var).sum(-1) + self.dim * math.log(2 * math.pi))
        return (torch.log(w)[:, None] + log_n).T, y, var

    def _coeffs(self, x: torch.Tensor, t, sde: Optional[SDE]):
        if sde is None:
            one = torch.ones(x.shape[0], dtype=torch.float64, device=x.device)
            return one, torch.zeros_like(one)
        return sde.alpha_sigma(sde.check_t(t, x).to(torch.float64))

    def log_prob_t(self, x: torch.Tensor, t, sde: SDE) -> torch.Tensor:
        """Exact log p_t(x) in nats of the mixture perturbed by ``sde`` to time t; x (B, ...) -> (B,)."""
        alpha, sigma = self._coeffs(x, t, sde)
        log_joint, _, _ = self._log_joint(self._flatten(x), alpha, sigma)
        return torch.logsumexp(log_joint, dim=1).to(x.dtype)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density (nats) of the clean mixture; x (B, ...) -> (B,)."""
        log_joint, _, _ = self._log_joint(self._flatten(x), *self._coeffs(x, None, None))
        return torch.logsumexp(log_joint, dim=1).to(x.dtype)

    def score(self, x: torch.Tensor, t, sde: SDE, labels: Optional[torch.Tensor] = None,
              classes: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Exact score grad_x log p_t(x) (like x): sum_k r_k(x) (-Cov_k(t)^-1 (x - alpha mu_k)).

        With ``labels`` (B,): the class-conditional score grad_x log p_t(x | label) of the sub-mixture
        of the components whose class (``classes`` (K,), default: each component its own class) is the
        sample's label."""
        alpha, sigma = self._coeffs(x, t, sde)
        log_joint, y, var = self._log_joint(self._flatten(x), alpha, sigma)
        if labels is not None:
            lab = check_labels(labels, x, self.num_classes(classes))
            member = self._classes(classes, x.device)[None, :] == lab[:, None]
            log_joint = log_joint.masked_fill(~member, -math.inf)
        r = torch.softmax(log_joint, dim=1)
        _, _, _, U = self._params(x.device)
        s = -(r.T[:, :, None] * torch.bmm(y / var, U.transpose(1, 2))).sum(0)
        return s.reshape(x.shape).to(x.dtype)

    def score_fn(self, sde: SDE, classes: Optional[torch.Tensor] = None):
        """The exact score as a function ``score(x, t, labels=None)`` following the score-function
        protocol: the mixture's score, or with labels (B,) the class-conditional one (see ``score``)."""
        def score(x: torch.Tensor, t: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
            return self.score(x, t, sde, labels, classes)
        return score

    # -- classes ---------------------------------------------------------------------------------
    def _classes(self, classes: Optional[torch.Tensor], device) -> torch.Tensor:
        if classes is None:
            return torch.arange(self.num_components, device=device)
        c = torch.as_tensor(classes, device=device)
        if c.shape != (self.num_components,) or c.is_floating_point() or bool((c < 0).any()):
            raise ValueError(f"classes must give a class index >= 0 for each of the {self.num_components} "
                             f"components, got {classes!r}")
        return c.long()

    def num_classes(self, classes: Optional[torch.Tensor] = None) -> int:
        return int(self._classes(classes, "cpu").max()) + 1

    def class_logits_fn(self, sde: SDE, classes: Optional[torch.Tensor] = None):
        """The exact noise-conditional classifier ``logits(x, t)`` -> (B, C): log p_t(class | x_t), the
        perturbed mixture's log-responsibilities summed over each class's components (``classes`` (K,),
        default: one class per component)."""
        def logits(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            alpha, sigma = self._coeffs(x, t, sde)
            log_joint, _, _ = self._log_joint(self._flatten(x), alpha, sigma)
            log_r = torch.log_softmax(log_joint, dim=1)
            c = self._classes(classes, x.device)
            out = torch.full((x.shape[0], int(c.max()) + 1), -math.inf, dtype=log_r.dtype, device=x.device)
            for k in range(out.shape[1]):
                out[:, k] = torch.logsumexp(log_r[:, c == k], dim=1)
            return out.to(x.dtype)
        return logits

    def sub_mixture(self, components: Sequence[int]) -> "GaussianMixture":
        """The mixture of the given components, weights renormalised (a class-conditional target)."""
        idx = torch.as_tensor(list(components), dtype=torch.long)
        return GaussianMixture(self.weights[idx], self.means[idx], self.covs[idx], self.data_shape)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior component probabilities p(k | x) of the clean mixture, (B, K)."""
        log_joint, _, _ = self._log_joint(self._flatten(x), *self._coeffs(x, None, None))
        return torch.softmax(log_joint, dim=1)

    def marginal(self, sde: SDE, t: float) -> "GaussianMixture":
        """The perturbed marginal p_t as a mixture (means alpha mu_k, covs alpha^2 Sigma_k + sigma^2 I)."""
        alpha, sigma = (v.item() for v in sde.alpha_sigma(torch.tensor([float(t)], dtype=torch.float64)))
        eye = torch.eye(self.dim, dtype=torch.float64)
        return GaussianMixture(self.weights, alpha * self.means, alpha ** 2 * self.covs + sigma ** 2 * eye,
                               self.data_shape)

    def conditional(self, known: torch.Tensor, x_known: torch.Tensor) -> "GaussianMixture":
        """The exact conditional p(x_u | x_k = x_known) of the unknown coordinates: again a mixture,
        with weights w_k N(x_known; mu_k,k, S_k,kk) (normalised), means mu_k,u + S_k,uk S_k,kk^-1
        (x_known - mu_k,k) and covariances S_k,uu - S_k,uk S_k,kk^-1 S_k,ku.

        known: bool mask of data_shape (True = observed); x_known: one point of data_shape."""
        m = torch.as_tensor(known, dtype=torch.bool).reshape(-1)
        if m.numel() != self.dim or not bool(m.any()) or bool(m.all()):
            raise ValueError(f"known must be a bool mask of data_shape {self.data_shape} with some known "
                             f"and some unknown entries")
        xk = torch.as_tensor(x_known, dtype=torch.float64).reshape(-1)[m]
        u = ~m
        S = self.covs
        S_kk, S_uk, S_uu = S[:, m][:, :, m], S[:, u][:, :, m], S[:, u][:, :, u]
        gain = torch.linalg.solve(S_kk, S_uk.transpose(1, 2)).transpose(1, 2)  # S_uk S_kk^-1
        diff = xk[None] - self.means[:, m]
        means = self.means[:, u] + torch.einsum("kij,kj->ki", gain, diff)
        covs = S_uu - gain @ S_uk.transpose(1, 2)
        covs = 0.5 * (covs + covs.transpose(1, 2))
        log_w = torch.log(self.weights) + torch.distributions.MultivariateNormal(
            self.means[:, m], covariance_matrix=S_kk).log_prob(xk[None])
        return GaussianMixture(torch.softmax(log_w, 0), means, covs)

    def posterior(self, A, y, noise_std: float = 0.0):
        """The exact posterior p(x | y) for the linear observation y = A x + noise_std z, z ~ N(0, I).

        A: (m, D) with m < D and full row rank; y: (m,).  Per component (closed form): weights
        w_k N(y; A mu_k, S_k) with S_k = A Sigma_k A^T + noise_std^2 I, means mu_k + G_k (y - A mu_k),
        covariances Sigma_k - G_k A Sigma_k, gain G_k = Sigma_k A^T S_k^-1.  With noise_std > 0 that is a
        :class:`GaussianMixture` on R^D; noise-free it lives on the plane A x = y and is returned as an
        :class:`AffineMixture` (a mixture in coordinates of that plane; the mask case is ``conditional``)."""
        A = torch.as_tensor(A, dtype=torch.float64)
        y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
        noise_std = float(noise_std)
        if A.dim() != 2 or A.shape[1] != self.dim or not 0 < A.shape[0] < self.dim:
            raise ValueError(f"A must have shape (m, {self.dim}) with 0 < m < {self.dim}, got {tuple(A.shape)}")
        if y.shape != (A.shape[0],):
            raise ValueError(f"y must have {A.shape[0]} entries to match A, got {tuple(y.shape)}")
        if not (math.isfinite(noise_std) and noise_std >= 0):
            raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std}")
        if int(torch.linalg.matrix_rank(A)) < A.shape[0]:
            raise ValueError("A must have full row rank")
        m = A.shape[0]
        S = A @ self.covs @ A.T + noise_std ** 2 * torch.eye(m, dtype=torch.float64)
        resid = y[None] - self.means @ A.T  # (K, m)
        gain = torch.linalg.solve(S, A @ self.covs).transpose(1, 2)  # Sigma A^T S^-1 (S symmetric)
        means = self.means + torch.einsum("kdm,km->kd", gain, resid)
        covs = self.covs - gain @ A @ self.covs
        covs = 0.5 * (covs + covs.transpose(1, 2))
        log_w = torch.log(self.weights) + torch.distributions.MultivariateNormal(
            self.means @ A.T, covariance_matrix=S).log_prob(y[None])
        weights = torch.softmax(log_w, 0)
        if noise_std > 0:
            return GaussianMixture(weights, means, covs, self.data_shape)
        # noise-free: coordinates z = N^T (x - x_p) in an orthonormal basis N of A's null space
        U, S, Vh = torch.linalg.svd(A)
        N = Vh[m:].T  # (D, D - m)
        # the plane's point nearest 0, A^+ y (lstsq's default CPU driver returned a point off the plane for
        # 2 x 2 pooling)
        x_p = Vh[:m].T @ ((U.T @ y) / S)
        latent = GaussianMixture(weights, (means - x_p) @ N, N.T @ covs @ N)
        return AffineMixture(latent, x_p, N, self.data_shape)

    def balanced_observation(self, A, i: int, j: int, noise_std: float = 0.0) -> torch.Tensor:
        """A hard condition: the observation y = A x_f on the segment x_f = mu_i + f (mu_j - mu_i) at which
        the exact posterior gives components i and j equal weight (f by bisection).  y lies between two
        modes, usually where the data are rare; a sampler must split its samples evenly between two
        modes that the observation alone cannot tell apart.  A: (m, D), or a bool mask of data_shape
        (True = observed: A selects those coordinates).  Returns y (m,)."""
        A = torch.as_tensor(A)
        if A.dtype == torch.bool:
            A = torch.eye(self.dim, dtype=torch.float64)[A.reshape(-1)]
        A = A.to(torch.float64)
        K = self.num_components
        if not (0 <= i < K and 0 <= j < K and i != j):
            raise ValueError(f"i and j must be two different components in [0, {K}), got {i}, {j}")
        point = lambda f: A @ (self.means[i] + f * (self.means[j] - self.means[i]))  # noqa: E731
        gap = lambda f: float(torch.diff(self.posterior(A, point(f), noise_std).weights[[j, i]]))  # noqa: E731
        lo, hi = 0.0, 1.0
        if not gap(lo) > 0 > gap(hi):
            raise ValueError(f"the posterior weights of components {i} and {j} do not cross on the segment "
                             f"between their means under this A")
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if gap(mid) > 0 else (lo, mid)
        y = point(0.5 * (lo + hi))
        w = self.posterior(A, y, noise_std).weights
        if float(w[i] + w[j]) < 0.5:  # the crossing lies where other components carry the posterior
            raise ValueError(f"components {i} and {j} cross at posterior weight {float(w[i]):.3g} each: other "
                             f"components dominate there, so the condition does not split {i} and {j}")
        return y

    def with_exact_prior(self, sde: SDE) -> SDE:
        """A copy of ``sde`` whose prior is this mixture's exact p_T instead of N(0, s(T)^2 I):
        it removes the prior mismatch from likelihoods and samplers, leaving only solver error."""
        target, base = self, type(sde)
        p_T = self.marginal(sde, sde.T)

        class ExactPrior(base):
            def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
                return p_T.log_prob(z)

            def prior_sampling(self, shape, generator=None, device=None, dtype=None):
                return p_T.sample(shape[0], generator, dtype=dtype or torch.get_default_dtype()).to(device)

            def with_N(self, N: int) -> SDE:
                return target.with_exact_prior(base(**{**self.hparams, "N": N}))

        ExactPrior.__name__ = f"ExactPrior{base.__name__}"
        return ExactPrior(**sde.hparams)

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, n: int, generator: Optional[torch.Generator] = None, *,
               dtype: torch.dtype = torch.float32, return_labels: bool = False):
        """Draw n samples (n, *data_shape); with ``return_labels`` also their components (n,)."""
        n = check_int("n", n, minimum=1)
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.means[labels] + torch.einsum("nde,ne->nd", self._chol[labels], z)
        x = x.to(dtype).reshape((n,) + self.data_shape)
        return (x, labels) if return_labels else x

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.num_components}, D={self.dim}, data_shape={self.data_shape})"


class AffineMixture:
    """A Gaussian mixture on the affine plane {x_p + N z}: x = x_p + N z with z ~ ``latent`` (N (D, d)
    orthonormal columns).  ``log_prob`` is the density on the plane (w.r.t. its d-dim. Lebesgue measure)."""

    def __init__(self, latent: GaussianMixture, offset: torch.Tensor, basis: torch.Tensor, data_shape) -> None:
        self.latent, self.offset, self.basis, self.data_shape = latent, offset, basis, tuple(data_shape)
        self.weights = latent.weights

    def coordinates(self, x: torch.Tensor) -> torch.Tensor:
        """z = N^T (x - x_p) (B, d) of points x (B, *data_shape) (their projection onto the plane)."""
        return (x.reshape(x.shape[0], -1).to(torch.float64) - self.offset) @ self.basis

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """Euclidean distance (B,) of x from the plane (0 for points that satisfy A x = y)."""
        xf = x.reshape(x.shape[0], -1).to(torch.float64)
        return (xf - self.offset - self.coordinates(x) @ self.basis.T).norm(dim=1)

    def sample(self, n: int, generator: Optional[torch.Generator] = None, *, dtype: torch.dtype = torch.float32):
        z = self.latent.sample(n, generator, dtype=torch.float64)
        return (self.offset + z @ self.basis.T).to(dtype).reshape((n,) + self.data_shape)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.latent.log_prob(self.coordinates(x)).to(x.dtype)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        return self.latent.responsibilities(self.coordinates(x))

    def __repr__(self) -> str:
        return (f"AffineMixture(K={self.latent.num_components}, plane dim={self.basis.shape[1]}, "
                f"data_shape={self.data_shape})")


# -- named targets -----------------------------------------------------------------------------
@register_target("ring8")
def ring8() -> GaussianMixture:
    """8 isotropic modes (std 0.3) on a circle of radius 4, weights proportional to 1..8."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = 4.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture(torch.arange(1, 9.0), means, torch.full((8, 2), 0.3 ** 2))


@register_target("grid9")
def grid9() -> GaussianMixture:
    """3x3 grid (spacing 3) of anisotropic, correlated modes, weights proportional to 1..9."""
    g = torch.tensor([-3.0, 0.0, 3.0], dtype=torch.float64)
    means = torch.cartesian_prod(g, g)
    rho = torch.linspace(-0.6, 0.6, 9, dtype=torch.float64)
    covs = torch.stack([torch.tensor([[0.16, 0.12 * r], [0.12 * r, 0.09]]) for r in rho])
    return GaussianMixture(torch.arange(1, 10.0), means, covs)


@register_target("two_modes")
def two_modes() -> GaussianMixture:
    """0.2 N((-5,-5), I) + 0.8 N((5,5), I): the mixture where un-annealed Langevin fails."""
    return GaussianMixture([0.2, 0.8], [[-5.0, -5.0], [5.0, 5.0]], torch.ones(2, 2))


@register_target("gmm16d")
def gmm16d() -> GaussianMixture:
    """4 full-covariance modes in 16-D (fixed seed), weights 0.1/0.2/0.3/0.4."""
    g = torch.Generator().manual_seed(16)
    K, D = 4, 16
    means = 3.0 * torch.randn(K, D, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(K, D, D, generator=g, dtype=torch.float64))
    lam = 0.1 + 0.9 * torch.rand(K, D, generator=g, dtype=torch.float64)
    covs = q @ torch.diag_embed(lam) @ q.transpose(-1, -2)
    return GaussianMixture([0.1, 0.2, 0.3, 0.4], means, 0.5 * (covs + covs.transpose(-1, -2)))


def _smooth_images(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """n smooth random images (n, size*size): random combinations of the 9 lowest 2-D cosine modes, scaled to
    unit RMS."""
    u = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    modes = torch.stack([torch.outer(torch.cos(math.pi * fy * u), torch.cos(math.pi * fx * u)).flatten()
                         for fy in range(3) for fx in range(3)])  # (9, size^2)
    imgs = torch.randn(n, 9, generator=g, dtype=torch.float64) @ modes
    return imgs / imgs.pow(2).mean(1, keepdim=True).sqrt()


@register_target("image64")
def image64() -> GaussianMixture:
    """4 modes in image shape (1, 8, 8): smooth mean images (RMS 0.6) with low-rank covariances (4 smooth
    directions of std 0.3 each, plus 0.03^2 isotropic), weights 0.1/0.2/0.3/0.4.  Image-like: the data fill
    a thin neighbourhood of low-dimensional planes, so scores are stiff at small noise (the few-step
    samplers' hard case)."""
    g = torch.Generator().manual_seed(64)
    K, D, r = 4, 64, 4
    means = 0.6 * _smooth_images(K, 8, g)
    dirs = 0.3 * _smooth_images(K * r, 8, g).reshape(K, r, D)
    covs = dirs.transpose(1, 2) @ dirs + 0.03 ** 2 * torch.eye(D, dtype=torch.float64)
    return GaussianMixture([0.1, 0.2, 0.3, 0.4], means, covs, data_shape=(1, 8, 8))


@register_target("bimodal16d")
def bimodal16d() -> GaussianMixture:
    """3 full-covariance modes in 16-D whose first 8 coordinates cannot tell modes 0 and 1 apart
    (same means there, different covariances): given the first half, the second half is bimodal.
    The imputation test bed; weights 0.3/0.5/0.2."""
    g = torch.Generator().manual_seed(8)
    D = 16
    means = torch.zeros(3, D, dtype=torch.float64)
    means[0, 8:], means[1, 8:] = 2.5, -2.5
    means[2, :8] = 4.0
    q, _ = torch.linalg.qr(torch.randn(3, D, D, generator=g, dtype=torch.float64))
    lam = 0.2 + 0.8 * torch.rand(3, D, generator=g, dtype=torch.float64)
    lam[1] *= 1.6  # mode 1 is wider: the observed half carries information about the mode
    covs = q @ torch.diag_embed(lam) @ q.transpose(-1, -2)
    return GaussianMixture([0.3, 0.5, 0.2], means, 0.5 * (covs + covs.transpose(-1, -2)))
