"""The networks a config or a checkpoint may name: the only classes ``build_net`` will build.

A checkpoint's ``net: {class_path: ..., init_args: ...}`` is resolved here by lookup, never by
import, so a checkpoint cannot make the loader import a module or call anything else.  Register
your own network once (``@register_net("mynet")`` on the class) to train it from YAML and to load
its checkpoints.
"""
from __future__ import annotations

from typing import Any, Dict, Union

from torch import nn

from ..checkpoints import allow_classes
from ..registry import ClassRegistry

NETWORKS = ClassRegistry("network", nn.Module, "register your own with @sde_score.register_net(\"name\") "
                                               "on the class")
register_net = NETWORKS.register
registered_net = NETWORKS.lookup
net_class = NETWORKS.resolve
allow_classes(NETWORKS.lookup)  # checkpoints may name registered networks, nothing else of this layer


def build_net(net: Union[nn.Module, Dict[str, Any]]) -> nn.Module:
    """An nn.Module as is, or one built from {"class_path": ..., "init_args": {...}} naming a registered
    network (lookup only: a config or checkpoint cannot make this call arbitrary code)."""
    if isinstance(net, str):
        raise ValueError(f"net must be an nn.Module or a dict with class_path/init_args, got {net!r}")
    return NETWORKS.build(net)


def net_config(net: nn.Module) -> Dict[str, Any]:
    """The class_path/init_args a checkpoint records to rebuild ``net`` (a registered network)."""
    return NETWORKS.config_of(net)
