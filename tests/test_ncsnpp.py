"""NCSN++ / DDPM++ against the paper code: parameter counts and names of the CIFAR-10 networks, and outputs
of small random networks in five configurations (tests/data/README.md says how both were made)."""
import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from sde_score.external import load_score_sde_checkpoint
from sde_score.models import NCSNpp, PAPER_CONFIGS, score_sde_key_map
from sde_score.models.fir import FIRConv2d, downsample_2d, fir_filter, upsample_2d
from sde_score.models.ncsnpp import from_score_sde_config

DATA = Path(__file__).parent / "data"


def _count(net):
    # the paper keeps the Fourier W as a (frozen) parameter, NCSNpp as a buffer
    return sum(p.numel() for p in net.parameters()) + sum(
        b.numel() for k, b in net.state_dict().items() if k == "fourier.W")


@pytest.mark.parametrize("name", ["ncsnpp_deep_ve", "ddpmpp_vp"])
def test_cifar10_networks_have_the_paper_code_parameters_under_its_names(name):
    """The key correspondence is data (score_sde_key_map, checked against the paper network's state dict
    recorded in tests/data): every paper key maps to one of ours with its shape, nothing is left over."""
    ref = json.loads((DATA / "score_sde_cifar10_state_dicts.json").read_text())[name]
    net = NCSNpp(**PAPER_CONFIGS[name])
    assert _count(net) == ref["params"]  # 107,587,075 (NCSN++ cont. deep) and 61,804,419 (DDPM++ cont.)
    key_map, ours = score_sde_key_map(net), net.state_dict()
    paper = dict((k, shape) for k, shape in ref["state_dict"])
    assert set(key_map) == set(paper)
    assert sorted(v for v in key_map.values() if v is not None) == sorted(ours)
    for key, shape in paper.items():
        if key_map[key] is not None:
            assert list(ours[key_map[key]].shape) == shape, key


def _fixtures():
    return torch.load(DATA / "score_sde_ncsnpp_outputs.pt", weights_only=True)


@pytest.mark.parametrize("variant", ["ncsnpp_ve", "ddpmpp_vp", "ddpm_skips", "ddpm_residual", "biggan_fir_residual"])
def test_outputs_equal_the_paper_code(variant, tmp_path):
    """A checkpoint of the paper code's network (random weights, raw and EMA) loads by its config and gives
    the paper network's outputs: BigGAN and DDPM blocks, FIR and naive resampling, every progressive mode,
    Fourier (of log sigma, output / sigma, inputs in [0, 1]) and positional embeddings.  float32 round-off:
    1e-5 measured on outputs up to 3 (the VE one divides by sigma = 0.05)."""
    fx = _fixtures()[variant]
    args = from_score_sde_config(fx["model_config"], fx["data_config"])
    if args["embedding"] == "positional":  # the fixture fed the paper network its labels directly
        args["time_scale"] = 1.0
    net = NCSNpp(**args).eval()
    torch.save(fx["checkpoint"], tmp_path / "checkpoint.pth")
    info = load_score_sde_checkpoint(tmp_path / "checkpoint.pth", net, ema=False)
    assert info["step"] == 7
    with torch.no_grad():
        torch.testing.assert_close(net(fx["x"], fx["cond"]), fx["out_model"], rtol=1e-4, atol=3e-5)
    info = load_score_sde_checkpoint(tmp_path / "checkpoint.pth", net)
    assert (info["ema_decay"], info["num_updates"]) == (0.999, 5)
    with torch.no_grad():
        torch.testing.assert_close(net(fx["x"], fx["cond"]), fx["out_ema"], rtol=1e-4, atol=3e-5)


