"""The layout is the architecture: every seqjax module sits in one layer and imports only its own layer or
lower ones, the pure core never needs Flax, and module-level imports have no cycles.

Read from the source (every `import` statement, also those inside functions), so the check covers every
module at once and runs in milliseconds; tests/test_imports.py also imports the core for real.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "seqjax"

# Lowest first. A module's layer is that of the longest prefix listed.
LAYERS = [
    ("pure core", ["seqjax.cells", "seqjax.scan", "seqjax.patterns", "seqjax.masks", "seqjax.dropout",
                   "seqjax.losses", "seqjax.attention", "seqjax.positional", "seqjax.decoding",
                   "seqjax.embedding", "seqjax.corruption", "seqjax.kernels", "seqjax.alignment"]),
    ("data", ["seqjax.data", "seqjax.translation_metrics", "seqjax.translation_baselines"]),
    ("nn", ["seqjax.nn"]),
    ("models", ["seqjax.models"]),
    ("training", ["seqjax.optim", "seqjax.checkpoint", "seqjax.workdir", "seqjax.sharding", "seqjax.parallel",
                  "seqjax.metrics_io", "seqjax.configs", "seqjax.task", "seqjax.tasks", "seqjax.train",
                  "seqjax.cli", "seqjax.preflight", "seqjax.stopping", "seqjax.allocator",
                  "seqjax.precision"]),
    ("tools", ["seqjax.sample", "seqjax.viz", "seqjax.translate", "seqjax.sweep", "seqjax.slurm"]),
]
# Lower layers that a layer may NOT import although they are lower: data loaders are plain NumPy.
FORBIDDEN = {"data": {"pure core", "nn", "models"}}
# Imports that resolve a registry by name at call time (configs <-> registries): lazy by design.
LAZY_OK = {("seqjax.configs", "seqjax.models"), ("seqjax.configs", "seqjax.tasks"),
           ("seqjax.configs", "seqjax.optim"), ("seqjax.models", "seqjax.configs"),
           ("seqjax.tasks", "seqjax.configs")}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
LAYERED = sorted(n for n in MODULES if n != "seqjax")  # the package's __init__ holds only the version


def layer_of(name: str) -> int:
    layer = find_layer(name)
    assert layer is not None, f"{name}: in no layer; add it to LAYERS in {__file__}"
    return layer


def find_layer(name: str) -> int | None:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (i, len(prefix))
    return None if best is None else best[0]


def imports(name: str) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import statement of module `name`."""
    tree = ast.parse(MODULES[name].read_text())
    top = set(map(id, tree.body))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for a in node.names:  # `from seqjax import scan` imports the module seqjax.scan
                full = f"{node.module}.{a.name}"
                out.append((full if full in MODULES else node.module, id(node) in top))
    return out


def seqjax_imports(name: str, *, module_level_only: bool = False) -> set[str]:
    found = set()
    for target, at_top in imports(name):
        if target.startswith("seqjax") and target != "seqjax" and (at_top or not module_level_only):
            while target not in MODULES:  # `from seqjax.nn.params import X` -> seqjax.nn.params
                target = target.rpartition(".")[0]
            found.add(target)
    return found


def _package(name: str) -> str:
    return ".".join(name.split(".")[:2])


@pytest.mark.parametrize("name", LAYERED)
def test_imports_only_its_layer_or_lower(name):
    mine = layer_of(name)
    for target in seqjax_imports(name):
        if target == "seqjax" or (_package(name), _package(target)) in LAZY_OK:
            continue
        theirs = layer_of(target)
        assert theirs <= mine, f"{name} ({LAYERS[mine][0]}) imports {target} ({LAYERS[theirs][0]})"
        assert LAYERS[theirs][0] not in FORBIDDEN.get(LAYERS[mine][0], ()), f"{name} imports {target}"


@pytest.mark.parametrize("name", [n for n in LAYERED if find_layer(n) == 0])
def test_pure_core_imports_no_flax(name):
    bad = [t for t, _ in imports(name) if t == "flax" or t.startswith("flax.")]
    assert not bad, f"{name} (pure core) imports {bad}"


def test_no_module_level_import_cycles():
    graph = {n: seqjax_imports(n, module_level_only=True) - {"seqjax"} for n in MODULES}
    state = {}

    def visit(n, stack):
        state[n] = "open"
        for m in graph.get(n, ()):
            if state.get(m) == "open":
                raise AssertionError(f"import cycle: {' -> '.join([*stack, n, m])}")
            if m not in state:
                visit(m, [*stack, n])
        state[n] = "done"

    for n in graph:
        if n not in state:
            visit(n, [])


def test_the_checks_see_imports():
    """The parser finds real imports (`from seqjax import x` and lazy ones too); the layers order them."""
    assert "seqjax.kernels.rnn" in seqjax_imports("seqjax.scan", module_level_only=True)
    assert "seqjax.nn.blocks" in seqjax_imports("seqjax.models.gpt")
    assert "seqjax.models" in seqjax_imports("seqjax.configs") - seqjax_imports("seqjax.configs",
                                                                              module_level_only=True)
    assert layer_of("seqjax.kernels.rnn") == layer_of("seqjax.cells") < layer_of("seqjax.nn.blocks") \
        < layer_of("seqjax.models.gpt") < layer_of("seqjax.train") < layer_of("seqjax.viz")


def test_no_library_module_over_400_lines():
    long = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    assert not {n: k for n, k in long.items() if k > 400}, long
