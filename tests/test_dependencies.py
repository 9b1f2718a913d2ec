"""Every third-party module the package imports is a runtime dependency in pyproject.toml (not only
a test extra): `pip install .` alone must give a milter that starts. PyNaCl was once only a test
dependency while the DKIM verifier imported it."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "milter" / "mailpolicy"
OWN = {"mailpolicy"}


def imported_top_level_modules() -> set[str]:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - OWN - set(sys.stdlib_module_names)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_module_comes_from_a_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {normalized(re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    modules = imported_top_level_modules()
    assert {"Milter", "dkim", "spf", "nacl", "cryptography", "msgspec"} <= modules
    missing = {}
    for module in sorted(modules):
        dists = {normalized(d) for d in providers.get(module, [])}
        assert dists, f"{module}: no installed distribution provides it"
        if not dists & runtime:
            missing[module] = sorted(dists)
    assert not missing, f"imported by the package but not in [project] dependencies: {missing}"
