"""The layout of tests/: helpers in tests/support, fixtures in conftests, tests in test modules.

Read with ``ast``, nothing is imported. The rules:

* no module under tests/ imports a test module or a conftest: shared helpers live in
  ``tests/support/`` (``tests.support...`` is the only ``tests.`` package that may be imported);
* a ``conftest.py`` holds fixtures and pytest hooks only (and the imports they need);
* outside tests/support, a test package holds ``__init__.py``, ``conftest.py`` and ``test_*.py``
  only (a benchmark is a script: it lives under ``scripts/``);
* each tests/support module opens with a docstring whose first line says its job, and defines
  no fixture and no test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
SUPPORT = TESTS / "support"
PYTHON_FILES = sorted(TESTS.rglob("*.py"))
HOOK_VARIABLES = {"pytest_plugins", "collect_ignore", "collect_ignore_glob"}


def module_name(path: Path) -> str:
    """The dotted name of a file under tests/ (tests are packages: tests/__init__.py)."""
    parts = path.relative_to(TESTS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def forbidden(name: str) -> bool:
    """Anything of tests/ other than tests.support, or a test module or conftest by its bare
    name (as pytest's rootdir-relative import modes could make importable)."""
    parts = name.split(".")
    if parts[0] != "tests":
        return parts[0] == "conftest" or parts[0].startswith("test_")
    if len(parts) == 1:
        return False  # ``import tests`` / ``from tests import support``: judged by the names
    if parts[1] != "support":
        return True
    return any(part == "conftest" or part.startswith("test_") for part in parts[2:])


def forbidden_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """``line N: name`` of each forbidden module an import statement brings in, anywhere in
    ``source`` (the module ``module``), relative imports resolved. For ``from X import a``:
    ``X`` if it is forbidden, else ``X.a`` if that is (``a`` may be a module)."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if forbidden(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [base])])
            names = [base] if forbidden(base) else []
            names = names or [
                f"{base}.{a.name}" for a in node.names if forbidden(f"{base}.{a.name}")
            ]
        else:
            continue
        found += [(node.lineno, name) for name in names]
    return [f"line {line}: {name}" for line, name in sorted(found)]


def is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(target, ast.Attribute) and target.attr == "fixture") or (
        isinstance(target, ast.Name) and target.id == "fixture"
    )


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def where(path: Path) -> str:
    return str(path.relative_to(TESTS.parent))


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        pytest.param("from {t}.integration_tests.test_simulator_dag import PREFIX",
                     "tests.a.test_b", ["line 1: tests.integration_tests.test_simulator_dag"],
                     id="from-a-test-module"),
        pytest.param("from {t}.integration_tests import test_simulator_dag as rows",
                     "tests.a.test_b", ["line 1: tests.integration_tests"],
                     id="a-test-module-from-its-package"),
        pytest.param("import {t}.e2e_tests.airflow_api", "tests.a.test_b",
                     ["line 1: tests.e2e_tests.airflow_api"], id="a-helper-outside-support"),
        pytest.param("from {t}.conftest import wasb_connection", "tests.a.test_b",
                     ["line 1: tests.conftest"], id="from-the-root-conftest"),
        pytest.param("from {t} import conftest", "tests.a.test_b",
                     ["line 1: tests.conftest"], id="the-root-conftest"),
        pytest.param("from .conftest import ADMIN", "tests.plugin_tests.test_x",
                     ["line 1: tests.plugin_tests.conftest"], id="relative-conftest"),
        pytest.param("from .. import test_simulator_dag", "tests.integration_tests.bad.test_x",
                     ["line 1: tests.integration_tests"], id="relative-test-module"),
        pytest.param("def f():\n    from {t}.unit_tests.contract_examples import BODY",
                     "tests.a.test_b", ["line 2: tests.unit_tests.contract_examples"],
                     id="inside-a-function"),
        pytest.param("import conftest\nfrom test_simulator_dag import PREFIX", "tests.a.test_b",
                     ["line 1: conftest", "line 2: test_simulator_dag"], id="by-bare-name"),
        pytest.param("from {t}.support.rows import NORMAL_1\nfrom {t}.support import rows\n"
                     "import {t}.support.dashboard", "tests.a.test_b", [], id="support-is-fine"),
        pytest.param("from . import rows", "tests.support", [], id="support-among-itself"),
        pytest.param("from include.painting_simulator import ledger\n"
                     "from scripts import local_services", "tests.a.test_b", [],
                     id="the-package-and-scripts-are-fine"),
    ],
)  # fmt: skip
def test_the_import_rule_finds_what_it_must_and_only_that(source, module, expected):
    # The sources say {t} for tests: `grep -rn "from tests\." tests` finds real imports only.
    source = source.format(t="tests")
    assert forbidden_imports(source, module, is_package=module == "tests.support") == expected


def test_no_module_under_tests_imports_a_test_module_or_a_conftest():
    found = {
        where(path): hits
        for path in PYTHON_FILES
        if (
            hits := forbidden_imports(
                path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py"
            )
        )
    }
    assert found == {}, "shared helpers belong in tests/support/: " + repr(found)


def test_conftests_hold_fixtures_and_hooks_only():
    conftests = [path for path in PYTHON_FILES if path.name == "conftest.py"]
    assert len(conftests) >= 4
    found: dict[str, list[str]] = {}
    for path in conftests:
        body = parse(path).body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
                node.name.startswith("pytest_") or any(map(is_fixture, node.decorator_list))
            ):
                continue
            targets = node.targets if isinstance(node, ast.Assign) else []
            if targets and all(isinstance(t, ast.Name) and t.id in HOOK_VARIABLES for t in targets):
                continue
            name = getattr(node, "name", type(node).__name__)
            found.setdefault(where(path), []).append(f"line {node.lineno}: {name}")
    assert found == {}, "not a fixture nor a hook (move it to tests/support/): " + repr(found)


def test_test_packages_hold_test_modules_only():
    found = [
        where(path)
        for path in PYTHON_FILES
        if not path.is_relative_to(SUPPORT)
        and path.name not in ("__init__.py", "conftest.py")
        and not path.name.startswith("test_")
    ]
    assert found == [], "helpers go to tests/support/, benchmarks to scripts/: " + repr(found)


def test_every_support_module_says_its_job_and_defines_no_fixture_or_test():
    modules = sorted(SUPPORT.glob("*.py"))
    assert len(modules) >= 10
    found: dict[str, list[str]] = {}
    for path in modules:
        tree = parse(path)
        doc = ast.get_docstring(tree)
        if not doc or not doc.splitlines()[0].strip():
            found.setdefault(where(path), []).append("no docstring saying what it is for")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if any(map(is_fixture, node.decorator_list)):
                    found.setdefault(where(path), []).append(f"fixture {node.name}")
                if node.name.startswith("test_") and node in tree.body:
                    found.setdefault(where(path), []).append(f"test {node.name}")
            if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                found.setdefault(where(path), []).append(f"test class {node.name}")
    assert found == {}, found
