"""The access matrix: which profession may read and write which document class.

The matrix is data, versioned with the code: ``access_matrix/v<N>.json`` in this
package, the highest ``N`` being the one in force. It changes only by deploying a new
version. The file is checked at start: every profession has a right ("r", "w", "rw"
or "-") for every document class, and nothing else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

_PACKAGE = "carnet_consent"
PACKAGE_FOLDER = "access_matrix"
_FILE_NAME = re.compile(r"^v(\d+)\.json$")
_RIGHTS = {"-": (False, False), "r": (True, False), "w": (False, True), "rw": (True, True)}


class AccessMatrixError(ValueError):
    """The access matrix file is incomplete or malformed."""


@dataclass(frozen=True)
class Right:
    """What one profession may do with one document class."""

    read: bool
    write: bool


@dataclass(frozen=True)
class AccessMatrix:
    """A validated access matrix: professions x document classes → rights."""

    version: str
    effective_time: datetime | None
    professions: Mapping[str, str]
    document_classes: Mapping[str, str]
    rights: Mapping[str, Mapping[str, Right]]

    def right(self, profession_code: str, document_class: str) -> Right:
        """The right of a profession on a class; none for an unknown profession or class."""
        return self.rights.get(profession_code, {}).get(document_class, Right(read=False, write=False))

    def may_read(self, profession_code: str, document_class: str) -> bool:
        """Whether the profession may read documents of the class."""
        return self.right(profession_code, document_class).read

    def may_write(self, profession_code: str, document_class: str) -> bool:
        """Whether the profession may deposit documents of the class."""
        return self.right(profession_code, document_class).write

    def knows_class(self, document_class: str) -> bool:
        """Whether the class is one the matrix defines."""
        return document_class in self.document_classes


def _labels(document: Mapping[str, Any], key: str) -> dict[str, str]:
    value = document.get(key)
    if not isinstance(value, dict) or not value:
        raise AccessMatrixError(f"{key!r} must be a non-empty object of code → label")
    for code, label in value.items():
        if not isinstance(label, str) or not label.strip():
            raise AccessMatrixError(f"{key}[{code!r}] must have a label")
    return dict(value)


def parse_access_matrix(document: Mapping[str, Any]) -> AccessMatrix:
    """Validate a matrix document; every profession x class must be present, nothing more."""
    version = document.get("version")
    if not isinstance(version, str) or not version:
        raise AccessMatrixError("'version' must be a non-empty string")
    effective_text = document.get("effective_time")
    effective_time: datetime | None = None
    if effective_text is not None:
        try:
            effective_time = datetime.fromisoformat(str(effective_text))
        except ValueError as exc:
            raise AccessMatrixError(f"'effective_time' is not an ISO 8601 date-time: {effective_text!r}") from exc
        if effective_time.tzinfo is None:
            raise AccessMatrixError("'effective_time' must carry a time zone")
    professions = _labels(document, "professions")
    classes = _labels(document, "document_classes")
    table = document.get("rights")
    if not isinstance(table, dict):
        raise AccessMatrixError("'rights' must be an object of profession → class → right")
    extra = sorted(set(table) - set(professions))
    if extra:
        raise AccessMatrixError(f"rights for undeclared professions: {', '.join(extra)}")
    rights: dict[str, dict[str, Right]] = {}
    for profession in professions:
        row = table.get(profession)
        if not isinstance(row, dict):
            raise AccessMatrixError(f"profession {profession} has no row of rights")
        missing = sorted(set(classes) - set(row))
        if missing:
            raise AccessMatrixError(f"profession {profession} has no right for {', '.join(missing)}")
        unknown = sorted(set(row) - set(classes))
        if unknown:
            raise AccessMatrixError(f"profession {profession} names undeclared classes: {', '.join(unknown)}")
        parsed: dict[str, Right] = {}
        for document_class, text in row.items():
            if text not in _RIGHTS:
                raise AccessMatrixError(
                    f"right {profession} x {document_class} must be one of -, r, w, rw; got {text!r}"
                )
            read, write = _RIGHTS[text]
            parsed[document_class] = Right(read=read, write=write)
        rights[profession] = parsed
    return AccessMatrix(
        version=version, effective_time=effective_time, professions=professions, document_classes=classes, rights=rights
    )


def packaged_versions() -> list[int]:
    """The matrix versions shipped in this package, ascending."""
    folder = resources.files(_PACKAGE).joinpath(PACKAGE_FOLDER)
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(int(match.group(1)))
    return sorted(found)


def load_access_matrix(version: int) -> AccessMatrix:
    """Load and validate the packaged matrix of one version."""
    chosen = version
    if chosen not in packaged_versions():
        raise AccessMatrixError(f"no access matrix v{chosen} is packaged")
    text = resources.files(_PACKAGE).joinpath(PACKAGE_FOLDER, f"v{chosen}.json").read_text(encoding="utf-8")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AccessMatrixError(f"v{chosen}.json is not valid JSON: {exc}") from exc
    matrix = parse_access_matrix(document)
    if matrix.version != str(chosen):
        raise AccessMatrixError(f"v{chosen}.json declares version {matrix.version!r}")
    return matrix


def load_access_matrices() -> list[AccessMatrix]:
    """Every packaged matrix, validated, oldest first; the last one is in force."""
    versions = packaged_versions()
    if not versions:
        raise AccessMatrixError("no access matrix is packaged")
    return [load_access_matrix(version) for version in versions]
