"""The package's layout rules, read from the source with ``ast``.

Dependencies point one way: ``cli`` -> ``drill`` -> ``vault`` -> features (``rights``, ``breach``,
``keys.admin``) -> ``kernel`` -> ``audit``, ``keys``, ``storage``, ``policy``, ``records``,
``crypto`` -> ``exceptions``. Every import counts, wherever it is written: at the top, inside a
function, or under ``if TYPE_CHECKING:``. The checks also keep modules and classes small and
make every package say what it owns. ``docs/architecture.md`` describes the layers.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs
import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "ownervault"

#: Each unit (a module, or a package and everything in it) and its layer, lowest first. A
#: module belongs to the longest unit that is a dotted prefix of its name; the root package
#: (``ownervault/__init__.py``) is its own unit. A module may import modules of its own unit
#: and of lower layers only.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("ownervault.exceptions",),
    ("ownervault.crypto", "ownervault.authn"),
    ("ownervault.sealing",),
    ("ownervault.records",),
    ("ownervault.policy",),
    ("ownervault.storage",),
    ("ownervault.keys",),
    ("ownervault.audit",),
    ("ownervault.kernel",),
    ("ownervault.rights", "ownervault.breach", "ownervault.keys.admin", "ownervault.handover"),
    ("ownervault.session",),
    ("ownervault.vault", "ownervault.migrate"),
    ("ownervault.drill",),
    ("ownervault.cli",),
    # The public surface: names gathered for users, and the old import paths kept working.
    (
        "ownervault",
        "ownervault.typing",
        "ownervault.testing",
        "ownervault.merkle",
        "ownervault.checkpoint",
        "ownervault.bundle",
        "ownervault.hsm",
        "ownervault.notifiers",
    ),
)
MAX_MODULE_LINES = 800
MAX_CLASS_LINES = 400


@attrs.frozen
class Module:
    """One parsed module of the package."""

    name: str
    path: Path
    tree: ast.Module
    is_package: bool


@attrs.frozen
class Edge:
    """``source`` imports ``target`` (at ``line``); ``names`` are what it takes from it."""

    source: str
    target: str
    line: int
    names: tuple[str, ...] = ()


def load(root: Path) -> dict[str, Module]:
    """Every module under the package directory ``root``, by dotted name."""
    modules: dict[str, Module] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        modules[name] = Module(name, path, tree, is_package)
    return modules


def _resolve(module: Module, level: int, target: str | None) -> str:
    """The absolute name of a (possibly relative) import."""
    if level == 0:
        return target or ""
    base = module.name.split(".")
    if not module.is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def edges(modules: Mapping[str, Module]) -> list[Edge]:
    """Every import between modules of the package (``from a import b`` of a module: a.b)."""
    root = next(iter(modules)).split(".")[0]
    found: list[Edge] = []
    for module in modules.values():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == root:
                        found.append(Edge(module.name, _existing(modules, alias.name), node.lineno))
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, node.level, node.module)
                if target.split(".")[0] != root:
                    continue
                names = tuple(alias.name for alias in node.names)
                # ``from pkg import submodule`` depends on the submodule only, not on the
                # package's ``__init__`` (which every import of a submodule runs anyway).
                if any(f"{target}.{n}" not in modules for n in names):
                    found.append(Edge(module.name, _existing(modules, target), node.lineno, names))
                for name in names:
                    if f"{target}.{name}" in modules:
                        found.append(Edge(module.name, f"{target}.{name}", node.lineno))
    return [e for e in found if e.source != e.target]


def _existing(modules: Mapping[str, Module], name: str) -> str:
    """The module a dotted import name refers to (``a.b.c`` of an attribute c: ``a.b``)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def unit_of(name: str, layers: Iterable[Iterable[str]]) -> tuple[str, int] | None:
    """The unit a module belongs to and that unit's layer (None when no unit claims it)."""
    best: tuple[str, int] | None = None
    for rank, units in enumerate(layers):
        for unit in units:
            matches = name == unit or ("." in unit and name.startswith(unit + "."))
            if matches and (best is None or len(unit) > len(best[0])):
                best = (unit, rank)
    return best


