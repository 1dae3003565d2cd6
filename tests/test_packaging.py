"""The install ships every package of the library and the profilers (a wheel once lacked latency.whatif)."""

import os

import pytest
from setuptools import find_packages

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_package_with_an_init_is_found_by_the_install_config():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        find = tomllib.load(f)["tool"]["setuptools"]["packages"]["find"]
    found = set(find_packages(ROOT, include=find["include"]))
    on_disk = set()
    for top in ("latency", "profilers"):
        for d, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [x for x in dirs if x != "__pycache__"]
            if "__init__.py" in files:
                on_disk.add(os.path.relpath(d, ROOT).replace(os.sep, "."))
    assert {"latency.whatif", "latency.cost", "latency.report"} <= on_disk
    assert on_disk <= found, sorted(on_disk - found)
    assert not any(p.startswith("tests") for p in found)
