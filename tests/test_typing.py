"""The static type checker over the package (``make lint`` runs it too): a change that
breaks a public signature's types fails here, in CI."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_finds_no_errors():
    mypy = Path(sys.executable).with_name("mypy")
    if not mypy.exists() and shutil.which("mypy") is None:
        pytest.fail("mypy is not installed: `make test` installs the dev extras, which include it")
    cmd = [str(mypy) if mypy.exists() else "mypy"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
