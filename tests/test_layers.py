"""The import structure of solo/ (docs/DESIGN.md): each package imports only lower layers, and no
module import cycle exists, not even one hidden in a function-level (lazy) import."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

from solo.paths import REPO_ROOT

# Lower number = lower layer. A package may import its own modules and any lower layer's.
LAYERS = {
    "e2e_eval": 0, "solo.paths": 0,
    "solo.errors": 1, "solo.config": 1, "solo.atomic": 1, "solo.config_values": 1,
    "solo.cuda_graphs": 1,
    "solo.schema": 1.5,  # config-group schemas: above solo.errors, below the packages using them
    "solo.data": 2, "solo.paper": 2,
    "solo.models": 2.5,  # load_backbone gives the tokenizer its model's prompt format (solo.data)
    "solo.methods": 3, "solo.decode": 3,
    "solo.train": 4,
    "solo.experiments": 5, "solo.generate": 5,
    "solo.demo": 6,
}
# Modules the GPU image imports (no Hydra, no OmegaConf there), at least at module level.
NO_OMEGACONF = [
    "solo.data.buckets", "solo.decode.engine", "solo.decode.gpt2_state", "solo.train.graphed_step",
    "solo.train.loop", "solo.train.precision", "solo.train.step",
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    files = [*(REPO_ROOT / "solo").rglob("*.py"), *(REPO_ROOT / "e2e_eval").rglob("*.py")]
    # `solo` itself (solo/__init__.py) holds the version only.
    return {_module_name(path): path for path in files if path != REPO_ROOT / "solo" / "__init__.py"}


def _imports(path: Path, modules: dict[str, Path], top_level_only: bool = False) -> set[str]:
    """The project modules `path` imports (function-level imports too, unless top_level_only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from package import submodule` depends on the submodule, not only the package.
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
            found.update(subs or {node.module})
    return found


def _layer(module: str) -> tuple[str, int] | None:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, LAYERS[prefix]
    return None


def test_every_module_has_a_layer() -> None:
    missing = [m for m in _modules() if _layer(m) is None]
    assert not missing, f"add these to LAYERS: {missing}"


def test_no_import_goes_up_or_sideways() -> None:
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        here, rank = _layer(module)  # type: ignore[misc]
        for target in _imports(path, modules):
            there = _layer(target)
            if there is not None and there[0] != here and there[1] >= rank:
                wrong.append(f"{module} -> {target}")
    assert not wrong, wrong


def test_no_import_cycle_between_modules() -> None:
    modules = _modules()
    graph = {m: {t for t in _imports(p, modules) if t in modules and t != m} for m, p in modules.items()}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*trail[trail.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_gpu_image_modules_import_no_omegaconf() -> None:
    modules = _modules()
    for name in NO_OMEGACONF:
        assert importlib.util.find_spec(name) is not None, name
        top = _imports(modules[name], modules, top_level_only=True)
        assert not {t for t in top if t.split(".")[0] in ("omegaconf", "hydra")}, name


# Not on the GPU image (bench/gpu_all.sh runs there): nothing bench/ imports may need them at import.
NOT_ON_GPU_IMAGE = ("omegaconf", "hydra", "pycocoevalcap", "submitit", "wandb", "gguf")


def _loaded_by(module: str, modules: dict[str, Path]) -> set[str]:
    """Every module importing `module` runs at import time: the packages above it, their
    top-level imports, and so on (imports inside functions run later, if ever)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in seen:
                continue
            seen.add(prefix)
            if prefix in modules:
                todo.extend(_imports(modules[prefix], modules, top_level_only=True))
    return seen


def test_what_the_benchmarks_import_runs_on_the_gpu_image() -> None:
    modules = _modules()
    scripts = set(re.findall(r"bench/(\w+)\.py", (REPO_ROOT / "bench" / "gpu_all.sh").read_text()))
    scripts = {REPO_ROOT / "bench" / f"{name}.py" for name in scripts} | {REPO_ROOT / "bench" / "common.py"}
    scripts -= {REPO_ROOT / "bench" / "estimate_paper.py"}  # has its own fallback without solo
    roots = set()
    for script in scripts:
        roots |= {m for m in _imports(script, modules) if m.split(".")[0] in ("solo", "e2e_eval")}
    assert "solo.train.packed" in roots and "solo.methods" in roots
    for root in sorted(roots):
        needs = {m.split(".")[0] for m in _loaded_by(root, modules)} & set(NOT_ON_GPU_IMAGE)
        assert not needs, f"{root} imports {needs} at import time"
