"""The layout of the tests: no module imports from a test module (``test_*.py``), and no command line
runs one. What several test modules share lives in a helper module of their package or, for
fixtures, in a ``conftest.py``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
#: a dotted module path whose last part is a test module, as in ``python -m tests.studies.test_x``
RUNS_A_TEST_MODULE = re.compile(r"^tests(\.\w+)*\.test_\w+$")


def test_module_uses(root: Path) -> list[str]:
    """``path:line: what`` for each import from a test module, and each string that names one as a
    module to run, in the Python files under ``root`` (whose parent is the import root)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root.parent)
        package = list(where.parent.parts)
        uses = []
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                module = base + (node.module.split(".") if node.module else [])
                if module[-1].startswith("test_") or any(a.name.startswith("test_") for a in node.names):
                    uses.append((node.lineno, f"from {'.' * node.level}{node.module or ''} import "
                                 + ", ".join(a.name for a in node.names)))
            elif isinstance(node, ast.Import):
                uses += [(node.lineno, f"import {a.name}") for a in node.names
                         if any(part.startswith("test_") for part in a.name.split("."))]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if RUNS_A_TEST_MODULE.match(node.value):
                    uses.append((node.lineno, f"runs {node.value}"))
        found += [f"{where}:{line}: {what}" for line, what in sorted(uses)]
    return found


test_module_uses.__test__ = False  # a helper of the tests below, not a test


def test_no_module_imports_from_or_runs_a_test_module():
    assert test_module_uses(TESTS) == []


def test_the_check_sees_every_form_of_such_an_import(tmp_path):
    pkg = tmp_path / "tests" / "studies"
    pkg.mkdir(parents=True)
    (pkg / "test_sweep.py").write_text("def fake_record(): ...\n")
    (pkg / "helpers.py").write_text("def write_study(): ...\n")
    (pkg / "test_other.py").write_text(
        "import tests.studies.test_sweep\n"
        "from tests.studies.test_sweep import fake_record\n"
        "from .test_sweep import fake_record\n"
        "from . import test_sweep\n"
        "from tests.studies import test_sweep\n"
        "from .helpers import write_study\n"
        "from tests.studies.helpers import write_study\n"
        "import pytest\n"
        "def f():\n"
        "    from ..studies.test_sweep import fake_record\n"
        "    return ['python', '-m', 'tests.studies.test_sweep', 'tests.studies.helpers']\n"
    )
    found = test_module_uses(tmp_path / "tests")
    assert [line.split(": ", 1)[0] for line in found] == [f"tests/studies/test_other.py:{n}"
                                                          for n in (1, 2, 3, 4, 5, 10, 11)]
