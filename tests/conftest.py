import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """(shipped, user profiles) folders of their own: LATENCY_TABLES and LATENCY_HOME point into tmp_path."""
    shipped, home = tmp_path / "shipped", tmp_path / "home"
    shipped.mkdir()
    monkeypatch.setenv("LATENCY_TABLES", str(shipped))
    monkeypatch.setenv("LATENCY_HOME", str(home))
    return shipped, home / "profiles"
