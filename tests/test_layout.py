"""The library's modules are the README's Layout list, and imports run one way down it."""

import ast
import re

from tests.conftest import REPO

LIBRARY = REPO / "mobilenet_jax"


def readme_layout():
  """The module names of the README's Layout list, in order."""
  section = (REPO / "README.md").read_text().split("## Layout\n", 1)[1].split("\n## ", 1)[0]
  return re.findall(r"^- `(\w+)\.py`:", section, flags=re.M)


def project_imports(tree):
  """(module imported, whether at module level) for every import of a project module."""
  top_level = set(map(id, tree.body))
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mobilenet_jax"):
      names = ([alias.name for alias in node.names] if node.module == "mobilenet_jax"
               else [node.module.split(".")[1]])
      for name in names:
        yield name, id(node) in top_level


def test_the_readme_lists_every_module_once():
  modules = sorted(p.stem for p in LIBRARY.glob("*.py") if p.stem != "__init__")
  assert sorted(readme_layout()) == modules


def test_modules_import_only_modules_above_them_and_only_at_module_level():
  order = {name: i for i, name in enumerate(readme_layout())}
  for name, position in order.items():
    for imported, at_top in project_imports(ast.parse((LIBRARY / f"{name}.py").read_text())):
      assert at_top, f"{name}.py imports {imported} inside a function"
      assert order[imported] < position, f"{name}.py imports {imported}, listed below it"


def test_entry_points_and_tests_import_project_modules_at_module_level():
  files = [REPO / "launch.py", *REPO.glob("benchmarks/*.py"), *REPO.glob("tests/*.py"),
           *REPO.glob("experiments/*.py")]
  for path in files:
    for imported, at_top in project_imports(ast.parse(path.read_text())):
      assert at_top, f"{path.relative_to(REPO)} imports {imported} inside a function"
