"""`make build`: deployable artifacts (python3.13, arm64) in .aws-sam/build, without Docker, import-checked.

Steps (docs/build.md explains why each one is there):

1. ``layers/build_shared.sh`` fills layers/shared/python/shared (no shared/local, no bytecode).
2. ``sam build --cached`` (SAM CLI from .venv-sam, python3.13 on PATH). For arm64 the python_pip builder
   downloads manylinux *aarch64* wheels by platform tag, so no container is needed; SharedLayer is built by
   layers/shared/Makefile. The result is checked: every ELF file is aarch64, no bytecode, no shared/local,
   and the dependencies layer holds exactly the distributions pinned in layers/dependencies/requirements.txt.
3. Import check: arm64 extension modules cannot load on an x86_64 host, so a *host twin* of the dependencies
   layer (same pins, cp313, x86_64 manylinux wheels) is installed and compared with the arm64 layer (same
   distributions and versions, byte-identical files apart from the compiled extensions, which must match by
   module name). Then every function of the built template is imported by python3.13 in isolated mode with
   sys.path = [function dir, SharedLayer python/, twin] (+ the standard library), Lambda's environment
   variables, no network; every loaded module must come from those directories. API functions are invoked
   with their sample events where that needs no AWS call (none is faked: an attempted call is reported).
4. Sizes: every layer and function unzipped and zipped, the per-function total against Lambda's 250 MB.

``python layers/build.py --pin`` rewrites layers/dependencies/requirements.txt from the versions installed in
.venv (the versions the tests ran with): pyproject's runtime dependencies and everything they pull in on
python3.13/arm64 Linux, each ``==``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil

# Fixed build commands only (sam, pip, python3.13, unshare), never through a shell.
import subprocess  # nosec B404
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: shared.local.template (a build-time helper) from the repo

from shared.local.template import Resolver, function_specs, load_template  # noqa: E402

AWS_SAM = ROOT / ".aws-sam"
BUILD_DIR = AWS_SAM / "build"
CACHE_DIR = AWS_SAM / "cache"
TWIN_ROOT = AWS_SAM / "import-twin"
# Bytecode of the import check goes here (python -X pycache_prefix), never into the artifacts.
PYCACHE = AWS_SAM / "import-check-pycache"
REPORT = AWS_SAM / "build-report.json"
SAM = ROOT / ".venv-sam" / "bin" / "sam"
REQUIREMENTS = ROOT / "layers" / "dependencies" / "requirements.txt"
EVENTS = ROOT / "events"

REGION = "eu-west-1"
ACCOUNT = "123456789012"
LAMBDA_UNZIPPED_LIMIT = 262_144_000  # 250 MB: function code plus all its layers, unzipped
#: PEP 508 environment of the Lambda python3.13 runtime on arm64 (markers in Requires-Dist).
LAMBDA_MARKERS = {
    "implementation_name": "cpython",
    "implementation_version": "3.13.0",
    "os_name": "posix",
    "platform_machine": "aarch64",
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": "3.13.0",
    "python_version": "3.13",
    "sys_platform": "linux",
}
#: The twin's wheel tags: what pip would pick on an x86_64 python3.13 Lambda (AL2023, glibc 2.34).
TWIN_PLATFORMS = (
    "manylinux2014_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_34_x86_64",
)
ELF_MACHINES = {62: "x86_64", 183: "aarch64"}


class BuildError(RuntimeError):
    """A step failed; the message says which and why."""


def log(message: str) -> None:
    print(message, flush=True)


def run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path = ROOT, quiet: bool = False) -> str:
    """Run a command; its output is shown only when it fails (or always unless quiet)."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)  # noqa: S603  # nosec B603
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    if not quiet and proc.stdout.strip():
        log(proc.stdout.rstrip())
    return proc.stdout


# ------------------------------------------------------------------------------------------ python 3.13


