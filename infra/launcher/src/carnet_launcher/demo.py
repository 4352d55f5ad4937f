"""The fixed demo population seeded by ``run``, as data that banners and tests can rely on."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import date
from pathlib import Path

PASSWORD = "Carnet-demo-2026"  # noqa: S105 - published demo credential, not a secret
"""Password of every demo account that has one (holders and professionals)."""

EMAIL_DOMAIN = "demo.carnet.test"


def demo_email(first_name: str, last_name: str) -> str:
    """``firstname.lastname@demo.carnet.test``, lower case, accents dropped."""

    def plain(text: str) -> str:
        decomposed = unicodedata.normalize("NFKD", text)
        ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c))
        return ascii_only.lower().replace(" ", "-")

    return f"{plain(first_name)}.{plain(last_name)}@{EMAIL_DOMAIN}"


@dataclass(frozen=True)
class DemoHolder:
    """A person holding a Carnet space."""

    first_name: str
    last_name: str
    sex: str
    birth_date: date
    nir: str
    """Social security number, 13 digits then the 2-digit key."""
    status: str
    """Account state: ``active``, ``notified`` (inside the opposition window) or ``represented``."""
    password: str | None
    note: str = ""
    """Shown instead of the bare status when set."""

    @property
    def email(self) -> str:
        """The holder's demo e-mail address."""
        return demo_email(self.first_name, self.last_name)

    @property
    def display_name(self) -> str:
        """First name then last name in capitals, as the banner shows it."""
        return f"{self.first_name} {self.last_name}"


@dataclass(frozen=True)
class DemoProfessional:
    """A health professional of the demo directory."""

    title: str
    first_name: str
    last_name: str
    profession: str
    rpps: str
    organisation: str = ""
    note: str = ""

    @property
    def email(self) -> str:
        """The professional's demo login."""
        return demo_email(self.first_name, self.last_name)

    @property
    def display_name(self) -> str:
        """``Dr Paul DUBOIS`` style name."""
        return " ".join(part for part in (self.title, self.first_name, self.last_name) if part)

    @property
    def password(self) -> str:
        """Professionals all share the demo password."""
        return PASSWORD


@dataclass(frozen=True)
class DemoClient:
    """A software client authenticating with OAuth2 client credentials."""

    client_id: str
    secret: str
    scopes: tuple[str, ...]
    description: str
    ae_title: str | None = None


CAMILLE = DemoHolder(
    "Camille", "MARTIN", "F", date(1984, 5, 12), "284057512000531", "active", PASSWORD
)
LEA = DemoHolder(
    "Léa",
    "MARTIN",
    "F",
    date(2015, 11, 3),
    "215117505678985",
    "represented",
    None,
    note="minor, represented by her legal representative Camille MARTIN",
)
KARIM = DemoHolder("Karim", "BENALI", "M", date(1979, 3, 2), "179036912345612", "active", PASSWORD)
JEAN = DemoHolder(
    "Jean",
    "DUPONT",
    "M",
    date(1956, 8, 21),
    "156081305504244",
    "notified",
    None,
    note="notified, inside the opposition window",
)
HOLDERS: tuple[DemoHolder, ...] = (CAMILLE, LEA, KARIM, JEAN)

PAUL_DUBOIS = DemoProfessional(
    "Dr",
    "Paul",
    "DUBOIS",
    "general practitioner",
    "10000000017",
    note="treating physician of Camille MARTIN",
)
SOPHIE_LEROY = DemoProfessional("", "Sophie", "LEROY", "nurse", "10000000025")
ANNE_MOREAU = DemoProfessional(
    "Dr", "Anne", "MOREAU", "radiologist", "10000000033", organisation="Centre d'imagerie Demo"
)
MARC_GIRARD = DemoProfessional("", "Marc", "GIRARD", "pharmacist", "10000000041")
PROFESSIONALS: tuple[DemoProfessional, ...] = (PAUL_DUBOIS, SOPHIE_LEROY, ANNE_MOREAU, MARC_GIRARD)

PACS_DEMO = DemoClient(
    "pacs-demo",
    "pacs-demo-secret",
    ("imaging.push", "documents.deposit"),
    "PACS of Centre d'imagerie Demo",
    ae_title="DEMOPACS",
)
LAB_DEMO = DemoClient(
    "lab-demo", "lab-demo-secret", ("documents.deposit",), "a medical laboratory's software"
)
REGISTRY_DEMO = DemoClient(
    "registry-demo",
    "registry-demo-secret",
    ("persons.import",),
    "the insurer's registry (carnet identity import)",
)
AGENT_DESK_DEMO = DemoClient(
    "agent-desk-demo",
    "agent-desk-demo-secret",
    (),
    "an insurer's agents' desk (its tokens act as an operator)",
)
CLIENTS: tuple[DemoClient, ...] = (PACS_DEMO, LAB_DEMO, REGISTRY_DEMO, AGENT_DESK_DEMO)


def read_activation_codes(path: Path) -> dict[str, str]:
    """NIR → activation code, from the JSON file the identity seed writes ({} if absent)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(nir): str(code) for nir, code in raw.items()}
