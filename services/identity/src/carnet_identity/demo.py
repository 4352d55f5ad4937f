"""The fixed demo population (issue 2, item 5), with deterministic ids.

Ids are ``uuid5(NAMESPACE_URL, "carnet-demo:" + key)`` where the key is the 13-character
NIR of a holder, the RPPS of a professional, the FINESS of an organisation or the id of
a software client, so other services' seeds and tests can import them (or compute them)
without asking identity.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

DEMO_PASSWORD = "Carnet-demo-2026"
DEMO_EMAIL_DOMAIN = "demo.carnet.test"
ACTIVATION_CODES_FILE = "demo-activation-codes.json"


def demo_id(key: str) -> uuid.UUID:
    """The deterministic id of a demo record."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "carnet-demo:" + key)


@dataclasses.dataclass(frozen=True)
class DemoHolder:
    """A demo holder."""

    nir: str
    ins_key: str
    birth_name: str
    first_name: str
    sex: str
    birth_date: dt.date
    birth_place_code: str
    department_code: str
    state: str
    with_password: bool

    @property
    def id(self) -> uuid.UUID:
        """Deterministic person id."""
        return demo_id(self.nir)

    @property
    def ins(self) -> str:
        """The 15-character INS."""
        return self.nir + self.ins_key

    @property
    def email(self) -> str:
        """firstname.lastname@demo.carnet.test, accents dropped."""
        return _email(self.first_name, self.birth_name)


@dataclasses.dataclass(frozen=True)
class DemoProfessional:
    """A demo health professional."""

    rpps: str
    birth_name: str
    first_name: str
    profession_code: str
    specialty_code: str
    organisation_finess: str = ""

    @property
    def id(self) -> uuid.UUID:
        """Deterministic professional id."""
        return demo_id(self.rpps)

    @property
    def email(self) -> str:
        """firstname.lastname@demo.carnet.test, accents dropped."""
        return _email(self.first_name, self.birth_name)


@dataclasses.dataclass(frozen=True)
class DemoOrganisation:
    """A demo organisation."""

    finess: str
    name: str
    kind: str
    department_code: str

    @property
    def id(self) -> uuid.UUID:
        """Deterministic organisation id."""
        return demo_id(self.finess)


@dataclasses.dataclass(frozen=True)
class DemoClient:
    """A demo software client."""

    client_id: str
    secret: str
    display_name: str
    kind: str
    organisation_finess: str
    scopes: tuple[str, ...]
    ae_titles: tuple[str, ...] = ()


_ACCENTS = str.maketrans("àâäçéèêëîïôöùûüÿœæ", "aaaceeeeiioouuuyoa")


def _email(first_name: str, last_name: str) -> str:
    local = f"{first_name}.{last_name}".lower().translate(_ACCENTS).replace(" ", "-")
    return f"{local}@{DEMO_EMAIL_DOMAIN}"


CAMILLE = DemoHolder(
    "2840575120005", "31", "MARTIN", "Camille", "F", dt.date(1984, 5, 12), "75120", "75", "active", True
)
LEA = DemoHolder("2151175056789", "85", "MARTIN", "Léa", "F", dt.date(2015, 11, 3), "75056", "75", "active", False)
KARIM = DemoHolder("1790369123456", "12", "BENALI", "Karim", "M", dt.date(1979, 3, 2), "69123", "69", "active", True)
JEAN = DemoHolder("1560813055042", "44", "DUPONT", "Jean", "M", dt.date(1956, 8, 21), "13055", "13", "notified", False)
HOLDERS = (CAMILLE, LEA, KARIM, JEAN)

IMAGING_CENTRE = DemoOrganisation("750001232", "Centre d'imagerie Demo", "imaging_centre", "75")
LABORATORY = DemoOrganisation("690004569", "Laboratoire de biologie médicale Demo", "laboratory", "69")
INSURER = DemoOrganisation("130001233", "Caisse primaire d'assurance maladie Demo", "insurer", "13")
ORGANISATIONS = (IMAGING_CENTRE, LABORATORY, INSURER)

PAUL_DUBOIS = DemoProfessional("10000000017", "DUBOIS", "Paul", "10", "SM26")
SOPHIE_LEROY = DemoProfessional("10000000025", "LEROY", "Sophie", "60", "")
ANNE_MOREAU = DemoProfessional("10000000033", "MOREAU", "Anne", "10", "SM44", IMAGING_CENTRE.finess)
MARC_GIRARD = DemoProfessional("10000000041", "GIRARD", "Marc", "21", "")
PROFESSIONALS = (PAUL_DUBOIS, SOPHIE_LEROY, ANNE_MOREAU, MARC_GIRARD)

PACS_CLIENT = DemoClient(
    "pacs-demo",
    "pacs-demo-secret",
    "PACS du Centre d'imagerie Demo",
    "pacs",
    IMAGING_CENTRE.finess,
    ("imaging.push", "documents.deposit"),
    ("DEMOPACS",),
)
LAB_CLIENT = DemoClient(
    "lab-demo",
    "lab-demo-secret",
    "SIL du Laboratoire Demo",
    "laboratory_system",
    LABORATORY.finess,
    ("documents.deposit",),
)
REGISTRY_CLIENT = DemoClient(
    "registry-demo",
    "registry-demo-secret",
    "Référentiel des assurés (CPAM Demo)",
    "insurer_registry",
    INSURER.finess,
    ("persons.import",),
)
AGENT_DESK_CLIENT = DemoClient(
    "agent-desk-demo",
    "agent-desk-demo-secret",
    "Poste des agents d'accueil (CPAM Demo)",
    "operator_console",
    INSURER.finess,
    (),
)
CLIENTS = (PACS_CLIENT, LAB_CLIENT, REGISTRY_CLIENT, AGENT_DESK_CLIENT)

# Ids other services refer to.
CAMILLE_ID = CAMILLE.id
LEA_ID = LEA.id
KARIM_ID = KARIM.id
JEAN_ID = JEAN.id
PAUL_DUBOIS_ID = PAUL_DUBOIS.id
SOPHIE_LEROY_ID = SOPHIE_LEROY.id
ANNE_MOREAU_ID = ANNE_MOREAU.id
MARC_GIRARD_ID = MARC_GIRARD.id
IMAGING_CENTRE_ID = IMAGING_CENTRE.id
LABORATORY_ID = LABORATORY.id
PACS_CLIENT_ID = PACS_CLIENT.client_id
LAB_CLIENT_ID = LAB_CLIENT.client_id

# Camille is Léa's legal representative (parent) until Léa's 18th birthday; Paul DUBOIS
# is Camille's treating physician.
LEGAL_REPRESENTATIONS = ((LEA, CAMILLE, "parent"),)
TREATING_PHYSICIANS = ((CAMILLE, PAUL_DUBOIS),)


def representation_id(holder: DemoHolder, representative: DemoHolder) -> uuid.UUID:
    """Deterministic id of a demo legal representation."""
    return demo_id(f"legal:{holder.nir}:{representative.nir}")
