"""Why annealing: score matching and Langevin dynamics on p = 0.2 N((-5,-5), I) + 0.8 N((5,5), I).

    python experiments/langevin_failure.py             # ~3 minutes on 2 CPU cores

(a) plain Langevin with the exact score recovers the wrong mode weights (chains keep the weights of
    the uniform start); (b) annealed Langevin (NCSN) and the PC sampler recover 0.2 / 0.8;
(c) a score network trained by (noise-free) sliced score matching is accurate only where the data
    are, while a noise-conditional network trained by denoising score matching over a VE SDE is
    accurate everywhere at a noise level (default sigma = 2) whose perturbed data fill the space.
Writes langevin_failure.png (samples and score-error fields) and langevin_failure.json.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import sde_score
from sde_score.io import write_json
from sde_score.losses import DSMLoss, SSMLoss
from sde_score.metrics import mode_weights
from sde_score.models import ScoreMLP
from sde_score.plotting import pyplot, save_figure
from sde_score.sdes import bcast


def _train(net, loss_fn, target, steps, seed, progress):
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in tqdm(range(steps), desc="train", disable=not progress, leave=False):
        loss = loss_fn(target.sample(256, g)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-samples", type=int, default=10000)
    p.add_argument("--langevin-steps", type=int, default=1000)
    p.add_argument("--train-steps", type=int, default=2000)
    p.add_argument("--sigma", type=float, default=2.0, help="noise level at which the noise-conditional net is shown")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="experiments/results")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    progress = not args.no_progress
    torch.manual_seed(args.seed)
    target = sde_score.get_target("two_modes")
    sde = sde_score.get_sde("ve", sigma_min=0.01, sigma_max=20.0)
    exact = target.score_fn(sde)
    n, gen = args.num_samples, lambda k: torch.Generator().manual_seed(args.seed + k)
    runs = {
        "langevin (exact score)": sde_score.sample(exact, sde, "langevin", shape=(n, 2), n_steps=args.langevin_steps,
                                                   step_size=0.1, generator=gen(1), progress=progress),
        "annealed langevin (NCSN)": sde_score.sample(exact, sde, "annealed_langevin", shape=(n, 2), steps=100,
                                                     n_steps_each=10, generator=gen(2), progress=progress),
        "pc (reverse diffusion + langevin)": sde_score.sample(exact, sde, "pc", shape=(n, 2), steps=500,
                                                              generator=gen(3), progress=progress),
    }
    weights = {k: [round(v, 4) for v in mode_weights(target, x).tolist()] for k, x in runs.items()}

    # (c) learned scores: noise-free SSM vs noise-conditional DSM
    ssm_net = ScoreMLP((2,), width=128, depth=3)
    _train(ssm_net, lambda x: SSMLoss()(sde_score.ScoreModel(ssm_net, sde), x), target, args.train_steps, args.seed,
           progress)
    dsm_net = ScoreMLP((2,), width=128, depth=3)

    def dsm_score(z, t):
        return dsm_net(z, t) / bcast(sde.alpha_sigma(t)[1], z)

    dsm = DSMLoss()
    _train(dsm_net, lambda x: dsm(sde_score.ScoreModel(dsm_score, sde), x), target, args.train_steps, args.seed,
           progress)
    lim, m = 10.0, 161
    g1 = torch.linspace(-lim, lim, m)
    xx, yy = torch.meshgrid(g1, g1, indexing="xy")
    grid = torch.stack([xx.ravel(), yy.ravel()], 1)
    # noise-free SSM against the clean score; the noise-conditional net at NCSN's middle level
    # sigma = args.sigma against the exact score of the perturbed data.  Errors |ds| are relative
    # to the rms of the exact score over the data region (a pointwise ratio blows up at modes).
    t_min = torch.full((len(grid),), sde.default_eps)
    t_mid = sde.t_from_edm_sigma(torch.tensor(args.sigma)).float().expand(len(grid))
    truth_clean, truth_mid = target.score(grid, t_min, sde), target.score(grid, t_mid, sde)
    density = target.log_prob(grid).exp()
    high = density > 1e-3 * density.max()
    with torch.no_grad():
        err_ssm = (ssm_net(grid, t_min) - truth_clean).norm(dim=1) / truth_clean[high].norm(dim=1).pow(2).mean().sqrt()
        err_dsm = (dsm_score(grid, t_mid) - truth_mid).norm(dim=1) / truth_mid[high].norm(dim=1).pow(2).mean().sqrt()
    errors = {name: {"rms_rel_error_high_density": float(e[high].pow(2).mean().sqrt()),
                     "rms_rel_error_low_density": float(e[~high].pow(2).mean().sqrt())}
              for name, e in (("sliced score matching (noise-free)", err_ssm),
                              (f"denoising score matching, VE SDE (sigma={args.sigma:g})", err_dsm))}

    plt = pyplot()
    fig, axes = plt.subplots(1, 5, figsize=(22, 4.4))
    for ax, (name, x) in zip(axes[:3], runs.items()):
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.3)
        w = weights[name]
        ax.set_title(f"{name}\nweights {w[0]:.2f} / {w[1]:.2f} (true 0.20 / 0.80)", fontsize=9)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
    for ax, (name, e) in zip(axes[3:], errors.items()):
        err = (err_ssm if "sliced" in name else err_dsm).reshape(m, m)
        im = ax.imshow(err.log10(), origin="lower", extent=(-lim, lim, -lim, lim), cmap="magma", vmin=-2, vmax=1)
        ax.contour(xx, yy, density.reshape(m, m), levels=[1e-3 * float(density.max())], colors="cyan",
                   linewidths=0.8)
        ax.set_title(f"log10 |s_theta - s| / rms|s|: {name.split(',')[0].split(' (')[0]}"
                     f"{'' if 'sliced' in name else f' at sigma={args.sigma:g}'}\n"
                     f"rms rel. err: on data {e['rms_rel_error_high_density']:.2f}, "
                     f"off data {e['rms_rel_error_low_density']:.2f}", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    out = Path(args.out)
    save_figure(fig, out / "langevin_failure.png", dpi=90)
    result = {"true_weights": [0.2, 0.8], "weights": weights, "score_errors": errors, "seed": args.seed,
              "num_samples": n}
    write_json(out / "langevin_failure.json", result)
    print(f"{'sampler':38s} weights (true 0.20 / 0.80)")
    for k, w in weights.items():
        print(f"{k:38s} {w[0]:.3f} / {w[1]:.3f}")
    for k, e in errors.items():
        print(f"{k:52s} rms relative error on data {e['rms_rel_error_high_density']:.3f}, "
              f"off data {e['rms_rel_error_low_density']:.3f}")
    return result


if __name__ == "__main__":
    main()
