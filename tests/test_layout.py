"""The cut as ARCHITECTURE.md draws it: each part installs alone and carries only what it uses."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PARTS = {
    "identity": ROOT / "services/identity",
    "consent": ROOT / "services/consent",
    "dossier": ROOT / "services/dossier",
    "imaging": ROOT / "services/imaging",
    "notify": ROOT / "services/notify",
    "gateway": ROOT / "gateway",
}
DICOM_STACK = {"pydicom", "pynetdicom", "numpy"}
HTTP_STACK = {"fastapi", "uvicorn", "starlette", "python-multipart"}


def _dependencies(part: Path) -> set[str]:
    project = tomllib.loads((part / "pyproject.toml").read_text())["project"]
    names = set()
    for requirement in project["dependencies"]:
        name = requirement.split(";")[0]
        for stop in "<>=!~[ ":
            name = name.split(stop)[0]
        names.add(name.strip().lower())
    return names


@pytest.mark.parametrize("name", sorted(PARTS))
def test_each_part_declares_its_own_package_and_the_shared_ones(name: str) -> None:
    part = PARTS[name]
    project = tomllib.loads((part / "pyproject.toml").read_text())["project"]
    assert project["name"] == f"carnet-{name}"
    assert {"carnet-kit", "carnet-protos"} <= _dependencies(part)
    assert (part / "src" / f"carnet_{name}" / "__main__.py").is_file()
    assert (part / "README.md").is_file()


@pytest.mark.parametrize("name", sorted(PARTS))
def test_only_imaging_pulls_the_dicom_stack_and_only_the_gateway_the_http_stack(name: str) -> None:
    dependencies = _dependencies(PARTS[name])
    assert bool(dependencies & DICOM_STACK) == (name == "imaging"), dependencies
    assert bool(dependencies & HTTP_STACK) == (name == "gateway"), dependencies


@pytest.mark.parametrize("name", sorted(PARTS))
def test_starting_a_part_imports_no_other_parts_stack(name: str) -> None:
    module = "carnet_gateway.app" if name == "gateway" else f"carnet_{name}.app"
    probe = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(result.stdout))
    others = {f"carnet_{other}" for other in PARTS if other != name} - {"carnet_gateway"} | (
        {"carnet_gateway"} if name != "gateway" else set()
    )
    assert not loaded & others, f"{name} imports {loaded & others}"
    if name != "imaging":
        assert not loaded & {"pydicom", "pynetdicom", "numpy"}
    if name != "gateway":
        assert not loaded & {"fastapi", "uvicorn", "starlette"}


def test_generated_contracts_cover_the_five_services() -> None:
    protos = ROOT / "protos" / "carnet"
    for service in ("identity", "consent", "dossier", "imaging", "notify"):
        folder = protos / service / "v1"
        assert (folder / f"{service}_service.proto").is_file()
        assert (folder / f"{service}_service_pb2.py").is_file()
        assert (folder / f"{service}_service_pb2_grpc.pyi").is_file()