def test_fused_fir_convolutions_are_filter_then_convolution():
    """StyleGAN2's fused up/down convolutions equal the FIR resampling followed (up) or preceded (down) by
    the plain 3x3 convolution, away from the border (where the two orders zero-pad differently); the filters
    keep a constant image constant away from the border."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    up, down = FIRConv2d(3, 5, up=True).double(), FIRConv2d(3, 5, down=True).double()
    with torch.no_grad():
        up.bias.normal_()
    ref = F.conv2d(upsample_2d(x, up.filt.double()), up.weight, up.bias, padding=1)
    torch.testing.assert_close(up(x)[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2])
    ref = downsample_2d(F.conv2d(x, down.weight, down.bias, padding=1), down.filt.double())
    torch.testing.assert_close(down(x)[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1])
    one = torch.ones(1, 1, 6, 6, dtype=torch.float64)
    assert torch.allclose(upsample_2d(one, fir_filter((1, 3, 3, 1), 4.0).double())[..., 1:-1, 1:-1], one.new_ones(1))
    assert torch.allclose(downsample_2d(one, fir_filter((1, 3, 3, 1)).double())[..., 1:-1, 1:-1], one.new_ones(1))


def _small(**kw):
    args = dict(data_shape=(1, 8, 8), nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), dropout=0.0)
    args.update(kw)
    return NCSNpp(**args)


@pytest.mark.parametrize("kw", [dict(), dict(fir=True, progressive_input="residual"),
                                dict(resblock="ddpm", progressive="output_skip", progressive_input="input_skip",
                                     progressive_combine="cat"),
                                dict(embedding="positional", time_scale=999.0, num_classes=3)])
def test_shapes_gradients_and_labels(kw):
    net = _small(**kw)
    x, t = torch.randn(3, 1, 8, 8, requires_grad=True), torch.rand(3)
    labels = torch.tensor([0, 2, 3]) if kw.get("num_classes") else None
    out = net(x, t, labels)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_config_round_trip_and_double_precision():
    from sde_score.models.registry import build_net, net_config

    net = _small(fir=True, progressive_input="residual", num_classes=2).eval()
    cfg = net_config(net)
    assert cfg == {"class_path": "sde_score.models.ncsnpp.NCSNpp", "init_args": net.init_args}
    rebuilt = build_net(cfg).eval()
    rebuilt.load_state_dict(net.state_dict())
    x, t = torch.randn(3, 1, 8, 8), torch.rand(3)
    torch.testing.assert_close(rebuilt(x, t), net(x, t))
    assert net.double()(x.double(), t.double()).dtype == torch.float64


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match="data_shape"):
        _small(data_shape=(1, 6, 6), ch_mult=(1, 2, 2))
    with pytest.raises(ValueError, match="resblock"):
        _small(resblock="resnet")
    with pytest.raises(ValueError, match="progressive_input"):
        _small(progressive_input="skip")
    with pytest.raises(ValueError, match="scale_by_sigma=True needs sigma_input"):
        _small(scale_by_sigma=True)
    with pytest.raises(ValueError, match="embedding='fourier'"):
        _small(sigma_input=True, embedding="positional")
    with pytest.raises(ValueError, match="model.normalization"):
        from_score_sde_config(dict(normalization="InstanceNorm++"), dict())
    cfg = _fixtures()["ddpmpp_vp"]
    with pytest.raises(ValueError, match="data section lacks centered"):
        from_score_sde_config(cfg["model_config"], {k: v for k, v in cfg["data_config"].items() if k != "centered"})


def test_a_loaded_paper_network_samples_through_wrap(tmp_path):
    """README's recipe: a paper VE network (takes sigma, divides by it) wrapped as a score with
    time_input="sigma" is net(x, sigma(t)); sampling runs on it."""
    from sde_score import get_sde, sample
    from sde_score.external import wrap

    fx = _fixtures()["ncsnpp_ve"]
    net = NCSNpp(**from_score_sde_config(fx["model_config"], fx["data_config"])).eval()
    torch.save(fx["checkpoint"], tmp_path / "checkpoint.pth")
    load_score_sde_checkpoint(tmp_path / "checkpoint.pth", net)
    sde = get_sde("ve", sigma_max=50.0)
    model = wrap(net, sde, prediction="score", time_input="sigma", data_shape=(2, 8, 8))
    t = torch.full((3,), 0.4)
    with torch.no_grad():
        torch.testing.assert_close(model(fx["x"], t), net(fx["x"], sde.edm_sigma(t)))
        x = sample(model, method="dpm_solver", steps=3, num_samples=2, progress=False)
    assert x.shape == (2, 2, 8, 8) and torch.isfinite(x).all()
