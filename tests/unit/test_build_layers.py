"""What `make build` ships, checked without building (no network, no SAM); the full check: layers/build.py."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _load_build_module():
    spec = importlib.util.spec_from_file_location("layers_build", ROOT / "layers" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shipped_sources() -> dict[str, bytes]:
    """shared/ as the layer must hold it: every source file except the local stack and bytecode."""
    out = {}
    for path in (ROOT / "shared").rglob("*"):
        rel = path.relative_to(ROOT)
        shipped = rel.parts[:2] != ("shared", "local") and "__pycache__" not in rel.parts
        if path.is_file() and shipped and path.suffix != ".pyc":
            out[rel.as_posix()] = path.read_bytes()
    return out


def test_build_shared_copies_shared_without_the_local_stack_or_bytecode(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(ROOT / "layers" / "build_shared.sh"), str(tmp_path)], check=True, capture_output=True
    )
    copied = {
        path.relative_to(tmp_path).as_posix(): path.read_bytes()
        for path in (tmp_path / "shared").rglob("*")
        if path.is_file()
    }
    assert not (tmp_path / "shared" / "local").exists()
    assert not [p for p in copied if "__pycache__" in p or p.endswith(".pyc")]
    assert copied == _shipped_sources()
    assert "shared/__init__.py" in copied and "shared/http.py" in copied


def test_nothing_shipped_imports_the_local_stack() -> None:
    """SharedLayer leaves shared/local out: an import of it from shipped code would fail on Lambda."""
    offenders = []
    sources = [*(ROOT / "shared").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]
    for path in sources:
        rel = path.relative_to(ROOT)
        if rel.parts[:2] == ("shared", "local"):
            continue
        text = path.read_text(encoding="utf-8")
        if "local" not in text:  # no import of it can be there; skips parsing most files
            continue
        package = ".".join(rel.with_suffix("").parts[:-1])
        for node in ast.walk(ast.parse(text)):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            if any(n == "shared.local" or n.startswith("shared.local.") for n in names):
                offenders.append(f"{rel}:{node.lineno}")
    assert not offenders


def test_layer_requirements_are_exact_pins_within_pyproject_ranges() -> None:
    build = _load_build_module()
    pins = build.read_pins()  # raises on any line that is not name==version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for text in project["dependencies"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} (a runtime dependency in pyproject.toml) is not pinned for the layer"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} outside {req}"