def upward_imports(modules: Mapping[str, Module], layers: Iterable[Iterable[str]]) -> list[str]:
    """Imports that point up, or sideways into another unit of the same layer."""
    layers = [tuple(units) for units in layers]
    problems = []
    for edge in edges(modules):
        source, target = unit_of(edge.source, layers), unit_of(edge.target, layers)
        if source is None or target is None or source[0] == target[0]:
            continue
        if target[1] >= source[1]:
            way = "up" if target[1] > source[1] else "sideways"
            problems.append(
                f"{edge.source} imports {edge.target} (line {edge.line}): {source[0]} may not "
                f"depend on {target[0]} ({way})"
            )
    return problems


def unassigned(modules: Mapping[str, Module], layers: Iterable[Iterable[str]]) -> list[str]:
    """Modules that no unit of the layer table claims."""
    layers = [tuple(units) for units in layers]
    return [name for name in modules if unit_of(name, layers) is None]


def cycles(modules: Mapping[str, Module]) -> list[list[str]]:
    """Strongly connected groups of modules that import each other (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for edge in edges(modules):
        if edge.target in graph:
            graph[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def private_uses(modules: Mapping[str, Module]) -> list[str]:
    """Uses of another module's ``_private`` names: imported by name, or as ``module._name``."""
    problems = []
    by_edge: dict[str, list[Edge]] = {}
    for edge in edges(modules):
        by_edge.setdefault(edge.source, []).append(edge)
    for module in modules.values():
        aliases: dict[str, str] = {}
        for edge in by_edge.get(module.name, []):
            for name in edge.names:
                if _private(name):
                    problems.append(
                        f"{module.name} imports {name} from {edge.target} (line {edge.line})"
                    )
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(module, node.level, node.module)
                for alias in node.names:
                    if f"{target}.{alias.name}" in modules:
                        aliases[alias.asname or alias.name] = f"{target}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname and alias.name in modules:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(module.tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _private(node.attr)
            ):
                problems.append(
                    f"{module.name} uses {aliases[node.value.id]}.{node.attr} (line {node.lineno})"
                )
    return problems


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def oversized(modules: Mapping[str, Module]) -> list[str]:
    """Modules over :data:`MAX_MODULE_LINES` lines and classes over :data:`MAX_CLASS_LINES`."""
    problems = []
    for module in modules.values():
        lines = len(module.path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            problems.append(f"{module.name}: {lines} lines")
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ClassDef):
                assert node.end_lineno is not None
                size = node.end_lineno - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    problems.append(f"{module.name}.{node.name}: {size} lines")
    return problems


# --------------------------------------------------------------------------- the package


@pytest.fixture(scope="module")
def package() -> dict[str, Module]:
    """The ownervault package, parsed."""
    return load(PACKAGE)


def test_every_module_has_a_layer(package: dict[str, Module]) -> None:
    """Every module of the package belongs to a unit of the layer table."""
    assert unassigned(package, LAYERS) == []


def test_imports_point_down(package: dict[str, Module]) -> None:
    """No module imports a higher layer, or another unit of its own layer."""
    assert upward_imports(package, LAYERS) == []


def test_package_has_no_import_cycles(package: dict[str, Module]) -> None:
    """No two modules import each other, directly or round a longer loop."""
    assert cycles(package) == []


def test_no_module_uses_another_modules_private_names(package: dict[str, Module]) -> None:
    """A ``_private`` name is used only in the module that defines it."""
    assert private_uses(package) == []


def test_modules_and_classes_stay_small(package: dict[str, Module]) -> None:
    """No module is over 800 lines and no class over 400."""
    assert oversized(package) == []


def test_every_package_says_what_it_owns(package: dict[str, Module]) -> None:
    """Each package's ``__init__`` docstring says what it owns and what it may import."""
    vague = [
        name
        for name, module in package.items()
        if module.is_package
        and name != "ownervault"
        and not _says_owns_and_imports(ast.get_docstring(module.tree) or "")
    ]
    assert vague == []