def python313() -> tuple[dict[str, str], str]:
    """The environment that puts python3.13 on PATH (sam build needs it) and the real interpreter's path.

    With pyenv, a second version is added to PYENV_VERSION (``3.11.7:3.13.0``) when python3.13 is not
    found as is.
    """
    env = dict(os.environ, SAM_CLI_TELEMETRY="0")

    def probe() -> str | None:
        # python3.13 from PATH: the interpreter sam build finds too.
        proc = subprocess.run(  # nosec B603 B607
            ["python3.13", "-c", "import sys; print(sys.executable)"],  # noqa: S607
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        return proc.stdout.strip() if proc.returncode == 0 else None

    exe = probe() if shutil.which("python3.13", path=env.get("PATH")) else None
    pyenv = shutil.which("pyenv")
    if exe is None and pyenv:
        bare = run([pyenv, "versions", "--bare"], quiet=True).split()
        found = sorted(
            (v for v in bare if re.fullmatch(r"3\.13\.\d+", v)), key=lambda v: int(v.split(".")[2])
        )
        if found:
            current = env.get("PYENV_VERSION") or run([pyenv, "version-name"], quiet=True).strip()
            env["PYENV_VERSION"] = ":".join([v for v in current.split(":") if v] + [found[-1]])
            exe = probe()
    if exe is None:
        raise BuildError(
            "python3.13 is not on PATH (sam build checks for the runtime's Python): "
            "install it, e.g. `pyenv install 3.13` (then this script finds it)"
        )
    return env, exe


# -------------------------------------------------------------------------------------- dependencies


def _requires(dist: metadata.Distribution) -> list[Requirement]:
    """The requirements of a distribution that apply on Lambda python3.13 arm64 (no extras)."""
    out = []
    for text in dist.requires or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({**LAMBDA_MARKERS, "extra": ""}):
            out.append(req)
    return out


def closure(roots: Iterable[str], find: Any) -> dict[str, metadata.Distribution]:
    """Every distribution ``roots`` need, by canonical name; ``find(name)`` returns an installed one."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [canonicalize_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        dist = find(name)
        if dist is None:
            raise BuildError(f"{name} is needed on python3.13/arm64 but is not installed")
        seen[name] = dist
        todo.extend(canonicalize_name(r.name) for r in _requires(dist))
    return seen


def runtime_requirements() -> list[Requirement]:
    """pyproject.toml's runtime dependencies: what the layer must provide."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(r) for r in project["dependencies"]]


def read_pins(path: Path = REQUIREMENTS) -> dict[str, str]:
    """``name==version`` lines of a requirements file, by canonical name."""
    pins = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
        if not match:
            raise BuildError(f"{path.name}: '{line}' is not pinned as name==version")
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def _venv_dist(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def write_pins() -> None:
    """Rewrite requirements.txt from .venv: the runtime dependencies and their closure, each ``==``."""
    roots = runtime_requirements()
    dists = closure([r.name for r in roots], _venv_dist)
    for req in roots:
        version = dists[canonicalize_name(req.name)].version
        if not req.specifier.contains(version, prereleases=True):
            raise BuildError(f".venv has {req.name} {version}, outside pyproject's {req}")
    top = sorted(canonicalize_name(r.name) for r in roots)
    rest = sorted(set(dists) - set(top))
    lines = [
        "# Third-party runtime dependencies of every function (DependenciesLayer), pinned for reproducible",
        "# deploys: `python layers/build.py --pin` writes this file from the versions installed in .venv",
        "# (the versions the tests ran with); layers/build.py fails if the built layer holds anything else.",
        "# boto3 is pinned here too although the Lambda runtime ships one: the runtime's version changes",
        "# without notice and may be older than what the code and the tests use (docs/build.md: size cost).",
        "# tzdata: IANA zones for the tariff engine and billing periods; zoneinfo falls back to it where",
        "# the runtime image has no /usr/share/zoneinfo (AL2023-based images, python3.13's, may have none).",
        "",
        "# pyproject.toml [project] dependencies",
        *(f"{name}=={dists[name].version}" for name in top),
        "",
        "# what they need on python3.13 (arm64 Linux)",
        *(f"{name}=={dists[name].version}" for name in rest),
    ]
    REQUIREMENTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log(f"wrote {REQUIREMENTS.relative_to(ROOT)}: {len(top)} direct, {len(rest)} transitive pins")


def layer_dists(site: Path) -> dict[str, metadata.Distribution]:
    return {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions(path=[str(site)])}


def check_pins(site: Path) -> list[str]:
    """The built layer holds exactly the pinned distributions; drift from .venv is only a warning."""
    pins = read_pins()
    built = {name: d.version for name, d in layer_dists(site).items()}
    problems = [
        f"layer has {n} {v} but requirements.txt pins {pins.get(n)}"
        for n, v in sorted(built.items())
        if pins.get(n) != v
    ]
    problems += [
        f"requirements.txt pins {n}=={v} but the layer does not hold it"
        for n, v in sorted(pins.items())
        if n not in built
    ]
    for req in runtime_requirements():
        name = canonicalize_name(req.name)
        if name in pins and not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"requirements.txt pins {name}=={pins[name]}, outside pyproject's {req}")
    for name, version in sorted(pins.items()):
        venv = _venv_dist(name)
        if venv is not None and venv.version != version:
            log(
                f"  warning: .venv has {name} {venv.version}, the layer pins {version} "
                "(`python layers/build.py --pin` to follow .venv)"
            )
    return problems


# ------------------------------------------------------------------------------------------- sam build


def sam_build(env: dict[str, str], cached: bool) -> float:
    if not SAM.exists():
        raise BuildError(f"{SAM} is missing: `make build` installs it (.venv-sam)")
    cmd = [
        str(SAM),
        "build",
        "--template-file",
        "template.yaml",
        "--build-dir",
        str(BUILD_DIR),
        "--cache-dir",
        str(CACHE_DIR),
    ]
    if cached:
        cmd.append("--cached")
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)  # noqa: S603  # nosec B603
    seconds = time.monotonic() - started
    (AWS_SAM / "sam-build.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        raise BuildError(
            f"sam build failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    output = proc.stdout + proc.stderr
    reused = output.count("Valid cache found") + output.count("Manifest is not changed")
    log(f"  sam build: {seconds:.1f} s ({reused} resources from the cache; log in .aws-sam/sam-build.log)")
    return seconds


def elf_machine(path: Path) -> str | None:
    """The ELF machine of a file ('aarch64', 'x86_64', ...), None when it is no ELF file."""
    with path.open("rb") as fh:
        head = fh.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return ELF_MACHINES.get(machine, f"machine {machine}")


def check_artifacts(built: dict[str, Any]) -> tuple[list[str], int]:
    """Every binary is aarch64, no bytecode anywhere, nothing development-only in our code."""
    problems = []
    elf_count = 0
    for name, directory in [*built["layers"].items(), *built["functions"].items()]:
        for path in sorted(directory.rglob("*")):
            rel = path.relative_to(BUILD_DIR)
            if path.name == "__pycache__" or path.suffix in (".pyc", ".pyo"):
                problems.append(f"bytecode in the artifact: {rel}")
            elif path.is_file() and (machine := elf_machine(path)) is not None:
                elf_count += 1
                if machine != "aarch64":
                    problems.append(f"{machine} binary in the arm64 artifact: {rel}")
        if name == "SharedLayer":
            if (directory / "python" / "shared" / "local").exists():
                problems.append("shared/local (the local stack) is in SharedLayer")
            if not (directory / "python" / "shared" / "__init__.py").is_file():
                problems.append("SharedLayer has no python/shared package")
    for name, directory in built["functions"].items():
        stray = sorted(
            p.name
            for p in directory.rglob("*")
            if p.is_file() and (p.suffix != ".py" or p.name.startswith(("test_", "conftest")))
        )
        if stray:
            problems.append(f"{name}: files that are not function code: {stray}")
        # Lambda merges the layers into /opt/python (a later layer overwrites an earlier one's files)
        # and puts the function first on sys.path: one top-level name in two places is a silent shadow.
        owners: dict[str, str] = {}
        for owner, root in [(name, directory)] + [
            (lid, built["layers"][lid] / "python") for lid in built["function_layers"][name]
        ]:
            for top in _top_level_names(root):
                if top in owners:
                    problems.append(f"{name}: '{top}' is in both {owners[top]} and {owner}")
                owners[top] = owner
    if elf_count == 0:
        problems.append("no compiled extension in the dependencies layer: pydantic_core should have one")
    return problems, elf_count


def _top_level_names(root: Path) -> set[str]:
    """Importable top-level names of a sys.path entry (packages, modules, extension modules)."""
    if not root.is_dir():
        return set()
    return {
        p.name.split(".", 1)[0]
        for p in root.iterdir()
        if not p.name.endswith((".dist-info", ".data"))
        and p.name not in ("bin", "requirements.txt", "__pycache__")
        and (p.is_dir() or p.suffix in (".py", ".so"))
    }


def built_artifacts() -> dict[str, Any]:
    """The built template's layers and functions, as directories under .aws-sam/build."""
    template = load_template(BUILD_DIR / "template.yaml")
    resources = template["Resources"]
    layers = {
        lid: (BUILD_DIR / r["Properties"]["ContentUri"]).resolve()
        for lid, r in resources.items()
        if r["Type"] == "AWS::Serverless::LayerVersion"
    }
    functions = {
        lid: (BUILD_DIR / r["Properties"]["CodeUri"]).resolve()
        for lid, r in resources.items()
        if r["Type"] == "AWS::Serverless::Function"
    }
    for lid, directory in {**layers, **functions}.items():
        if BUILD_DIR.resolve() not in directory.parents:
            raise BuildError(f"{lid} is not built into {BUILD_DIR} (ContentUri/CodeUri {directory})")
    glob = template.get("Globals", {}).get("Function", {})
    function_layers = {
        lid: [ref["Ref"] for ref in r["Properties"].get("Layers", glob.get("Layers", []))]
        for lid, r in resources.items()
        if r["Type"] == "AWS::Serverless::Function"
    }
    return {
        "template": template,
        "layers": layers,
        "functions": functions,
        "function_layers": function_layers,
    }


# ------------------------------------------------------------------------------------------------ twin


def build_twin(fresh: bool) -> tuple[Path, float]:
    """The host twin: the same pins installed for cp313 on x86_64, cached by the pins' hash."""
    key = hashlib.sha256((REQUIREMENTS.read_text(encoding="utf-8") + repr(TWIN_PLATFORMS)).encode())
    twin = TWIN_ROOT / key.hexdigest()[:16]
    if twin.is_dir() and not fresh:
        log(f"  twin: cached in {twin.relative_to(ROOT)}")
        return twin, 0.0
    started = time.monotonic()
    TWIN_ROOT.mkdir(parents=True, exist_ok=True)
    for old in TWIN_ROOT.iterdir():
        shutil.rmtree(old)
    target = Path(tempfile.mkdtemp(prefix="twin-", dir=TWIN_ROOT))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-compile",
        "--target",
        str(target),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        "3.13",
        *(arg for platform in TWIN_PLATFORMS for arg in ("--platform", platform)),
        "-r",
        str(REQUIREMENTS),
    ]
    run(cmd, quiet=True)
    target.rename(twin)
    seconds = time.monotonic() - started
    log(f"  twin: installed in {seconds:.1f} s into {twin.relative_to(ROOT)}")
    return twin, seconds


