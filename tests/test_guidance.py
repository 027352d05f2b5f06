"""Guidance against exact answers: for a mixture, p_t(class | x_t) and the class-conditional scores are
exact, so classifier guidance at scale 1 must equal the conditional score, classifier-free guidance
must interpolate exactly, and guided samplers must draw the class's sub-mixture."""
import pytest
import torch

from sde_score import SDES, get_sde, get_target, log_likelihood, sample
from sde_score.guidance import classifier_free, classifier_guided
from sde_score.metrics import mode_weight_tv, tv_floor

CLASSES = torch.arange(8) % 2  # ring8: class 1 = modes 1, 3, 5, 7 (weights 2 : 4 : 6 : 8)


def _points(sde_name, n=64, dim=2):
    g = torch.Generator().manual_seed(0)
    x = 5 * torch.randn(n, dim, generator=g, dtype=torch.float64)
    t = torch.rand(n, generator=g, dtype=torch.float64) * 0.99 + 0.01
    return x, t


@pytest.mark.parametrize("sde_name", SDES.names())
def test_class_logits_are_the_perturbed_responsibilities(sde_name):
    target, sde = get_target("ring8"), get_sde(sde_name)
    x, _ = _points(sde_name)
    t = torch.full((len(x),), 0.4, dtype=torch.float64)
    resp = target.marginal(sde, 0.4).responsibilities(x)
    torch.testing.assert_close(target.class_logits_fn(sde)(x, t).exp(), resp)
    per_class = torch.stack([resp[:, CLASSES == c].sum(1) for c in (0, 1)], 1)
    torch.testing.assert_close(target.class_logits_fn(sde, CLASSES)(x, t).exp(), per_class)


@pytest.mark.parametrize("sde_name", SDES.names())
@pytest.mark.parametrize("name", ["ring8", "gmm16d"])
def test_classifier_guidance_at_scale_one_is_the_conditional_score(sde_name, name):
    """Bayes: grad log p_t(x | y) = grad log p_t(x) + grad log p_t(y | x), to float64 round-off; in 2-D and
    in 16-D with full covariances, at points far between the modes (5 x standard normal)."""
    target, sde = get_target(name), get_sde(sde_name)
    classes = torch.arange(target.num_components) % 2
    x, t = _points(sde_name, dim=target.dim)
    score = target.score_fn(sde, classes)
    y = torch.arange(len(x)) % 2
    guided = classifier_guided(score, target.class_logits_fn(sde, classes), y, scale=1.0)(x, t)
    torch.testing.assert_close(guided, score(x, t, y), rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(classifier_guided(score, target.class_logits_fn(sde, classes), y, 0.0)(x, t),
                               score(x, t))


def test_classifier_free_guidance_interpolates_exactly():
    target, sde = get_target("ring8"), get_sde("vp")
    x, t = _points("vp")
    score = target.score_fn(sde, CLASSES)
    cond, uncond = score(x, t, torch.ones(len(x), dtype=torch.long)), score(x, t)
    torch.testing.assert_close(classifier_free(score, 1, 1.0)(x, t), cond)
    torch.testing.assert_close(classifier_free(score, 1, 0.0)(x, t), uncond)
    torch.testing.assert_close(classifier_free(score, 1, 2.5)(x, t), uncond + 2.5 * (cond - uncond))


@pytest.mark.parametrize("sde_name", SDES.names())
@pytest.mark.parametrize("how", ["classifier_free", "classifier"])
def test_guided_sampling_draws_the_class_sub_mixture(sde_name, how):
    """Guided by exact scores, a sampler draws what it draws from the class's own sub-mixture score
    (same noise, same result up to round-off): the class's samples, at the sampler's own accuracy."""
    target, sde = get_target("ring8"), get_sde(sde_name)
    n, label = 2000, 1
    score = target.score_fn(sde, CLASSES)
    opts = dict(shape=(n, 2), steps=20, progress=False, dtype="float64")  # round-off, not chaos near mode boundaries
    if how == "classifier_free":
        x = sample(score, sde, "dpm_solver", labels=label, guidance_scale=1.0,
                   generator=torch.Generator().manual_seed(0), **opts)
    else:
        guided = classifier_guided(score, target.class_logits_fn(sde, CLASSES), label)
        x = sample(guided, sde, "dpm_solver", generator=torch.Generator().manual_seed(0), **opts)
    sub = target.sub_mixture([1, 3, 5, 7])
    ref = sample(sub.score_fn(sde), sde, "dpm_solver", generator=torch.Generator().manual_seed(0), **opts)
    torch.testing.assert_close(x, ref, rtol=1e-8, atol=1e-8)  # float64 round-off of the 20-step solve
    assert (CLASSES[target.responsibilities(x).argmax(1)] == label).float().mean() > 0.99
    # the sampler's own error on the sub-mixture: at most 1.5 x the 95 % floor of exact samples
    assert mode_weight_tv(sub, x) < 1.5 * tv_floor(sub, n), mode_weight_tv(sub, x)


def test_guidance_scale_two_calls_both_scores_and_needs_labels():
    target, sde = get_target("ring8"), get_sde("ve")
    _, info = sample(target.score_fn(sde, CLASSES), sde, "dpm_solver", shape=(10, 2), steps=5, labels=0,
                     guidance_scale=3.0, return_info=True, progress=False)
    assert info.nfe == 2 * 5  # conditional and unconditional at each of dpm_solver's 5 evaluations
    with pytest.raises(ValueError, match="guidance_scale needs labels"):
        sample(target.score_fn(sde), sde, shape=(4, 2), steps=3, guidance_scale=2.0, progress=False)
    with pytest.raises(ValueError, match=r"labels must be an int or a tensor of shape \(4,\)"):
        sample(target.score_fn(sde), sde, shape=(4, 2), steps=3, labels=torch.zeros(3, dtype=torch.long),
               progress=False)
    with pytest.raises(ValueError, match="guidance_scale must be finite"):
        sample(target.score_fn(sde), sde, shape=(4, 2), steps=3, labels=0, guidance_scale=float("nan"),
               progress=False)


def test_classifier_must_return_logits():
    target, sde = get_target("ring8"), get_sde("ve")
    bad = classifier_guided(target.score_fn(sde), lambda x, t: x[:, 0], 0)
    with pytest.raises(ValueError, match=r"classifier must return logits of shape \(4, C\), got \(4,\)"):
        bad(torch.zeros(4, 2), torch.full((4,), 0.5))


def test_conditional_log_likelihood_is_the_sub_mixture_density():
    target, sde = get_target("ring8"), get_sde("ve")
    sub = target.sub_mixture([1, 3, 5, 7])
    x = sub.sample(4, torch.Generator().manual_seed(1), dtype=torch.float64)
    exact_prior = sub.with_exact_prior(sde)  # the class's own p_T: only the ODE solve's error remains
    res = log_likelihood(target.score_fn(exact_prior, CLASSES), x, exact_prior, labels=1, divergence="exact",
                         rtol=1e-7, atol=1e-7, progress=False)
    torch.testing.assert_close(res.logp, sub.log_prob_t(x, 1e-5, sde), atol=1e-3, rtol=0)
