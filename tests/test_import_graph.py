"""The core's imports run one way: no module of crystalflow_core imports, directly or through others, a module
that imports it. Every import statement counts, those inside functions too."""

import ast
from pathlib import Path

import crystalflow_core

CORE = Path(crystalflow_core.__file__).parent


def module_name(path: Path) -> str:
    """``crystalflow_core/data/cif.py`` → ``crystalflow_core.data.cif``; a package's ``__init__.py`` → the package."""
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that the file ``path`` imports anywhere in it (``from . import x`` names the
    module ``x`` where there is one, else the package)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            submodules = {f"{target}.{alias.name}" for alias in node.names} & modules
            found.update(submodules or {target})
    return (found & modules) - {name}


def import_graph() -> dict[str, set[str]]:
    files = sorted(CORE.rglob("*.py"))
    modules = {module_name(path) for path in files}
    return {module_name(path): imported_modules(path, modules) for path in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as ``[a, b, ..., a]``, or ``None`` when there is none (depth-first search)."""
    done: set[str] = set()
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in stack:
            return [*stack[stack.index(node) :], node]
        if node in done:
            return None
        stack.append(node)
        for target in sorted(graph[node]):
            cycle = visit(target)
            if cycle:
                return cycle
        stack.pop()
        done.add(node)
        return None

    return next((cycle for node in sorted(graph) if (cycle := visit(node))), None)


def test_find_cycle_finds_a_circle_and_only_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_relative_absolute_and_local_imports():
    graph = import_graph()
    assert "crystalflow_core.checks" in graph["crystalflow_core.train"]  # from .checks import ...
    assert "crystalflow_core.so3" in graph["crystalflow_core.data.symmetry"]  # from crystalflow_core import so3
    assert "crystalflow_core.train" in graph["crystalflow_core.cli"]  # inside a handler


def test_the_core_has_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " → ".join(cycle)


def test_checks_and_file_writing_sit_below_training_and_records():
    graph = import_graph()
    for low in ("crystalflow_core.checks", "crystalflow_core.files", "crystalflow_core.errors"):
        upward = graph[low] & {f"crystalflow_core.{name}" for name in ("train", "records", "params", "inference")}
        assert not upward, f"{low} imports {upward}"


def test_the_settings_the_command_line_reads_sit_at_the_bottom():
    """The names and defaults that build the command line's options import no other module of the core (nor any
    library: ``test_cli`` checks that), so that ``crystalflow COMMAND --help`` loads nothing of the library."""
    graph = import_graph()
    for low in ("crystalflow_core.settings", "crystalflow_core.data.shards"):
        assert graph[low] == set(), f"{low} imports {graph[low]}"
