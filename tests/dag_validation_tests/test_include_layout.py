"""The shape of include/: each module says its job, and domain code imports no Airflow or pandas.

DAG files are parsed every few seconds by the dag-processor and import include/ modules; the
domain modules stay cheap to import and testable without Airflow. The connection checks' sensor
classes are the one exception by design: they subclass provider sensors, so their modules
(``checks/*_sensor.py``) import Airflow, and only the check DAG files import them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted((REPO / "include").rglob("*.py"))
HEAVY = ("airflow", "pandas", "numpy", "azure", "requests", "aiohttp")
AIRFLOW_GLUE = {"storage_sensor.py", "model_service_sensor.py"}
# The reference model service is a FastAPI app with a numpy model, not DAG-side code.
STANDALONE = REPO / "include" / "model_service"


def module_level_imports(tree: ast.Module) -> set[str]:
    """Top-level packages imported at module level (not inside functions or TYPE_CHECKING)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_module_opens_with_a_docstring_that_says_its_job(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert docstring, f"{path.relative_to(REPO)} has no module docstring"
    first = docstring.splitlines()[0]
    message = f"{path.relative_to(REPO)}: the first line should say its job: {first!r}"
    assert len(first) >= 20, message
    assert first.endswith((".", ":")), message


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if STANDALONE not in p.parents and p.name not in AIRFLOW_GLUE],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_domain_modules_import_no_airflow_and_no_heavy_library_at_module_level(path: Path) -> None:
    imported = module_level_imports(ast.parse(path.read_text(encoding="utf-8")))
    assert not imported & set(HEAVY), f"{path.relative_to(REPO)} imports {imported & set(HEAVY)}"
