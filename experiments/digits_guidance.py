"""Class-conditional digits: does a sample show the digit it was asked for?  An independent judge, a
logistic regression fitted on the digits training split (scikit-learn), classifies samples drawn for
each label at several classifier-free guidance scales (and, with --classifier, classifier guidance).

    python experiments/digits_guidance.py --ckpt outputs/digits_cond/checkpoints/last.ckpt

Prints a table, writes digits_guidance.json, digits_guidance.png (agreement against guidance scale) and
digits_cond_grid.png (one row per requested label, at --grid-scale) under --out.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import sde_score
from sde_score.data import DigitsDataModule
from sde_score.io import write_json
from sde_score.classifier_module import ClassifierModule
from sde_score.module import ScoreModule
from sde_score.plotting import pyplot, save_figure, save_image_grid


def judge(dm: DigitsDataModule):
    """Logistic regression on the training split's grey levels (0..16) / 16; returns (predict, test accuracy)."""
    from sklearn.linear_model import LogisticRegression

    dm.setup()
    feats = lambda levels: levels.reshape(len(levels), -1).float().numpy() / 16  # noqa: E731
    clf = LogisticRegression(max_iter=2000).fit(feats(dm.train_levels), dm.labels["train"].numpy())
    acc = float((clf.predict(feats(dm.test_levels)) == dm.labels["test"].numpy()).mean())
    return (lambda levels: clf.predict(feats(levels))), acc


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default="outputs/digits_cond/checkpoints/last.ckpt")
    p.add_argument("--scales", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 3.0])
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--method", default="dpm_solver")
    p.add_argument("--order", type=int, default=2,
                   help="dpm_solver's order: 2M, as DPM-Solver++ advises for guided sampling (Lu et al. 2022)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--grid-scale", type=float, default=1.0)
    p.add_argument("--classifier", default=None,
                   help="a ClassifierModule checkpoint (digits_classifier.yaml): also judge classifier guidance of "
                        "the model's unconditional score (its null label) at the same scales")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="experiments/results")
    args = p.parse_args(argv)
    module = ScoreModule.load(args.ckpt)
    if module.num_classes != 10:
        raise ValueError(f"{args.ckpt} is not a 10-class conditional model (num_classes={module.num_classes})")
    dm = DigitsDataModule(seed=args.seed)
    predict, judge_acc = judge(dm)
    labels = torch.arange(10).repeat_interleave(args.per_class)
    rows, grids = [], {}
    print(f"judge (logistic regression) test accuracy: {judge_acc:.3f}")
    clf = ClassifierModule.load(args.classifier) if args.classifier else None
    print(f"{'guidance':>16} {'scale':>6} {'agree':>6}  per class")
    for kind in ["classifier_free"] + (["classifier"] if clf is not None else []):
        for w in args.scales:
            gen = torch.Generator().manual_seed(args.seed)
            opts = dict(method=args.method, steps=args.steps, return_info=True, progress=False, generator=gen)
            if args.method == "dpm_solver":
                opts["order"] = args.order
            if kind == "classifier_free":
                x, info = sde_score.sample(module, num_samples=len(labels), labels=labels, guidance_scale=w, **opts)
            else:  # the model without labels is its unconditional score
                guided = sde_score.classifier_guided(module, clf, labels, scale=w)
                x, info = sde_score.sample(guided, module.sde, shape=(len(labels),) + module.data_shape, **opts)
            data = dm.scaler.to_data(x)  # [0, 1]: (level + u) / 17
            levels = (data * dm.num_levels - 0.5).clamp(0, dm.num_levels - 1)  # the judge's scale; x unchanged
            hit = predict(levels) == labels.numpy()
            per_class = [float(hit[labels.numpy() == c].mean()) for c in range(10)]
            rows.append(dict(guidance=kind, scale=w, agreement=float(hit.mean()), per_class=per_class, nfe=info.nfe,
                             num_samples=len(labels)))
            if kind == "classifier_free":
                grids[w] = data
            print(f"{kind:>16} {w:>6.2f} {hit.mean():>6.3f}  " + " ".join(f"{v:.2f}" for v in per_class))
    out = Path(args.out)
    result = dict(ckpt=args.ckpt, method=args.method, steps=args.steps, seed=args.seed, judge_test_accuracy=judge_acc,
                  rows=rows)
    write_json(out / "digits_guidance.json", result)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for kind in sorted({r["guidance"] for r in rows}):
        sel = [r for r in rows if r["guidance"] == kind]
        ax.plot([r["scale"] for r in sel], [r["agreement"] for r in sel], "o-", label=kind.replace("_", "-"))
    ax.axhline(judge_acc, color="gray", ls="--", label="judge on test digits")
    ax.set_xlabel("guidance scale w")
    ax.set_ylabel("judge agrees with requested label")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right")
    save_figure(fig, out / "digits_guidance.png")
    if args.grid_scale in grids:
        g = grids[args.grid_scale].reshape(10, args.per_class, 1, 8, 8)[:, :10].reshape(-1, 1, 8, 8)
        save_image_grid(out / "digits_cond_grid.png", g, nrow=10,
                        title=f"requested label 0-9 per row, guidance {args.grid_scale:g}")
    print(f"wrote {out / 'digits_guidance.json'}, {out / 'digits_guidance.png'}")
    return result


if __name__ == "__main__":
    main()
