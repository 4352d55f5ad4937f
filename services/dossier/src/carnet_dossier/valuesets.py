"""Value sets of document metadata: LOINC type codes with their French labels and default class.

Class codes are those of consent's access matrix; a depositor may send another known
class (a psychiatric synthesis is typed 34133-9 but classed ``PSY_SYNTHESIS``).
"""

from __future__ import annotations

from typing import NamedTuple


class DocumentType(NamedTuple):
    """One LOINC document type."""

    code: str
    label_fr: str
    default_class: str


DOCUMENT_CLASSES: frozenset[str] = frozenset(
    {
        "SYNTH",
        "PSY_SYNTHESIS",
        "REPORT",
        "PRESCRIPTION",
        "LAB",
        "IMAGING",
        "CERTIFICATE",
        "VACCINATION",
        "PREVENTION",
        "ADMIN",
        "HOLDER",
    }
)

CLASS_LABELS: dict[str, str] = {
    "SYNTH": "Synthèse",
    "PSY_SYNTHESIS": "Synthèse psychiatrique",
    "REPORT": "Compte rendu",
    "PRESCRIPTION": "Prescription",
    "LAB": "Biologie",
    "IMAGING": "Imagerie",
    "CERTIFICATE": "Certificat",
    "VACCINATION": "Vaccination",
    "PREVENTION": "Prévention",
    "ADMIN": "Document administratif",
    "HOLDER": "Document déposé par le titulaire",
}
"""French label of each class."""

LOINC_SYSTEM = "http://loinc.org"

_TYPES = (
    DocumentType("11488-4", "Compte rendu de consultation", "REPORT"),
    DocumentType("11490-0", "Lettre de liaison à la sortie", "REPORT"),
    DocumentType("18842-5", "Compte rendu d'hospitalisation", "REPORT"),
    DocumentType("34117-2", "Observation médicale", "REPORT"),
    DocumentType("11504-8", "Compte rendu opératoire", "REPORT"),
    DocumentType("28570-0", "Compte rendu d'acte", "REPORT"),
    DocumentType("11506-3", "Note d'évolution", "REPORT"),
    DocumentType("34111-5", "Compte rendu de passage aux urgences", "REPORT"),
    DocumentType("18761-7", "Lettre de transfert", "REPORT"),
    DocumentType("34749-2", "Consultation pré-anesthésique", "REPORT"),
    DocumentType("34746-8", "Note de soins infirmiers", "REPORT"),
    DocumentType("18776-5", "Plan de soins", "REPORT"),
    DocumentType("75496-0", "Compte rendu de téléconsultation", "REPORT"),
    DocumentType("11524-6", "Électrocardiogramme", "REPORT"),
    DocumentType("34133-9", "Synthèse d'épisode de soins", "SYNTH"),
    DocumentType("60591-5", "Volet de synthèse médicale", "SYNTH"),
    DocumentType("57833-6", "Ordonnance de médicaments", "PRESCRIPTION"),
    DocumentType("57832-8", "Prescription d'examens ou de soins", "PRESCRIPTION"),
    DocumentType("10160-0", "Historique des médicaments", "PRESCRIPTION"),
    DocumentType("56445-0", "Synthèse médicamenteuse", "PRESCRIPTION"),
    DocumentType("11502-2", "Compte rendu d'examens biologiques", "LAB"),
    DocumentType("11526-1", "Compte rendu d'anatomie et de cytologie pathologiques", "LAB"),
    DocumentType("18719-5", "Biochimie", "LAB"),
    DocumentType("18723-7", "Hématologie", "LAB"),
    DocumentType("18725-2", "Microbiologie", "LAB"),
    DocumentType("18748-4", "Compte rendu d'imagerie médicale", "IMAGING"),
    DocumentType("18747-6", "Compte rendu de scanner", "IMAGING"),
    DocumentType("18755-9", "Compte rendu d'IRM", "IMAGING"),
    DocumentType("18760-9", "Compte rendu d'échographie", "IMAGING"),
    DocumentType("11369-6", "Historique des vaccinations", "VACCINATION"),
    DocumentType("87273-9", "Note de vaccination", "VACCINATION"),
    DocumentType("51851-4", "Document administratif", "ADMIN"),
    DocumentType("59284-0", "Consentement", "ADMIN"),
    DocumentType("42348-3", "Directives anticipées", "HOLDER"),
    DocumentType("51855-5", "Note du titulaire", "HOLDER"),
)

DOCUMENT_TYPES: dict[str, DocumentType] = {entry.code: entry for entry in _TYPES}
