"""Dependencies point down only (shared/ARCHITECTURE.md): a module may import from lower
layers and from its own layer, never from a higher one. Type-only imports under
`if TYPE_CHECKING:` are allowed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hearth"

# lower number = lower layer
RANK = {
    "errors": 0,
    "config": 0,
    "db": 0,
    "ray_address": 0,
    "store": 1,
    "licenses": 1,
    "weights": 2,
    "tokenizer": 2,
    "model": 3,
    "engine": 4,
    "tune": 5,
    "eval": 5,
    "arena": 5,
    "bench": 5,
    "sim": 5,
    "serve": 6,
    "ui": 6,
    "cli": 7,
    "__main__": 7,
}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "hearth" or len(parts) < 2:
        return None
    return parts[1]


def _runtime_imports(tree: ast.Module) -> list[str]:
    """Imported hearth modules, skipping `if TYPE_CHECKING:` blocks."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.extend(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append(child.module)
                found.extend(f"{child.module}.{a.name}" for a in child.names)
            visit(child)

    visit(tree)
    return [m for m in found if m.startswith("hearth.")]


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    rel = path.relative_to(PACKAGE)
    own = rel.parts[0].removesuffix(".py")
    assert own in RANK, f"{rel}: top-level module '{own}' has no layer in RANK; add it"
    tree = ast.parse(path.read_text())
    for imported in _runtime_imports(tree):
        layer = _layer(imported)
        if layer is None or layer not in RANK:
            continue
        assert RANK[layer] <= RANK[own], (
            f"{rel} imports {imported}: layer '{own}' (rank {RANK[own]}) may not depend on "
            f"higher layer '{layer}' (rank {RANK[layer]})"
        )


def test_layering_catches_upward_import(tmp_path: Path) -> None:
    tree = ast.parse("from hearth.serve.app import x\nif TYPE_CHECKING:\n    import hearth.cli\n")
    assert _runtime_imports(tree) == ["hearth.serve.app", "hearth.serve.app.x"]


# inside model/: the reference layers know no kernels and no backend choice (they are handed
# an Ops); the CPU backend may build on the layers, never the other way round
_MODEL_FORBIDDEN = {"layers": ("hearth.model.cpu", "hearth.model.backend")}


@pytest.mark.parametrize(
    "path",
    sorted((PACKAGE / "model" / "layers").rglob("*.py")),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_reference_layers_import_no_kernels(path: Path) -> None:
    for imported in _runtime_imports(ast.parse(path.read_text())):
        for banned in _MODEL_FORBIDDEN["layers"]:
            assert not imported.startswith(banned), f"{path.name} imports {imported}"
