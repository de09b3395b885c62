"""Import arrows point down only (docs/architecture.md).

Every module of ``rlhf_envs``, ``agents`` and ``benchmarks`` is parsed with :mod:`ast`; every import
in it (module level and inside functions, ``import x``, ``from x import y``, relative imports and
``importlib.import_module("literal")``) becomes an edge from the module's layer to the target's
layer, and each edge is checked against :data:`MAY_IMPORT`::

    benchmarks -> agents -> rlhf_envs (package, registration, cli, toy_demo)
                                -> envs -> tasks -> feedback -> lm -> leaf utilities
                                                 -> lm

Leaf utilities are the modules that import nothing of the suite but each other: ``rlhf_envs.errors``,
``rlhf_envs.tokenization`` and ``rlhf_envs.seeding``; every layer may use them. Nothing inside
``rlhf_envs`` imports the top-level package ``rlhf_envs`` itself (its ``__init__`` registers the env
ids: relying on that side effect from inside is an arrow up), ``agents`` or ``benchmarks``; the one
exception is the console entry point ``rlhf_envs.cli``, which may import ``agents`` inside the
functions that declare (``_declare_*``) or run (``_cmd_*``) one subcommand, never at module level
or while building the whole parser. ``agents`` never imports ``benchmarks``.
A second check: env ids are registered (``gym.register``) only in ``rlhf_envs/registration.py``.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rlhf_envs", "agents", "benchmarks")

#: modules every layer may import: they import nothing of the suite except each other
LEAF_UTILITIES = frozenset(
    {"rlhf_envs.errors", "rlhf_envs.tokenization", "rlhf_envs.seeding", "rlhf_envs.atomic_io"}
)
#: the suite's sub-packages, each a layer of its own
SUITE_LAYERS = ("envs", "tasks", "feedback", "lm", "data")

#: layer -> the layers it may import (its own included)
MAY_IMPORT: dict[str, frozenset[str]] = {
    "leaf": frozenset({"leaf"}),
    # real data sets fetched from the package registry (rated sentences): below every other layer
    "data": frozenset({"data", "leaf"}),
    "lm": frozenset({"lm", "data", "leaf"}),
    "feedback": frozenset({"feedback", "lm", "data", "leaf"}),
    "tasks": frozenset({"tasks", "feedback", "lm", "data", "leaf"}),
    "envs": frozenset({"envs", "tasks", "feedback", "lm", "data", "leaf"}),
    # rlhf_envs/__init__.py, registration.py, cli.py, toy_demo.py: above the sub-packages
    "rlhf_envs-top": frozenset({"rlhf_envs-top", "envs", "tasks", "feedback", "lm", "data", "leaf"}),
    "agents": frozenset({"agents", "rlhf_envs", "rlhf_envs-top", *SUITE_LAYERS, "leaf"}),
    "benchmarks": frozenset({"benchmarks", "agents", "rlhf_envs", "rlhf_envs-top", *SUITE_LAYERS, "leaf"}),
}
#: (importing module, target layer) -> the function-name prefixes where that import is allowed
#: (the console entry point imports a subcommand's module only when that subcommand is chosen)
FUNCTION_LEVEL_EXCEPTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("rlhf_envs.cli", "agents"): ("_declare_", "_cmd_"),
}


@dataclass(frozen=True)
class Edge:
    """One import: ``source`` imports ``target`` at ``path:line``, at module level or inside
    ``function`` (the innermost enclosing function's name)."""

    source: str
    target: str
    path: str
    line: int
    function: str | None

    @property
    def function_level(self) -> bool:
        return self.function is not None


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to (``None``: not part of this project)."""
    parts = module.split(".")
    if parts[0] in ("agents", "benchmarks"):
        return parts[0]
    if parts[0] != "rlhf_envs":
        return None
    if module == "rlhf_envs":
        return "rlhf_envs"  # the package __init__ (registers every id on import)
    if ".".join(parts[:2]) in LEAF_UTILITIES:
        return "leaf"
    if parts[1] in SUITE_LAYERS:
        return parts[1]
    return "rlhf_envs-top"


def module_sources(root: Path) -> dict[str, tuple[str, str]]:
    """``{dotted module name: (path relative to root, source)}`` for every module of :data:`PACKAGES`."""
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = (str(rel), path.read_text(encoding="utf-8"))
    return out


def _is_package(path: str) -> bool:
    return path.endswith("__init__.py")


def _resolve(module: str, path: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if _is_package(path) else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _enclosing_function(stack: list[ast.AST]) -> str | None:
    functions = [n for n in stack if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)]
    if not functions:
        return None
    return getattr(functions[-1], "name", "<lambda>")


def import_edges(sources: Mapping[str, tuple[str, str]], known: set[str] | None = None) -> list[Edge]:
    """Every import of a project module by a project module (module and function level).

    ``known`` is the set of existing module names (default: those of ``sources``); it decides
    whether ``from pkg import x`` imports the submodule ``pkg.x`` or a name of ``pkg``.
    """
    known = set(sources) if known is None else known
    edges: list[Edge] = []

    def add(src: str, path: str, target: str, node: ast.AST, stack: list[ast.AST]) -> None:
        if layer_of(target) is not None:
            edges.append(Edge(src, target, path, node.lineno, _enclosing_function(stack)))

    for module, (path, text) in sources.items():
        tree = ast.parse(text, filename=path)

        def visit(node: ast.AST, stack: list[ast.AST], module: str = module, path: str = path) -> None:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(module, path, alias.name, node, stack)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, path, node)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    # "from pkg import submodule" imports the submodule; "from pkg import name" the package
                    add(module, path, sub if sub in known else base, node, stack)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute | ast.Name)
                and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
                in ("import_module", "__import__")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                add(module, path, node.args[0].value, node, stack)
            for child in ast.iter_child_nodes(node):
                visit(child, [*stack, node])

        visit(tree, [])
    return edges


def back_arrows(sources: Mapping[str, tuple[str, str]], known: set[str] | None = None) -> list[str]:
    """Every import in ``sources`` that points the wrong way, as ``"path:line: ... may import only ..."``."""
    problems = []
    for e in import_edges(sources, known):
        src_layer, dst_layer = layer_of(e.source), layer_of(e.target)
        if src_layer == "rlhf_envs":
            src_layer = "rlhf_envs-top"  # the package __init__ sits with registration and the CLI
        if dst_layer in MAY_IMPORT[src_layer]:
            continue
        if src_layer == "rlhf_envs-top" and e.source == "rlhf_envs" and dst_layer == "rlhf_envs":
            continue  # the package itself
        prefixes = FUNCTION_LEVEL_EXCEPTIONS.get((e.source, dst_layer), ())
        if e.function is not None and e.function.startswith(prefixes):
            continue
        level = f"in {e.function}()" if e.function_level else "at module level"
        problems.append(
            f"{e.path}:{e.line}: {e.source} ({src_layer}) imports {e.target} ({dst_layer}) {level}; "
            f"{src_layer} may import only {', '.join(sorted(MAY_IMPORT[src_layer]))}"
        )
    return problems


def gym_registrations(sources: Mapping[str, tuple[str, str]]) -> list[str]:
    """Where ``gym.register(...)`` / ``gymnasium.register(...)`` is called, as ``"path:line"``."""
    out = []
    for path, text in sources.values():
        for node in ast.walk(ast.parse(text, filename=path)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "register"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("gym", "gymnasium")
            ):
                out.append(f"{path}:{node.lineno}")
    return out


# ---------------------------------------------------------------------------------------------------
# The real tree


def test_no_import_points_back_up() -> None:
    sources = module_sources(ROOT)
    assert len(sources) > 50 and {"rlhf_envs.lm.loading", "agents.ppo", "benchmarks.compare"} <= set(sources)
    edges = import_edges(sources)
    assert any(
        e.source == "rlhf_envs.tasks.language" and e.target.startswith("rlhf_envs.feedback") for e in edges
    )
    problems = back_arrows(sources)
    assert not problems, "imports that point back up:\n" + "\n".join(problems)


def test_env_ids_are_registered_in_one_place() -> None:
    sites = gym_registrations(module_sources(ROOT))
    assert sites and all(s.startswith("rlhf_envs/registration.py:") for s in sites), sites


# ---------------------------------------------------------------------------------------------------
# The checker finds planted back-arrows


REAL_MODULES = set(module_sources(ROOT))


def _check_planted(module: str, code: str) -> list[str]:
    """The problems the checker finds in one planted module, checked against the real tree."""
    return back_arrows({module: (module.replace(".", "/") + ".py", code)}, REAL_MODULES | {module})


def test_checker_reports_a_planted_back_arrow_written_to_disk(tmp_path: Path) -> None:
    """A file ``rlhf_envs/lm/x.py`` that imports the envs package is reported, with its line."""
    for pkg in ("rlhf_envs", "rlhf_envs/lm", "rlhf_envs/envs"):
        (tmp_path / pkg).mkdir(parents=True, exist_ok=True)
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "rlhf_envs/envs/text_env.py").write_text("class TextGenerationEnv: ...\n")
    (tmp_path / "rlhf_envs/lm/x.py").write_text(
        "import numpy as np\nfrom rlhf_envs.errors import ConfigError\nfrom rlhf_envs.envs import TextGenerationEnv\n"
    )
    problems = back_arrows(module_sources(tmp_path))
    assert len(problems) == 1 and problems[0].startswith(
        "rlhf_envs/lm/x.py:3: rlhf_envs.lm.x (lm) imports rlhf_envs.envs"
    )


def test_checker_reports_every_kind_of_planted_back_arrow() -> None:
    cases = {
        # lm importing a higher layer, absolute, relative and inside a function
        ("rlhf_envs.lm.planted", "from rlhf_envs.feedback.base import Episode\n"): "rlhf_envs.feedback.base",
        ("rlhf_envs.lm.planted", "from ..tasks import base\n"): "rlhf_envs.tasks.base",
        (
            "rlhf_envs.lm.planted",
            "def f():\n    from rlhf_envs.envs import spaces\n",
        ): "rlhf_envs.envs.spaces",
        # the top-level package for its registration side effect, from inside the suite
        ("rlhf_envs.lm.planted", "def f():\n    import rlhf_envs  # noqa\n"): "rlhf_envs (rlhf_envs)",
        ("rlhf_envs.feedback.planted", "from rlhf_envs import list_envs\n"): "rlhf_envs (rlhf_envs)",
        # feedback -> tasks, tasks -> envs
        (
            "rlhf_envs.feedback.planted",
            "from rlhf_envs.tasks.language import SentimentTask\n",
        ): "tasks.language",
        ("rlhf_envs.tasks.planted", "from rlhf_envs.envs.reference import ReferenceKL\n"): "envs.reference",
        # the suite importing agents or benchmarks; agents importing benchmarks
        ("rlhf_envs.envs.planted", "import agents\n"): "imports agents (agents)",
        (
            "rlhf_envs.tasks.planted",
            "import importlib\nimportlib.import_module('benchmarks.compare')\n",
        ): "benchmarks",
        ("agents.planted", "from benchmarks.compare import main\n"): "benchmarks.compare",
        # the CLI exception holds only inside the function of one subcommand
        ("rlhf_envs.cli", "import agents.cli_train\n"): "at module level",
        (
            "rlhf_envs.cli",
            "def build_parser():\n    from agents.rlhf import add_rlhf_parser\n",
        ): "build_parser()",
    }
    for (module, code), expected in cases.items():
        problems = _check_planted(module, code)
        assert any(module in p and expected in p for p in problems), (module, code, problems)


def test_checker_accepts_downward_arrows() -> None:
    for module, code in {
        "rlhf_envs.lm.planted": "from rlhf_envs.errors import ConfigError\nfrom rlhf_envs.lm import loading\n",
        "rlhf_envs.feedback.planted": "from rlhf_envs.lm.loading import token_logprobs\nfrom . import base\n",
        "rlhf_envs.envs.planted": "from rlhf_envs.tasks import Task\nfrom rlhf_envs.feedback import Episode\n",
        "rlhf_envs.cli": "def _cmd_demo():\n    from agents.demo import run\n",
        "agents.planted": "import rlhf_envs\nfrom rlhf_envs.envs import TextGenerationEnv\n",
        "benchmarks.planted": "import agents\nimport rlhf_envs\n",
    }.items():
        assert not _check_planted(module, code), module
