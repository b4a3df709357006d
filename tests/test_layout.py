"""The library's packages import one way: each only the packages its row of LAYERS allows, at
module level; the README's Layout lists every module."""

import ast
import re

from tests.helpers import REPO

LIBRARY = REPO / "mobilenet_jax"
# Package -> the packages its modules may import. The root modules (the loop's composition, the
# modes, prepare_data) sit above every package and import among themselves in ROOT_ORDER.
LAYERS = {
  "core": set(),
  "models": {"core"},
  "counting": {"core", "models"},
  "data": {"core"},
  "train": {"core", "models", "counting", "data"},  # never deploy: the loop exports nothing
  "deploy": {"core", "models", "data", "train"},
  "config": {"core", "models", "data", "train", "deploy"},
  "sweeps": {"core", "config", "counting"},  # never the trainer: members are processes
}
ROOT_ORDER = ("prepare_data", "evaluate", "trainer", "modes")
# (module, what it imports inside a function): only these, each for the import time it saves.
IMPORTED_WHEN_USED = {("modes", "sweeps.ray_launcher")}  # Ray's, in every member process


def modules():
  """{'package.module' or 'module': path} of every library module but the __init__ files."""
  return {
    ".".join(p.relative_to(LIBRARY).with_suffix("").parts): p
    for p in LIBRARY.rglob("*.py")
    if p.stem != "__init__"
  }


def project_imports(tree):
  """('package.module' or root 'module' imported, whether at module level) for every import."""
  top_level = set(map(id, tree.body))
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mobilenet_jax"):
      base = node.module.split(".")[1:]
      for alias in node.names:
        yield ".".join(base + [alias.name]) if base else alias.name, id(node) in top_level


def readme_layout():
  section = (REPO / "README.md").read_text().split("## Layout\n", 1)[1].split("\n## ", 1)[0]
  return re.findall(r"^- `([\w/]+)\.py`:", section, flags=re.M)


def test_the_readme_lists_every_module_once():
  listed = [name.replace("/", ".") for name in readme_layout()]
  assert sorted(listed) == sorted(modules())


def test_every_package_is_in_the_table():
  packages = {p.name for p in LIBRARY.iterdir() if (p / "__init__.py").exists()}
  assert packages == set(LAYERS)


def test_packages_import_only_the_packages_below_them_at_module_level():
  for name, path in modules().items():
    package = name.split(".")[0] if "." in name else None
    for imported, at_top in project_imports(ast.parse(path.read_text())):
      assert at_top or (name, imported) in IMPORTED_WHEN_USED, f"{name} imports {imported} inside"
      target = imported.split(".")[0] if "." in imported else None
      if package is None:  # a root module: any package, and the root modules before it
        assert target or ROOT_ORDER.index(imported) < ROOT_ORDER.index(name), (name, imported)
      else:
        assert target in LAYERS[package] | {package}, f"{name} imports {imported}"


def test_modules_within_a_package_import_one_way():
  """No cycle inside a package: a module's imports of its siblings form an order."""
  graph = {}
  for name, path in modules().items():
    if "." in name:
      package = name.split(".")[0]
      graph[name] = {
        i for i, _ in project_imports(ast.parse(path.read_text())) if i.startswith(package + ".")
      }
  done = set()

  def visit(node, trail):
    assert node not in trail, f"import cycle: {' -> '.join(trail + [node])}"
    if node not in done:
      for child in graph.get(node, ()):
        visit(child, trail + [node])
      done.add(node)

  for node in graph:
    visit(node, [])


def test_entry_points_and_tests_import_project_modules_at_module_level():
  files = [
    REPO / "launch.py",
    *REPO.glob("benchmarks/*.py"),
    *REPO.glob("tests/*.py"),
    *REPO.glob("experiments/*.py"),
  ]
  for path in files:
    for imported, at_top in project_imports(ast.parse(path.read_text())):
      assert at_top, f"{path.relative_to(REPO)} imports {imported} inside a function"


def test_no_dispatch_on_a_config_name_ends_in_a_catch_all_else():
  """Extension points are registries (dicts) read by name, not if-chains with a default."""
  for name, path in modules().items():
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.If) and node.orelse and not isinstance(node.orelse[0], ast.If):
        test = ast.unparse(node.test)
        assert not re.search(r"\b(name|mode|kind|impl|format|dataset|launcher)\s*[!=]=", test), (
          f"{name}: `if {test}: ... else:` dispatches on a config name"
        )