_EXT_TAG = re.compile(r"\.cpython-\d+-[a-z0-9_]+-linux-gnu\.so$|\.abi3\.so$|\.so$")


def _layer_files(site: Path) -> tuple[dict[str, str], set[str]]:
    """sha256 of every file of the importable packages, and the extension modules by tag-less name.

    Left out: *.dist-info (installer and wheel tags differ), *.data and bin/ (scripts, placed differently
    by pip and by SAM's builder) and the requirements.txt SAM copies next to the packages.
    """
    files: dict[str, str] = {}
    extensions: set[str] = set()
    for path in site.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(site).as_posix()
        top = rel.split("/", 1)[0]
        if top.endswith((".dist-info", ".data")) or top in ("bin", "requirements.txt"):
            continue
        if path.suffix == ".so":
            extensions.add(_EXT_TAG.sub("", rel))
        else:
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files, extensions


def compare_twin(layer_site: Path, twin: Path) -> list[str]:
    """The twin stands for the layer only if they are the same distributions and the same files."""
    problems = []
    built = {n: d.version for n, d in layer_dists(layer_site).items()}
    host = {n: d.version for n, d in layer_dists(twin).items()}
    if built != host:
        diff = sorted(set(built.items()) ^ set(host.items()))
        problems.append(f"twin and arm64 layer differ in distributions: {diff}")
    files_a, ext_a = _layer_files(layer_site)
    files_t, ext_t = _layer_files(twin)
    only_a, only_t = sorted(set(files_a) - set(files_t)), sorted(set(files_t) - set(files_a))
    changed = sorted(rel for rel in set(files_a) & set(files_t) if files_a[rel] != files_t[rel])
    for label, items in (
        ("only in the arm64 layer", only_a),
        ("only in the twin", only_t),
        ("different content", changed),
    ):
        if items:
            problems.append(f"{label}: {len(items)} files, e.g. {items[:5]}")
    if ext_a != ext_t:
        problems.append(
            f"extension modules differ: arm64 {sorted(ext_a - ext_t)} twin {sorted(ext_t - ext_a)}"
        )
    twin_machines = {elf_machine(p) for p in twin.rglob("*.so")}
    if twin_machines - {"x86_64"}:
        problems.append(f"twin has non-host binaries: {twin_machines}")
    log(
        f"  twin = arm64 layer: {len(built)} distributions, {len(files_a)} files identical, "
        f"{len(ext_a)} extension modules ({', '.join(sorted(ext_a))})"
    )
    return problems