def _says_owns_and_imports(doc: str) -> bool:
    text = " ".join(doc.lower().split())
    return "owns" in text and "import" in text


def test_nothing_but_the_applications_imports_the_facade(package: dict[str, Module]) -> None:
    """Only the CLI, the drill and the public surface import ``ownervault.vault``."""
    allowed = {"ownervault", "ownervault.drill"}
    importers = {
        e.source
        for e in edges(package)
        if e.target == "ownervault.vault"
        and e.source not in allowed
        and not e.source.startswith("ownervault.cli")
    }
    assert importers == set()


# --------------------------------------------------------------------------- the checks catch


def _toy(tmp_path: Path, files: Mapping[str, str]) -> dict[str, Module]:
    """A small package ``toy`` built from ``files`` (relative path -> source)."""
    root = tmp_path / "toy"
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return load(root)


TOY_LAYERS = (("toy.low",), ("toy.kernel",), ("toy.feature", "toy.other"), ("toy.vault",))


def test_a_cycle_is_found_and_named(tmp_path: Path) -> None:
    """Two modules importing each other (one only under TYPE_CHECKING) are reported together."""
    toy = _toy(
        tmp_path,
        {
            "__init__.py": "",
            "kernel.py": "from . import low\n",
            "low.py": """
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from .kernel import Kernel
            """,
        },
    )
    assert cycles(toy) == [["toy.kernel", "toy.low"]]


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    """An import inside a function closes a loop as surely as one at the top."""
    toy = _toy(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from .b import thing\n",
            "b.py": "def thing():\n    from .c import other\n    return other\n",
            "c.py": "import toy.a\nother = 1\n",
        },
    )
    assert cycles(toy) == [["toy.a", "toy.b", "toy.c"]]


def test_an_upward_import_is_found_and_named(tmp_path: Path) -> None:
    """The kernel importing the facade is reported with both modules and the line."""
    toy = _toy(
        tmp_path,
        {
            "__init__.py": "",
            "low.py": "",
            "kernel.py": "from . import low\n\n\ndef later():\n    from .vault import Vault\n",
            "vault.py": "from .kernel import later\n",
        },
    )
    assert upward_imports(toy, TOY_LAYERS) == [
        "toy.kernel imports toy.vault (line 5): toy.kernel may not depend on toy.vault (up)"
    ]


def test_a_feature_importing_another_feature_is_found(tmp_path: Path) -> None:
    """Features sit side by side: one may not import another."""
    toy = _toy(
        tmp_path,
        {"__init__.py": "", "feature.py": "from .other import x\n", "other.py": "x = 1\n"},
    )
    assert upward_imports(toy, TOY_LAYERS) == [
        "toy.feature imports toy.other (line 1): toy.feature may not depend on toy.other (sideways)"
    ]


def test_private_names_of_another_module_are_found(tmp_path: Path) -> None:
    """Importing ``_name`` from a module, or reading ``module._name``, is reported."""
    toy = _toy(
        tmp_path,
        {
            "__init__.py": "",
            "low.py": "_secret = 1\n_other = 2\n",
            "kernel.py": "from .low import _secret\nfrom . import low\n\nx = low._other\n",
        },
    )
    assert private_uses(toy) == [
        "toy.kernel imports _secret from toy.low (line 1)",
        "toy.kernel uses toy.low._other (line 4)",
    ]


def test_oversized_modules_and_classes_are_found(tmp_path: Path) -> None:
    """A module over the line limit and a class over its limit are both named."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_CLASS_LINES))
    filler = "\n" * (MAX_MODULE_LINES - MAX_CLASS_LINES)
    toy = _toy(tmp_path, {"__init__.py": "", "big.py": f"class Big:\n{body}\n{filler}"})
    assert oversized(toy) == [
        f"toy.big: {MAX_MODULE_LINES + 1} lines",
        f"toy.big.Big: {MAX_CLASS_LINES + 1} lines",
    ]
