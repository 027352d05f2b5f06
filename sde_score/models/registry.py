"""The networks a config or a checkpoint may name: the only classes ``build_net`` will build.

A checkpoint's ``net: {class_path: ..., init_args: ...}`` is resolved here by lookup, never by
import, so a checkpoint cannot make the loader import a module or call anything else.  Register
your own network once (``@register_net("mynet")`` on the class) to train it from YAML and to load
its checkpoints.
"""
from __future__ import annotations

from typing import Callable, Optional

from torch import nn

from ..checkpoints import allow_classes
from ..registry import Registry

NETWORKS: Registry[type] = Registry("network")


def register_net(name: str) -> Callable[[type], type]:
    """Class decorator: allow ``name`` (and the class's dotted path) in configs and checkpoints."""
    def decorator(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ValueError(f"only nn.Module subclasses can be registered as networks, got {cls!r}")
        return NETWORKS.register(name)(cls)
    return decorator


def _paths(cls: type) -> list:
    """Dotted paths naming ``cls``: its defining module and every parent package that may re-export it
    (``sde_score.models.mlp.ScoreMLP`` and ``sde_score.models.ScoreMLP``)."""
    parts = cls.__module__.split(".")
    return [".".join(parts[:k] + [cls.__qualname__]) for k in range(len(parts), 0, -1)]


def registered_net(class_path: object) -> Optional[type]:
    """The registered network named by ``class_path`` (a registry name or a dotted path), else None.
    Resolves by lookup only: nothing is imported."""
    if not isinstance(class_path, str):
        return None
    if class_path in NETWORKS:
        return NETWORKS.get(class_path)
    for cls in NETWORKS.values():
        if class_path in _paths(cls):
            return cls
    return None


def net_class(class_path: object) -> type:
    """Like :func:`registered_net` but raises ``ValueError`` naming what would be accepted."""
    cls = registered_net(class_path)
    if cls is None:
        raise ValueError(f"network class_path {class_path!r} is not a registered network; registered: "
                         f"{', '.join(NETWORKS.names())} (register your own with sde_score.register_net)")
    return cls


def class_path_of(cls: type) -> str:
    """The dotted path a checkpoint records for a network class (its defining module's)."""
    return _paths(cls)[0]


allow_classes(registered_net)  # checkpoints may name registered networks, nothing else of this layer
