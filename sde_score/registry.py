"""Name → class registries, so configs and the CLI choose components by name.

A new SDE, predictor, corrector or sampling method is one class plus one decorator line.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Generic, Iterator, List, Optional, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Case-insensitive mapping from a name to a registered object.

    Lookups of unknown names raise ``ValueError`` listing every registered name.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        key = name.lower()

        def decorator(obj: T) -> T:
            if key in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[key] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        if not isinstance(name, str):
            raise ValueError(f"{self.kind} name must be a string, got {name!r}")
        try:
            return self._items[name.lower()]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def values(self) -> list[T]:
        return [self._items[k] for k in self.names()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _dotted_paths(cls: type) -> List[str]:
    """Dotted paths naming ``cls``: its defining module and every parent package that may re-export it
    (``sde_score.models.mlp.ScoreMLP`` and ``sde_score.models.ScoreMLP``)."""
    parts = cls.__module__.split(".")
    return [".".join(parts[:k] + [cls.__qualname__]) for k in range(len(parts), 0, -1)]


class ClassRegistry(Registry[type]):
    """Registry of the classes configs and checkpoints may name (networks, losses).

    A ``class_path`` is a registry name or the dotted path of a registered class, resolved by lookup:
    nothing is ever imported, so a config or a checkpoint cannot make the loader run other code.
    Instances record their constructor arguments in ``init_args`` so that ``config_of`` can write the
    ``{"class_path", "init_args"}`` a checkpoint stores and ``build`` can rebuild them.
    """

    def __init__(self, kind: str, base: type, how_to_register: str) -> None:
        super().__init__(kind)
        self.base = base
        self.how_to_register = how_to_register

    def register(self, name: str) -> Callable[[type], type]:
        def decorator(cls: type) -> type:
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise ValueError(f"only {self.base.__name__} subclasses can be registered as a {self.kind}, "
                                 f"got {cls!r}")
            return Registry.register(self, name)(cls)
        return decorator

    def lookup(self, class_path: object) -> Optional[type]:
        """The registered class named by ``class_path`` (a registry name or a dotted path), else None."""
        if not isinstance(class_path, str):
            return None
        if class_path in self:
            return self.get(class_path)
        for cls in self.values():
            if class_path in _dotted_paths(cls):
                return cls
        return None

    def resolve(self, class_path: object) -> type:
        """Like :meth:`lookup` but raises ``ValueError`` naming what would be accepted."""
        cls = self.lookup(class_path)
        if cls is None:
            raise ValueError(f"{self.kind} class_path {class_path!r} is not a registered {self.kind}; registered: "
                             f"{', '.join(self.names())} ({self.how_to_register})")
        return cls

    @staticmethod
    def class_path_of(cls: type) -> str:
        """The dotted path a checkpoint records for ``cls`` (its defining module's)."""
        return _dotted_paths(cls)[0]

    def build(self, spec: Any) -> Any:
        """An instance of ``base`` as is, or one built from a registry name or from
        ``{"class_path": ..., "init_args": {...}}`` (lookup only)."""
        if isinstance(spec, self.base):
            return spec
        if isinstance(spec, str):
            return self.get(spec)()
        if not isinstance(spec, dict) or "class_path" not in spec:
            raise ValueError(f"{self.kind} must be a {self.base.__name__}, a registered name or a dict with "
                             f"class_path/init_args, got {spec!r}")
        unknown = set(spec) - {"class_path", "init_args"}
        if unknown:
            raise ValueError(f"{self.kind} config has unknown keys {sorted(unknown)}; accepted: class_path, init_args")
        init_args = spec.get("init_args") or {}
        if not isinstance(init_args, dict):
            raise ValueError(f"{self.kind} init_args must be a mapping, got {init_args!r}")
        return self.resolve(spec["class_path"])(**init_args)

    def config_of(self, obj: Any) -> Dict[str, Any]:
        """The class_path/init_args that rebuild ``obj`` (an instance of a registered class)."""
        cls = type(obj)
        if self.lookup(self.class_path_of(cls)) is not cls:
            raise ValueError(f"{cls.__name__} is not a registered {self.kind}, so checkpoints could not rebuild "
                             f"it safely; {self.how_to_register}")
        init_args = getattr(obj, "init_args", None)
        if init_args is None:
            raise ValueError(f"{cls.__name__} does not record its constructor arguments (init_args); "
                             f"checkpoints could not rebuild it")
        return {"class_path": self.class_path_of(cls), "init_args": dict(init_args)}