# -------------------------------------------------------------------------------------------- imports

# Runs in `python3.13 -I -S -X pycache_prefix=...` (no site-packages, no PYTHON* variables, bytecode kept
# outside the artifacts), cwd a temp dir.
_CHILD = r"""
import importlib, json, os, socket, sys, time, traceback

cfg = json.loads(sys.argv[1])
stdlib = [os.path.realpath(p) for p in sys.path]
sys.path[:0] = cfg["path"]
network = []

def _blocked(*args, **kwargs):
    network.append(repr(args[1:] if args and isinstance(args[0], socket.socket) else args)[:200])
    raise OSError("network is disabled in the import check")

socket.socket.connect = socket.socket.connect_ex = _blocked
socket.create_connection = socket.getaddrinfo = _blocked

result = {"outside": [], "loaded": {}, "invocations": []}
try:
    started = time.perf_counter()
    module = importlib.import_module(cfg["module"])
    result["import_ms"] = round((time.perf_counter() - started) * 1000)
    result["import_network"] = list(network)
    handler = getattr(module, cfg["attribute"])
    result["callable"] = callable(handler)
    result["module_file"] = module.__file__
    roots = {label: os.path.realpath(p) for label, p in cfg["roots"].items()}
    roots["stdlib"] = None
    for name, mod in sorted(sys.modules.items()):
        paths = [getattr(mod, "__file__", None)] + list(getattr(mod, "__path__", None) or [])
        for path in filter(None, paths):
            real = os.path.realpath(path)
            label = next((k for k, r in roots.items() if r and real.startswith(r + os.sep)), None)
            if label is None and any(real.startswith(s + os.sep) or real == s for s in stdlib):
                label = "stdlib" if "site-packages" not in real else None
            if label is None:
                result["outside"].append(f"{name}: {path}")
            elif path is paths[0]:
                result["loaded"][label] = result["loaded"].get(label, 0) + 1

    if cfg["events"]:
        aws_calls = []

        class NeedsAws(Exception):
            pass

        import botocore.client

        def _no_aws(self, operation, params):
            aws_calls.append(f"{self.meta.service_model.service_name}.{operation}")
            raise NeedsAws(f"{operation} needs AWS")

        botocore.client.BaseClient._make_api_call = _no_aws

        class Context:
            function_name = cfg["function_name"]
            function_version = "$LATEST"
            memory_limit_in_mb = 512
            invoked_function_arn = f"arn:aws:lambda:eu-west-1:123456789012:function:{function_name}"
            aws_request_id = "00000000-0000-4000-8000-000000000000"
            log_group_name = f"/aws/lambda/{function_name}"
            log_stream_name = "import-check"

            def get_remaining_time_in_millis(self):
                return 29000

        for path in cfg["events"]:
            del aws_calls[:], network[:]
            entry = {"event": os.path.basename(path)}
            try:
                with open(path, encoding="utf-8") as fh:
                    answer = handler(json.load(fh), Context())
                entry["statusCode"] = answer.get("statusCode")
                try:
                    entry["ocpi_status"] = json.loads(answer.get("body") or "{}").get("status_code")
                except ValueError:
                    pass
            except Exception as err:
                entry["raised"] = type(err).__name__
            entry["aws_calls"], entry["network"] = list(aws_calls), list(network)
            result["invocations"].append(entry)
            if not aws_calls and not network and "raised" not in entry:
                break
except BaseException:
    result["error"] = traceback.format_exc()
with open(cfg["result"], "w", encoding="utf-8") as fh:
    json.dump(result, fh)
"""


