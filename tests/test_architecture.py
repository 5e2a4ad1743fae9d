"""The package's architecture, measured from its sources with ``ast``.

* the import graph of ``benchmark`` and ``baselines``: module-level and function-level
  imports, the cycles between modules (strongly connected components);
* the layers import downward only: data -> models/solvers -> training ->
  tuning/regression/report/perf -> cli, with the shared foundation (config, errors,
  atomic writes, locks, metrics, tracking, ...) below them all and ``baselines`` beside
  training;
* function-level imports, counted (the ones left are listed with their reason);
* the largest functions: lines and cyclomatic complexity (decision points + 1).

``python tests/test_architecture.py`` prints the figures; ``pytest -s`` shows them too.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.paths import REPO_ROOT
else:
    from tests.paths import REPO_ROOT

PACKAGES = ("benchmark", "baselines")


@dataclass(frozen=True)
class Import:
    """One import statement's target module, where it stands and whether it is inside a function."""

    source: str
    target: str
    line: int
    in_function: bool


@dataclass(frozen=True)
class Function:
    """A function or method: where it is, its length in lines and its cyclomatic complexity."""

    module: str
    name: str
    line: int
    lines: int
    complexity: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> dict[str, Path]:
    """Every module of the packages by dotted name."""
    files: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            files[module_name(path)] = path
    return files


def _resolve(node: ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> list[str]:
    """The project modules an ``from X import a, b`` names (``X.a`` when ``a`` is a submodule)."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    targets = []
    for alias in node.names:
        candidate = f"{prefix}.{alias.name}"
        targets.append(candidate if candidate in known else prefix)
    return targets


def _owning_module(name: str, known: set[str]) -> str | None:
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


class _ImportCollector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, known: set[str]) -> None:
        self.module, self.is_package, self.known = module, is_package, known
        self.depth = 0
        self.type_checking = 0
        self.imports: list[Import] = []

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        guard = ast.unparse(node.test)
        if guard in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):  # annotations only, never executed
            return
        self.generic_visit(node)

    def _add(self, target: str, line: int) -> None:
        owner = _owning_module(target, self.known)
        if owner is not None and owner != self.module:
            self.imports.append(Import(self.module, owner, line, self.depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for target in _resolve(node, self.module, self.is_package, self.known):
            self._add(target, node.lineno)


def collect_imports() -> list[Import]:
    """Every import of a project module by a project module."""
    files = source_files()
    known = set(files)
    imports: list[Import] = []
    for module, path in files.items():
        collector = _ImportCollector(module, path.name == "__init__.py", known)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        imports.extend(collector.imports)
    return imports


def cycles(imports: list[Import], key=lambda module: module) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan) of the graph ``key(source) -> key(target)``."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        a, b = key(imp.source), key(imp.target)
        graph.setdefault(a, set())
        graph.setdefault(b, set())
        if a != b:
            graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(found)


# ----------------------------------------------------------------------------- layers

LAYERS: dict[str, int] = {
    # the foundation every layer may use
    "benchmark.errors": 0, "benchmark.config": 0, "benchmark.atomic": 0, "benchmark.locks": 0,
    "benchmark.stores": 0, "benchmark.repository": 0, "benchmark.threads": 0, "benchmark.metrics": 0,
    "benchmark.tracking": 0, "benchmark.evaluation": 0, "benchmark.ensemble": 0, "benchmark.artifacts": 0,
    "benchmark.hyperparams": 0, "benchmark.parallel_seeds": 0,
    "benchmark.data": 1,
    "benchmark.models": 2, "benchmark.solvers": 2,
    "benchmark.training": 3, "baselines": 3,
    "benchmark.tuning": 4, "benchmark.regression": 4, "benchmark.report": 4, "benchmark.perf": 4,
    "benchmark.pub": 4,
    "benchmark.ui": 4,
    "benchmark.cli": 5,
}
"""Layer of each package/module (longest matching prefix): imports go to the same or a lower layer.
A ``benchmark`` package's ``commands`` module is the command line of that package and sits with ``cli``;
``baselines.commands`` also holds the runs the pipeline and the regression check call (``run_lstm``),
so it stays with ``baselines``."""


def layer_of(module: str) -> tuple[str, int]:
    """``(layer key, level)`` of a module; a package's ``commands`` module counts as the command line."""
    if module.startswith("benchmark.") and module.endswith(".commands"):
        return "cli", LAYERS["benchmark.cli"]
    name = module
    while name:
        if name in LAYERS:
            return name, LAYERS[name]
        name = name.rpartition(".")[0]
    raise AssertionError(f"module {module} has no layer in tests/test_architecture.py LAYERS")


def layer_package(module: str) -> str:
    """The layer's name for the package-level graph (models and solvers are one layer)."""
    name = layer_of(module)[0]
    return "benchmark.models/solvers" if name in ("benchmark.models", "benchmark.solvers") else name


# ----------------------------------------------------------------------------- functions


_DECISIONS = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.IfExp, ast.ExceptHandler, ast.Assert, ast.comprehension,
              ast.match_case)


