"""The laptop's install: requirements.txt, requirements-server.txt and pyproject.toml say the same, and the laptop's
list carries none of the school server's parts (issue 31: Ray and psycopg went to every teacher)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _requirements(name: str) -> list[str]:
    lines = [line.split("#")[0].strip() for line in (ROOT / name).read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("-r")]


def test_pyproject_declares_requirements_txt_and_the_server_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == _requirements("requirements.txt")
    assert project["optional-dependencies"]["server"] == _requirements("requirements-server.txt")
    assert project["scripts"]["digitlab"] == "digitlab.cli:main"


def test_the_laptop_install_has_no_ray_and_no_postgresql_driver():
    names = {r.split("[")[0].split("=")[0].split(">")[0].split("<")[0].lower() for r in _requirements("requirements.txt")}
    assert not names & {"ray", "psycopg", "psycopg2", "psycopg-binary"}
    assert {"torch", "torchvision", "streamlit", "streamlit-drawable-canvas", "plotly", "pandas"} <= names
