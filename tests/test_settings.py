"""Every DIGITLAB_* setting is declared once (digitlab/settings.py), listed in the README as declared, and read
through settings alone: no other module reads one from os.environ."""

import ast
import re
from pathlib import Path

import pytest

from digitlab import settings

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "digitlab"


def readme_table() -> list[tuple[str, str, str]]:
    """The rows of the README's Settings table: (name, default, meaning)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `DIGITLAB_")]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in rows]
    return [(name.strip("`"), default, meaning) for name, default, meaning in cells]


def test_the_readme_lists_every_setting_with_its_default_and_meaning_as_declared():
    assert readme_table() == settings.table()
    assert [name for name, _, _ in readme_table()] == [s.name for s in settings.SETTINGS]


def environ_reads(source: str) -> list[str]:
    """The DIGITLAB_* variables a module reads from the environment by name: os.environ.get(X), os.getenv(X),
    os.environ[X] (read, not written), X a literal or a module-level name bound to one."""
    tree = ast.parse(source)
    names: dict[str, str] = {}
    for node in tree.body:  # NAME = "DIGITLAB_X" and A, B = "DIGITLAB_A", "DIGITLAB_B"
        if isinstance(node, ast.Assign):
            for target in node.targets:
                pairs = zip(target.elts, node.value.elts, strict=False) if isinstance(target, ast.Tuple) and \
                    isinstance(node.value, ast.Tuple) else [(target, node.value)]
                for t, v in pairs:
                    if isinstance(t, ast.Name) and isinstance(v, ast.Constant) and isinstance(v.value, str):
                        names[t.id] = v.value

    def named(arg: ast.AST) -> str:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
        return names.get(arg.id, "") if isinstance(arg, ast.Name) else ""

    def is_environ(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "environ" or \
            isinstance(node, ast.Name) and node.id == "environ"

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute):
            f = node.func
            if (f.attr in ("get", "pop", "setdefault") and is_environ(f.value)) or f.attr == "getenv":
                found.append(named(node.args[0]))
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and is_environ(node.value):
            found.append(named(node.slice))
    return [n for n in found if n.startswith("DIGITLAB_")]


def test_the_scan_finds_each_way_a_module_could_read_a_setting():
    """The scan below must see a read however it is written, and not take a write or a copy for one."""
    source = '''
import os
from os import environ
KEY_ENV, OTHER = "DIGITLAB_QUEUE_KEY", 3
a = os.environ.get("DIGITLAB_MODEL_DIR", "models")
b = os.getenv("DIGITLAB_OFFLINE")
c = os.environ["DIGITLAB_THREADS"]
d = environ.get(KEY_ENV)
os.environ["DIGITLAB_PRECISION"] = "fp32"
env = {**os.environ, "DIGITLAB_RAY_ADDRESS": ""}
'''
    assert environ_reads(source) == ["DIGITLAB_MODEL_DIR", "DIGITLAB_OFFLINE", "DIGITLAB_THREADS",
                                     "DIGITLAB_QUEUE_KEY"]


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).as_posix() != "settings.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_module_but_settings_reads_a_digitlab_variable_from_the_environment(path):
    reads = environ_reads(path.read_text())
    assert reads == [], f"{path.relative_to(ROOT)} reads {reads} from os.environ: use settings.get / is_set"


def test_every_setting_the_code_asks_for_is_declared():
    asked = set()
    for path in PACKAGE.rglob("*.py"):
        asked |= set(re.findall(r"settings\.(?:get|is_set|put)\(\s*\"(DIGITLAB_[A-Z_]+)\"", path.read_text()))
    assert asked and asked <= set(settings.BY_NAME)