def _own_nodes(function: ast.AST):
    """The nodes of a function without those of the functions nested in it."""
    todo = list(ast.iter_child_nodes(function))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def _function_complexity(function: ast.AST) -> int:
    count = 1
    for node in _own_nodes(function):
        if isinstance(node, _DECISIONS):
            count += 1 + (len(node.ifs) if isinstance(node, ast.comprehension) else 0)
        elif isinstance(node, ast.BoolOp):
            count += len(node.values) - 1
    return count


def collect_functions() -> list[Function]:
    """Every function and method of the packages with its length (lines, docstring included) and complexity."""
    functions = []
    for module, path in source_files().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                functions.append(Function(module, node.name, node.lineno, lines, _function_complexity(node)))
    return functions


# ----------------------------------------------------------------------------- figures


def figures() -> dict[str, object]:
    """The numbers the issue's closing note reports."""
    imports = collect_imports()
    functions = collect_functions()
    by_lines = sorted(functions, key=lambda f: (-f.lines, f.module, f.name))
    by_complexity = sorted(functions, key=lambda f: (-f.complexity, f.module, f.name))
    trainer_users = sorted({i.source for i in imports if i.target == "benchmark.training.trainer"})
    upward = [i for i in imports if layer_of(i.target)[1] > layer_of(i.source)[1]]
    return {
        "modules": len(source_files()),
        "imports": len(imports),
        "function_level_imports": sum(i.in_function for i in imports),
        "module_cycles": cycles(imports),
        "module_cycles_module_level_only": cycles([i for i in imports if not i.in_function]),
        "layer_cycles": cycles(imports, key=layer_package),
        "upward_imports": upward,
        "trainer_importers": trainer_users,
        "largest_functions": by_lines[:8],
        "most_complex_functions": by_complexity[:8],
    }


def print_figures(stats: dict[str, object]) -> None:
    print(f"modules: {stats['modules']}, imports between them: {stats['imports']}, "
          f"function-level: {stats['function_level_imports']}")
    for key in ("module_cycles", "module_cycles_module_level_only", "layer_cycles"):
        print(f"{key}: {len(stats[key])}")
        for component in stats[key]:
            print(f"    {' <-> '.join(component)}")
    print(f"upward imports between layers: {len(stats['upward_imports'])}")
    for imp in stats["upward_imports"]:
        where = "function" if imp.in_function else "module"
        print(f"    {imp.source}:{imp.line} -> {imp.target} ({where} level)")
    print(f"modules importing benchmark.training.trainer: {', '.join(stats['trainer_importers']) or '-'}")
    print("largest functions (lines, complexity):")
    for f in stats["largest_functions"]:
        print(f"    {f.lines:4d} {f.complexity:3d}  {f.module}.{f.name} (line {f.line})")
    print("most complex functions (complexity, lines):")
    for f in stats["most_complex_functions"]:
        print(f"    {f.complexity:3d} {f.lines:4d}  {f.module}.{f.name} (line {f.line})")


# ----------------------------------------------------------------------------- the specification


CLEAN_PACKAGES = ("benchmark.training", "benchmark.tuning", "benchmark.regression")
"""Packages whose modules import project modules at module level only (their ``commands``
modules excepted: the command line imports a command's stack when the command runs, so that
``hbvbench --help`` stays fast)."""

LAZY_ON_PURPOSE = {"benchmark.training.mlflow_pyfunc"}
"""Modules of :data:`CLEAN_PACKAGES` that import the package inside functions on purpose: the
MLflow model's code file, which MLflow runs by itself to find the model."""

FUNCTION_LEVEL_IMPORTS_ELSEWHERE = 69
"""Function-level imports of project modules left outside :data:`CLEAN_PACKAGES` and the
command lines (perf, report, baselines, solvers: other branches' areas when the layers were
cleaned up, and the seeds merge; ``solvers`` and ``models`` reach each other lazily). A ratchet: it may only go down."""

ARTIFACT_FILE_NAMES_ELSEWHERE = {
    "benchmark.report.inputs", "benchmark.report.budgets", "baselines.commands", "baselines.sacsma",
    "baselines.nh_lstm",
}
"""Modules that still spell a file name of :mod:`benchmark.artifacts` as a literal (the report's
readers and the baselines' writers: files of the seeds work in progress when this test was
written). No other module may."""


def test_print_figures() -> None:
    stats = figures()
    print_figures(stats)
    assert stats["modules"] > 50 and stats["imports"] > 100  # the analyser sees the package


def test_no_import_cycle_between_modules() -> None:
    found = cycles(collect_imports())
    assert not found, "import cycles (module- and function-level imports together): " + "; ".join(
        " <-> ".join(component) for component in found)


