"""ClassifierModule: a noise-conditional classifier learns p_t(class | x_t), and guiding the exact
unconditional score with it draws the requested class."""
import pytorch_lightning as pl
import torch
import yaml

import sde_score
from sde_score.classifier_module import ClassifierModule
from sde_score.cli import classifier_main
from sde_score.data import Toy2DDataModule
from sde_score.models import ScoreMLP


def test_trained_classifier_agrees_with_the_exact_posterior_and_guides(tmp_path):
    pl.seed_everything(0)
    dm = Toy2DDataModule("ring8", n_train=8000, n_val=500, batch_size=256)
    clf = ClassifierModule(ScoreMLP((2,), width=64, depth=2, out_dim=8), sde="ve", sde_kwargs={"sigma_max": 10.0},
                           lr=3e-3)
    pl.Trainer(max_steps=400, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
               enable_checkpointing=False, default_root_dir=tmp_path).fit(clf, dm)
    clf.eval()
    target, sde = dm.target, clf.sde
    x = target.sample(2000, torch.Generator().manual_seed(1))
    for t in (0.05, 0.5):
        tt = torch.full((len(x),), t)
        x_t = x + sde.alpha_sigma(tt)[1][:, None] * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
        exact = target.class_logits_fn(sde)(x_t, tt).exp()
        with torch.no_grad():
            learned = torch.softmax(clf(x_t, tt), 1)
        # total variation between the learned and the exact p_t(class | x_t), averaged over x_t
        assert 0.5 * (learned - exact).abs().sum(1).mean() < 0.1, t
    # a learned classifier's gradient is weaker than the exact one's (scale 1: 0.82 of the samples in the
    # class after 400 steps, 0.88 after 1500; the exact classifier draws the class exactly, test_guidance.py):
    # scale 2, as guided diffusion uses scales > 1
    guided = sde_score.classifier_guided(target.score_fn(sde), clf, labels=5, scale=2.0)
    s = sde_score.sample(guided, sde, "dpm_solver", shape=(400, 2), generator=torch.Generator().manual_seed(3),
                         progress=False)
    assert (target.responsibilities(s).argmax(1) == 5).float().mean() > 0.9


def test_classifier_cli_fit_and_load(tmp_path):
    cfg = yaml.safe_load(open("experiments/configs/digits_classifier.yaml").read())
    cfg["trainer"].update(max_steps=3, default_root_dir=str(tmp_path), enable_progress_bar=False,
                          logger=False, check_val_every_n_epoch=1)
    cfg["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(tmp_path / "ckpt")
    cfg["model"]["net"]["init_args"]["channels"] = [8, 16]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    classifier_main(["fit", "--config", str(tmp_path / "c.yaml")])
    clf = ClassifierModule.load(str(tmp_path / "ckpt" / "last.ckpt"))
    assert clf(torch.zeros(2, 1, 8, 8), torch.full((2,), 0.5)).shape == (2, 10)
    classifier_main(["validate", "--config", str(tmp_path / "c.yaml"),
                     "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt")])
