"""Atomic file output: a result file is either complete or absent, never half-written."""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``
    (``os.replace`` is atomic on POSIX), on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:  # not tempfile.mkstemp: its files are private (0600); these get the usual umask mode
        tmp = path.parent / f".{path.stem}.{secrets.token_hex(6)}{path.suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def check_writable_dir(path: PathLike, what: str) -> Path:
    """Create directory ``path`` if needed and prove it writable with a probe file, before any work whose
    results would go there; raises ``PermissionError`` naming ``what`` and the path."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{secrets.token_hex(6)}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise PermissionError(f"{what} {str(path)!r} is not a writable directory ({err.strerror or err}); "
                              f"choose another before the run starts") from None
    return path
