"""Reading checkpoints safely: plain data only, and only allow-listed classes named in them.

A checkpoint is data from somewhere else.  Loading one must never import a module or call anything
the package has not allowed, so:

- it is read with ``torch.load(weights_only=True)``: tensors and plain containers, no pickled
  objects (a ``__reduce__`` payload is refused);
- every ``class_path`` in its saved hyper-parameters, at any depth, must name a class some registry
  allows (``allow_classes``: the registered networks and losses) and is resolved
  by lookup, never by import; anything else stops the load before a model is built;
- a truncated, empty or foreign file gives an error naming the path.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch

from .registry import ClassRegistry

PathLike = Union[str, "os.PathLike[str]"]
CLASS_PATH_KEYS = ("class_path", "_class_path")

# Resolvers of allowed class paths, each returning the class or None (lookups, never imports).
# Registered by the layers that own the registries (networks, losses) when they are imported.
_RESOLVERS: List[Callable[[object], Optional[type]]] = []


def allow_classes(resolver: Callable[[object], Optional[type]]) -> Callable[[object], Optional[type]]:
    """Add a resolver of allowed ``class_path`` strings (used as a decorator by registries)."""
    _RESOLVERS.append(resolver)
    return resolver


def allowed_class(class_path: object) -> Optional[type]:
    """The allow-listed class named by ``class_path``, or None."""
    for resolve in _RESOLVERS:
        cls = resolve(class_path)
        if cls is not None:
            return cls
    return None


def check_class_paths(tree: Any, where: str = "checkpoint") -> None:
    """Raise ``ValueError`` if any ``class_path`` in a nested dict/list names a class that is not
    allow-listed, or if a Lightning ``_instantiator`` is not one Lightning trusts."""
    def walk(node: Any, trail: str) -> None:
        if isinstance(node, dict):
            for key in CLASS_PATH_KEYS:
                if key in node and allowed_class(node[key]) is None:
                    raise ValueError(f"{where}: {trail}{key} = {node[key]!r} is not an allowed class; only "
                                     f"registered networks and losses can be named (register your own "
                                     f"with sde_score.register_net / register_loss); nothing was "
                                     f"imported or run")
            if "_instantiator" in node:
                from pytorch_lightning.core.saving import _ALLOWED_INSTANTIATORS

                if node["_instantiator"] not in _ALLOWED_INSTANTIATORS:
                    raise ValueError(f"{where}: {trail}_instantiator = {node['_instantiator']!r} is not one "
                                     f"Lightning trusts; nothing was imported or run")
            for key, value in node.items():
                walk(value, f"{trail}{key}.")
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f"{trail}{i}.")

    walk(tree, "")


def canonical_class_paths(tree: Any) -> Any:
    """A copy of a nested dict/list whose allowed ``class_path`` values (registry names included) are
    the classes' dotted paths, the form a config parser resolves (it would try to import "dsm")."""
    if isinstance(tree, dict):
        out = {k: canonical_class_paths(v) for k, v in tree.items()}
        for key in CLASS_PATH_KEYS:
            cls = allowed_class(out.get(key)) if key in out else None
            if cls is not None:
                out[key] = ClassRegistry.class_path_of(cls)
        return out
    if isinstance(tree, (list, tuple)):
        return type(tree)(canonical_class_paths(v) for v in tree)
    return tree


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    return path.read_bytes()


def load_plain(data: Union[bytes, PathLike], path: Optional[PathLike] = None, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` of a file's bytes (or of the file ``data`` names): tensors and plain
    containers only; a pickled object, a truncated or foreign file is a ``ValueError`` naming the path."""
    if not isinstance(data, bytes):
        path = Path(data)
        data = _read_bytes(path)
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" in str(err):  # a pickled object naming a callable (e.g. a __reduce__ payload)
            raise ValueError(f"checkpoint {str(path)!r} holds pickled objects, not plain data; refusing to "
                             f"load it (only tensors and plain containers are read)") from None
        raise ValueError(f"checkpoint {str(path)!r} is truncated or not a checkpoint ({err})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as err:
        raise ValueError(f"checkpoint {str(path)!r} is truncated or not a checkpoint "
                         f"({type(err).__name__}: {err})") from None


def read_checkpoint(path: PathLike, map_location: Any = "cpu") -> Tuple[Dict[str, Any], io.BytesIO]:
    """Load a Lightning checkpoint as plain data and check its hyper-parameters' class paths.

    Returns the checkpoint dict and a stream of the very bytes that were checked (for Lightning's
    loaders, so that what is checked is what is loaded); raises ``FileNotFoundError`` for a missing
    file and ``ValueError`` for a truncated or foreign file, pickled objects, or a class path that
    is not allowed.
    """
    path = Path(path)
    data = _read_bytes(path)
    ckpt = load_plain(data, path, map_location)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"checkpoint {str(path)!r} is not a Lightning checkpoint (no state_dict)")
    check_class_paths(ckpt.get("hyper_parameters", {}), where=f"checkpoint {str(path)!r}")
    return ckpt, io.BytesIO(data)
