"""Atomic result files."""
import os

import pytest

from sde_score.io import atomic_path, write_json


def test_atomic_write_leaves_no_temp_and_normal_mode(tmp_path):
    write_json(tmp_path / "r.json", {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "half.png") as tmp:
            tmp.write_text("partial")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "r.json").st_mode & 0o777 == 0o666 & ~umask