def test_layers_import_downward_only() -> None:
    upward = [i for i in collect_imports() if layer_of(i.target)[1] > layer_of(i.source)[1]]
    assert not upward, "upward imports: " + "; ".join(
        f"{i.source}:{i.line} -> {i.target} ({layer_of(i.source)[0]} -> {layer_of(i.target)[0]})" for i in upward)


def test_training_never_imports_tuning() -> None:
    wrong = [i for i in collect_imports() if i.source.startswith("benchmark.training.")
             and not i.source.endswith(".commands") and i.target.startswith("benchmark.tuning")]
    assert not wrong, wrong


def test_training_tuning_and_regression_import_project_modules_at_module_level() -> None:
    lazy = [i for i in collect_imports() if i.in_function and i.source.startswith(CLEAN_PACKAGES)
            and not i.source.endswith(".commands") and i.source not in LAZY_ON_PURPOSE]
    assert not lazy, "function-level imports: " + "; ".join(f"{i.source}:{i.line} -> {i.target}" for i in lazy)


def test_function_level_imports_elsewhere_do_not_grow() -> None:
    rest = [i for i in collect_imports() if i.in_function and not i.source.startswith(CLEAN_PACKAGES)
            and layer_of(i.source)[0] != "cli"]
    assert len(rest) <= FUNCTION_LEVEL_IMPORTS_ELSEWHERE, (
        f"{len(rest)} function-level imports outside the command lines, at most {FUNCTION_LEVEL_IMPORTS_ELSEWHERE}: "
        "import at module level (or say in a comment why the import must wait and raise the budget)")


def test_no_module_uses_trainer_as_a_utility_library() -> None:
    """Only the runners of a training import the trainer, and only :func:`train_model` and its types from it."""
    allowed = {"train_model", "TrainResult", "start_mode", "WeightSource", "EpochCallback"}
    files = source_files()
    wrong = []
    for module, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "benchmark.training.trainer":
                wrong += [f"{module}: {a.name}" for a in node.names if a.name not in allowed]
    assert not wrong, wrong


def _string_constants(path: Path) -> set[str]:
    return {node.value for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def test_artifact_file_names_are_spelled_in_one_module() -> None:
    from benchmark import artifacts

    names = {value for key, value in vars(artifacts).items() if key.isupper() and isinstance(value, str)}
    assert {"checkpoint.pt", "normalization.json", "train_log.csv", "predictions.nc", "metrics.json"} <= names
    spelled = {module for module, path in source_files().items()
               if module != "benchmark.artifacts" and _string_constants(path) & names}
    assert spelled <= ARTIFACT_FILE_NAMES_ELSEWHERE, f"file names of benchmark.artifacts spelled again in {sorted(spelled - ARTIFACT_FILE_NAMES_ELSEWHERE)}"


def _module_functions(name: str) -> list[str]:
    return [module for module, path in source_files().items()
            for node in ast.parse(path.read_text(encoding="utf-8")).body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name]


def test_the_profile_basins_of_a_prepared_dataset_are_chosen_by_one_function() -> None:
    assert _module_functions("profile_basins") == ["benchmark.data.dataset"]
    assert _module_functions("select_basins") == []  # three different functions had this one name


def test_peak_memory_is_measured_in_one_place() -> None:
    """``tracking.peak_memory_mb``; perf measures another quantity (the memory a step adds)."""
    readers = {module for module, path in source_files().items()
               if {"ru_maxrss", "max_memory_allocated"} & {n.attr for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                                                          if isinstance(n, ast.Attribute)}}
    assert readers == {"benchmark.tracking", "benchmark.perf"}, readers


def test_cycles_are_found_by_the_analyser() -> None:
    looped = [Import("a", "b", 1, False), Import("b", "c", 1, True), Import("c", "a", 1, False), Import("c", "d", 1, False)]
    assert cycles(looped) == [["a", "b", "c"]]
    assert cycles(looped[:2]) == []


def test_the_analyser_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    code = "from . import b\ndef f():\n    from pkg.c import g\n    import pkg.d\n"
    collector = _ImportCollector("pkg.a", False, {"pkg.a", "pkg.b", "pkg.c", "pkg.d"})
    collector.visit(ast.parse(code))
    assert [(i.target, i.in_function) for i in collector.imports] == [("pkg.b", False), ("pkg.c", True), ("pkg.d", True)]


def test_complexity_counts_branches_and_boolean_operands() -> None:
    code = ("def f(x):\n    if x and x > 1 or x < -1:\n        return [y for y in x if y]\n"
            "    for i in x:\n        while i:\n            i -= 1\n    return 0\n")
    function = ast.parse(code).body[0]
    assert _function_complexity(function) == 1 + 1 + 2 + 2 + 1 + 1  # if, and/or, comprehension + its if, for, while


if __name__ == "__main__":
    print_figures(figures())