def lambda_environment(spec: Any, task_root: Path) -> dict[str, str]:
    """What Lambda sets for this function, plus its template variables (resolved with dummy names)."""
    return {
        **spec.environment,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size or 128),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "import-check",
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        # No credentials are given and no metadata endpoint is asked: any AWS call fails, visibly.
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _sample_events(source_code_uri: str) -> list[str]:
    folder = EVENTS / Path(source_code_uri).name
    return [str(p) for p in sorted(folder.glob("*.json"))]


def import_check(built: dict[str, Any], exe: str, twin: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Import every built function in isolation (see module docstring); invoke API functions offline."""
    source_specs = {
        s.logical_id: s
        for s in function_specs(
            load_template(ROOT / "template.yaml"),
            Resolver(load_template(ROOT / "template.yaml"), "import-check", REGION, ACCOUNT),
        )
    }
    template = built["template"]
    specs = [
        s
        for s in function_specs(template, Resolver(template, "import-check", REGION, ACCOUNT))
        if s.logical_id in built["functions"]
    ]
    unshare = shutil.which("unshare")
    isolate = (
        [unshare, "-n"]
        if unshare
        and subprocess.run(  # noqa: S603  # nosec B603
            [unshare, "-n", "true"], capture_output=True, check=False
        ).returncode
        == 0
        else []
    )

    def check(spec: Any) -> dict[str, Any]:
        task_root = built["functions"][spec.logical_id]
        layer_ids = built["function_layers"][spec.logical_id]
        roots = {"function": task_root}
        for layer_id in layer_ids:
            site = built["layers"][layer_id] / "python"
            # The arm64 dependencies layer cannot load here: its verified twin stands in for it.
            roots[layer_id] = twin if layer_id == "DependenciesLayer" else site
        with tempfile.TemporaryDirectory(prefix="import-check-") as cwd:
            source = source_specs[spec.logical_id]
            cfg = {
                "path": [str(p) for p in roots.values()],
                "roots": {k: str(v) for k, v in roots.items()},
                "module": spec.module_name,
                "attribute": spec.handler_attribute,
                "result": str(Path(cwd) / "result.json"),
                "events": _sample_events(source.code_uri) if spec.api_routes else [],
                "function_name": spec.function_name,
            }
            env = {**lambda_environment(spec, task_root), "HOME": cwd}
            proc = subprocess.run(  # noqa: S603  # nosec B603
                [*isolate, exe, "-I", "-S", "-X", f"pycache_prefix={PYCACHE}", "-c", _CHILD, json.dumps(cfg)],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            result_file = Path(cfg["result"])
            result = (
                json.loads(result_file.read_text())
                if result_file.exists()
                else {"error": f"exit {proc.returncode}: {proc.stderr[-2000:]}"}
            )
        result["function"] = spec.logical_id
        result["expected_file"] = str(task_root / f"{spec.module_name}.py")
        result["isolated_net"] = bool(isolate)
        return result

    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        results = list(pool.map(check, specs))

    problems = []
    for r in results:
        name = r["function"]
        if r.get("error"):
            problems.append(f"{name}: import failed:\n{r['error']}")
            continue
        if not r.get("callable"):
            problems.append(f"{name}: handler is not callable")
        if r.get("module_file") != r["expected_file"]:
            problems.append(f"{name}: app came from {r.get('module_file')}, not the built function dir")
        if r["outside"]:
            problems.append(f"{name}: modules loaded from outside the artifacts: {r['outside'][:10]}")
        if r.get("import_network"):
            problems.append(f"{name}: importing tried to open a connection: {r['import_network'][:3]}")
    return problems, results


def report_imports(results: list[dict[str, Any]]) -> None:
    isolation = "own network namespace" if results and results[0]["isolated_net"] else "sockets blocked"
    log(f"  import check: python3.13 -I -S, {isolation}, bytecode in {PYCACHE.relative_to(ROOT)}")
    log("  sys.path = [function dir, SharedLayer python/, host twin of DependenciesLayer] + stdlib")
    log(f"  {'function':24} {'import':>7}  modules from function/shared/deps/stdlib  invocation")
    for r in results:
        if r.get("error"):
            log(f"  {r['function']:24} FAILED")
            continue
        loaded = r["loaded"]
        counts = "/".join(
            str(loaded.get(k, 0)) for k in ("function", "SharedLayer", "DependenciesLayer", "stdlib")
        )
        log(f"  {r['function']:24} {r['import_ms']:>5} ms  {counts:40} {_invocation_text(r['invocations'])}")


def _invocation_text(invocations: list[dict[str, Any]]) -> str:
    if not invocations:
        return "-"
    last = invocations[-1]
    if not last["aws_calls"] and not last["network"] and "raised" not in last:
        return f"{last['event']}: HTTP {last['statusCode']}, OCPI {last.get('ocpi_status')} (no AWS call)"
    first_calls = sorted({c for i in invocations for c in i["aws_calls"]})
    return f"skipped: all {len(invocations)} samples need AWS ({', '.join(first_calls) or 'network'})"


# ---------------------------------------------------------------------------------------------- sizes


def _zip_size(
    directory: Path, dist_of: dict[str, str] | None = None
) -> tuple[int, int, dict[str, list[int]]]:
    """Unzipped and zipped bytes (deflate, like sam package); per distribution if ``dist_of`` maps files."""
    per_dist: dict[str, list[int]] = {}
    with tempfile.TemporaryFile() as fh:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(directory.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(directory).as_posix())
            unzipped = sum(i.file_size for i in zf.infolist())
            if dist_of is not None:
                for info in zf.infolist():
                    dist = dist_of.get(info.filename, "(other)")
                    sizes = per_dist.setdefault(dist, [0, 0])
                    sizes[0] += info.file_size
                    sizes[1] += info.compress_size
        fh.seek(0, os.SEEK_END)
        return unzipped, fh.tell(), per_dist


def _files_by_dist(site: Path) -> dict[str, str]:
    """Layer-relative path (python/...) -> canonical distribution name, from each RECORD."""
    out = {}
    for name, dist in layer_dists(site).items():
        for file in dist.files or []:
            out["python/" + os.path.normpath(str(file)).replace(os.sep, "/")] = name
    return out


def sizes(built: dict[str, Any]) -> dict[str, Any]:
    mb = 1_000_000
    out: dict[str, Any] = {"layers": {}, "functions": {}}
    deps_site = built["layers"]["DependenciesLayer"] / "python"
    per_dist: dict[str, list[int]] = {}
    for lid, directory in built["layers"].items():
        dist_of = _files_by_dist(deps_site) if lid == "DependenciesLayer" else None
        unzipped, zipped, found = _zip_size(directory, dist_of)
        per_dist.update(found)
        out["layers"][lid] = {"unzipped": unzipped, "zipped": zipped}
        log(f"  layer {lid:26} {unzipped / mb:7.2f} MB unzipped {zipped / mb:7.2f} MB zipped")
    worst = 0
    for lid, directory in built["functions"].items():
        unzipped, zipped, _ = _zip_size(directory)
        total = unzipped + sum(out["layers"][layer]["unzipped"] for layer in built["function_layers"][lid])
        worst = max(worst, total)
        out["functions"][lid] = {"unzipped": unzipped, "zipped": zipped, "with_layers_unzipped": total}
    fn_zips = [f["zipped"] for f in out["functions"].values()]
    log(
        f"  {len(fn_zips)} function zips: {min(fn_zips) / 1000:.1f} to {max(fn_zips) / 1000:.1f} kB "
        f"(app.py only); largest function + layers unzipped: {worst / mb:.1f} MB "
        f"({worst / LAMBDA_UNZIPPED_LIMIT:.0%} of Lambda's 250 MB limit)"
    )
    out["largest_with_layers_unzipped"] = worst
    # What pinning our own boto3 costs: the distributions only boto3 needs.
    dists = layer_dists(deps_site)
    others = [
        canonicalize_name(r.name) for r in runtime_requirements() if canonicalize_name(r.name) != "boto3"
    ]
    only_boto3 = sorted(set(closure(["boto3"], dists.get)) - set(closure(others, dists.get)))
    cost = [sum(per_dist.get(d, [0, 0])[i] for d in only_boto3) for i in (0, 1)]
    out["boto3_cost"] = {"distributions": only_boto3, "unzipped": cost[0], "zipped": cost[1]}
    log(
        f"  boto3 in the layer ({', '.join(only_boto3)}): {cost[0] / mb:.1f} MB unzipped, "
        f"{cost[1] / mb:.1f} MB zipped"
    )
    out["per_distribution"] = dict(sorted(per_dist.items(), key=lambda kv: -kv[1][0]))
    return out


# ----------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pin", action="store_true", help="rewrite requirements.txt from .venv and stop")
    parser.add_argument("--no-cache", action="store_true", help="sam build without --cached, fresh twin")
    args = parser.parse_args(argv)
    if args.pin:
        write_pins()
        return 0
    started = time.monotonic()
    try:
        AWS_SAM.mkdir(exist_ok=True)
        env, exe = python313()
        shared_out = run(["bash", str(ROOT / "layers" / "build_shared.sh")], quiet=True)
        log(f"== shared layer\n  {shared_out.strip()}")
        log(f"== sam build (python3.13, arm64; {exe})")
        sam_seconds = sam_build(env, cached=not args.no_cache)
        built = built_artifacts()
        deps_site = built["layers"]["DependenciesLayer"] / "python"
        problems, elf_count = check_artifacts(built)
        log(
            f"  artifacts: {len(built['layers'])} layers, {len(built['functions'])} functions, "
            f"{elf_count} ELF files, all aarch64"
            if not problems
            else "  artifacts: PROBLEMS"
        )
        problems += check_pins(deps_site)
        if problems:
            raise BuildError("the build is not deployable:\n  " + "\n  ".join(problems))
        log("== import check")
        twin, twin_seconds = build_twin(fresh=args.no_cache)
        problems = compare_twin(deps_site, twin)
        if problems:
            raise BuildError("the host twin does not match the arm64 layer:\n  " + "\n  ".join(problems))
        check_started = time.monotonic()
        problems, results = import_check(built, exe, twin)
        check_seconds = time.monotonic() - check_started
        report_imports(results)
        problems += check_artifacts(built)[0]  # the check itself must not have left bytecode behind
        if problems:
            raise BuildError("import check failed:\n  " + "\n  ".join(problems))
        log(f"  {len(results)} functions import from the artifacts alone ({check_seconds:.1f} s)")
        log("== sizes")
        size_report = sizes(built)
    except BuildError as err:
        log(f"BUILD FAILED: {err}")
        return 1
    total = time.monotonic() - started
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    REPORT.write_text(
        json.dumps(
            {
                "seconds": {
                    "total": round(total, 1),
                    "cpu": round(cpu, 1),
                    "sam_build": round(sam_seconds, 1),
                    "twin": round(twin_seconds, 1),
                    "import_check": round(check_seconds, 1),
                },
                "sizes": size_report,
                "imports": results,
            },
            indent=1,
            default=str,
        ),
        encoding="utf-8",
    )
    log(
        f"== built in {total:.1f} s ({cpu:.1f} s CPU): {BUILD_DIR.relative_to(ROOT)} "
        f"(report {REPORT.relative_to(ROOT)}); "
        "deploy with `sam deploy --guided` (it uses .aws-sam/build/template.yaml)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
