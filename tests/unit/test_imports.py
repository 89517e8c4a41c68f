"""The modules of webapp/ and worker/ import each other without a cycle, so each can be
read (and loaded) on top of the ones it names. Imports inside functions count too: a cycle
put off until call time is still two modules that each need the other."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("webapp", "worker")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The modules of ours that `path` imports (a package's __init__ only when it is named
    itself, not as the parent every submodule import passes through)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:  # `from . import releases` names a module, `from .x import y` a name
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {module for module in found if module in known and module != name}


def import_graph() -> dict[str, set[str]]:
    paths = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    known = {module_name(path) for path in paths}
    return {module_name(path): imports_of(path, known) for path in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that ends where it began, or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        for imported in sorted(graph[module]):
            cycle = visit(imported, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle:
            return cycle
    return None


def test_the_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_webapp_and_worker_have_no_import_cycle():
    graph = import_graph()
    assert "webapp.releases" in graph and graph["webapp.releases"], "the walk found no imports"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_web_process_loads_no_migration_tool_and_flask_db_still_migrates(tmp_path):
    """Serving and working never migrate, so `import wsgi` (what gunicorn does) leaves alembic and
    Flask-Migrate unloaded (~11 MB of every web process); the `flask` command still has `flask db`."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "SECRET_KEY": "test-secret", "REDIS_URL": "",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}", "RELEASEGATE_INSTANCE": str(tmp_path / "instance")}
    env.pop("FLASK_APP", None)
    served = subprocess.run([sys.executable, "-c", "import sys, wsgi; print(sorted(m for m in sys.modules "
                             "if m.split('.')[0] in ('alembic', 'flask_migrate')))"],
                            cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert served.stdout.strip() == "[]"
    migrated = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
                              cwd=ROOT, env=env, capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stderr
    current = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "current"],
                             cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert "(head)" in current.stdout
