"""Networks: shapes, time conditioning, energies, the registry that configs and checkpoints use."""
import pytest
import torch
from torch import nn

from sde_score.models import NETWORKS, GaussianFourierEmbedding, NoiseClassifier, ScoreMLP, UNet, register_net
from sde_score.models.registry import build_net, net_config

SMALL = {"score_mlp": (ScoreMLP, dict(data_shape=[3], width=16, depth=2), (3,)),
         "unet": (UNet, dict(data_shape=[2, 8, 8], channels=[8, 16], emb_dim=16), (2, 8, 8))}
CLASSIFIERS = {"noise_classifier": (NoiseClassifier, dict(data_shape=[2, 8, 8], num_classes=5, channels=[8, 16],
                                                          emb_dim=16), (2, 8, 8))}


def test_every_packaged_network_is_covered():
    # other tests register their own networks in the same process: count the package's only
    packaged = {n for n in NETWORKS.names() if NETWORKS.get(n).__module__.startswith("sde_score.")}
    # diffusers_unet: tests/test_cli.py; ncsnpp: tests/test_ncsnpp.py (shapes, labels, config round trip)
    assert packaged == set(SMALL) | set(CLASSIFIERS) | {"diffusers_unet", "ncsnpp"}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_shapes_time_conditioning_and_config_round_trip(name):
    cls, args, shape = SMALL[name]
    torch.manual_seed(0)
    net = cls(**args)
    with torch.no_grad():  # output layers start at zero: perturb every weight to see the conditioning
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    for B in (1, 5):
        x, t = torch.randn(B, *shape), torch.rand(B)
        assert net(x, t).shape == x.shape
    x = torch.randn(4, *shape)
    assert not torch.allclose(net(x, torch.full((4,), 0.1)), net(x, torch.full((4,), 0.9)))
    cfg = net_config(net)
    assert cfg == {"class_path": f"{cls.__module__}.{cls.__name__}", "init_args": net.init_args}
    rebuilt = build_net(cfg)
    rebuilt.load_state_dict(net.state_dict())
    t = torch.rand(4)
    torch.testing.assert_close(rebuilt(x, t), net(x, t))
    energy = cls(**{**args, "out_dim": 1})
    assert energy(x, t).shape == (4,)
    assert net.double()(x.double(), t.double()).dtype == torch.float64


def test_fourier_embedding():
    emb = GaussianFourierEmbedding(8, scale=2.0)
    out = emb(torch.tensor([0.0, 0.5]))
    assert out.shape == (2, 8)
    torch.testing.assert_close(out[0], torch.cat([torch.zeros(4), torch.ones(4)]))  # sin 0, cos 0
    assert not any(p.requires_grad for p in emb.parameters())  # W is a fixed buffer
    with pytest.raises(ValueError, match="embedding dim must be even, got 7"):
        GaussianFourierEmbedding(7)


def test_bad_network_arguments_and_registration():
    with pytest.raises(ValueError, match=r"UNet needs data_shape \(C, H, W\) with even H and W, got \(1, 7, 7\)"):
        UNet((1, 7, 7))
    with pytest.raises(ValueError, match="width must be an integer >= 1, got 0"):
        ScoreMLP((2,), width=0)
    with pytest.raises(ValueError, match="only Module subclasses can be registered as a network"):
        register_net("not_a_net")(dict)
    with pytest.raises(ValueError, match="network 'score_mlp' is already registered"):
        register_net("score_mlp")(ScoreMLP)

    class Unregistered(nn.Module):
        init_args = {}

    with pytest.raises(ValueError, match="Unregistered is not a registered network"):
        net_config(Unregistered())


def _perturbed(net):
    with torch.no_grad():  # output layers start at zero: perturb every weight to see the conditioning
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("name", sorted(SMALL))
def test_label_conditioning(name):
    cls, args, shape = SMALL[name]
    torch.manual_seed(0)
    net = _perturbed(cls(**args, num_classes=3))
    x, t = torch.randn(4, *shape), torch.rand(4)
    a, b = net(x, t, torch.zeros(4, dtype=torch.long)), net(x, t, torch.ones(4, dtype=torch.long))
    assert a.shape == x.shape and not torch.allclose(a, b)
    torch.testing.assert_close(net(x, t), net(x, t, torch.full((4,), 3)))  # None is the null label
    rebuilt = build_net(net_config(net))
    rebuilt.load_state_dict(net.state_dict())
    torch.testing.assert_close(rebuilt(x, t, torch.ones(4, dtype=torch.long)), b)


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_classifier_networks(name):
    cls, args, shape = CLASSIFIERS[name]
    torch.manual_seed(0)
    net = _perturbed(cls(**args))
    x = torch.randn(4, *shape)
    out = net(x, torch.full((4,), 0.1))
    assert out.shape == (4, args["num_classes"]) and not torch.allclose(out, net(x, torch.full((4,), 0.9)))
    rebuilt = build_net(net_config(net))
    rebuilt.load_state_dict(net.state_dict())
    torch.testing.assert_close(rebuilt(x, torch.full((4,), 0.3)), net(x, torch.full((4,), 0.3)))
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        cls(**{**args, "num_classes": 1})


def test_diffusers_unet_network():
    pytest.importorskip("diffusers")
    from sde_score.models import DiffusersUNet

    cfg = dict(data_shape=[1, 8, 8], unet=dict(block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=4,
                                               down_block_types=["DownBlock2D", "DownBlock2D"],
                                               up_block_types=["UpBlock2D", "UpBlock2D"]))
    torch.manual_seed(0)
    net = _perturbed(DiffusersUNet(**cfg, num_classes=3))
    x = torch.randn(4, 1, 8, 8)
    out = net(x, torch.full((4,), 0.1))
    assert out.shape == x.shape and not torch.allclose(out, net(x, torch.full((4,), 0.9)))
    assert not torch.allclose(net(x, torch.full((4,), 0.5), torch.zeros(4, dtype=torch.long)),
                              net(x, torch.full((4,), 0.5), torch.ones(4, dtype=torch.long)))
    rebuilt = build_net(net_config(net))
    rebuilt.load_state_dict(net.state_dict())
    torch.testing.assert_close(rebuilt(x, torch.full((4,), 0.3)), net(x, torch.full((4,), 0.3)))
