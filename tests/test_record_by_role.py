"""The record through the gateway, role by role: client, holder, author, treating physician, nurse,
blocked professional, representative — each outcome as the rules say, and every step in the access log."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from carnet_dossier.seed import make_pdf
from tests.conftest import Platform
from tests.people import CAMILLE_EMAIL, client_token, login

CAMILLE_INS = "284057512000531"
LEA_INS = "215117505678985"
LAB_REPORT = "11502-2"


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _deposit(
    http: httpx.Client, headers: dict[str, str], holder_ins: str, title: str, **metadata: Any
) -> httpx.Response:
    fields = {
        "unique_id": f"by-role-{uuid.uuid4().hex}",
        "holder_ins": holder_ins,
        "type_code": LAB_REPORT,
        "format": "pdf",
        "title": title,
        "author": {"organisation_id": "690004569", "display_name": "Laboratoire Demo"},
        **metadata,
    }
    return http.post(
        "/api/v1/documents",
        data={"metadata": json.dumps(fields)},
        files={"file": ("bilan.pdf", make_pdf(title, [uuid.uuid4().hex]), "application/pdf")},
        headers=headers,
    )


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [document["document_id"] for document in response.json()["documents"]]


def test_each_role_gets_what_the_rules_say(platform: Platform) -> None:
    with httpx.Client(base_url=platform.base_url, timeout=30) as http:
        lab = _auth(client_token(http, "lab-demo", "lab-demo-secret"))
        camille_tokens = login(http, CAMILLE_EMAIL)
        camille = _auth(camille_tokens["access_token"])
        camille_id = http.get("/api/v1/me", headers=camille).json()["person"]["person_id"]
        paul = _auth(login(http, "paul.dubois@demo.carnet.test")["access_token"])
        sophie = _auth(login(http, "sophie.leroy@demo.carnet.test")["access_token"])
        marc = _auth(login(http, "marc.girard@demo.carnet.test")["access_token"])

        # The laboratory's software deposits two reports; Camille hides the second from professionals.
        report = _deposit(http, lab, CAMILLE_INS, "Bilan lipidique")
        assert report.status_code == 201, report.text
        report_id = report.json()["document_id"]
        private = _deposit(http, lab, CAMILLE_INS, "Sérologie")
        private_id = private.json()["document_id"]
        hidden = http.patch(
            f"/api/v1/documents/{private_id}", json={"hidden_from_professionals": True}, headers=camille
        )
        assert hidden.status_code == 200, hidden.text
        assert hidden.json()["metadata"]["hidden_from_professionals"] is True
        retitle = http.patch(f"/api/v1/documents/{private_id}", json={"title": "Autre"}, headers=camille)
        assert (retitle.status_code, retitle.json()["reason"]) == (403, "FIELD_NOT_YOURS")
        frozen = http.patch(f"/api/v1/documents/{private_id}", json={"format": "text"}, headers=lab)
        assert (frozen.status_code, frozen.json()["reason"]) == (400, "FIELD_NOT_UPDATABLE")
        assert frozen.headers["content-type"].startswith("application/problem+json")

        # The holder reads both; the treating physician sees the hidden one too.
        assert http.get(f"/api/v1/documents/{private_id}", headers=camille).status_code == 200
        assert {report_id, private_id} <= set(
            _ids(http.get("/api/v1/documents", params={"holder_id": camille_id}, headers=paul))
        )

        # A nurse in the care team reads the lab report (matrix: nurses read LAB), not the hidden document.
        granted = http.post(
            "/api/v1/care-team",
            json={
                "authorisation": {
                    "holder_id": camille_id,
                    "rpps": "10000000025",
                    "origin": "AUTHORISATION_ORIGIN_HOLDER_GRANT",
                }
            },
            headers=camille,
        )
        assert granted.status_code == 201, granted.text
        try:
            assert http.get(f"/api/v1/documents/{report_id}", headers=sophie).status_code == 200
            refused = http.get(f"/api/v1/documents/{private_id}", headers=sophie)
            assert refused.status_code == 403, refused.text
            assert private_id not in _ids(
                http.get("/api/v1/documents", params={"holder_id": camille_id}, headers=sophie)
            )
        finally:
            http.post(f"/api/v1/care-team/{granted.json()['authorisation_id']}/revoke", headers=camille)

        # A professional the holder blocked gets nothing.
        blocked = http.post("/api/v1/blocks", json={"rpps": "10000000041"}, headers=camille)
        assert blocked.status_code == 201, blocked.text
        try:
            assert http.get(f"/api/v1/documents/{report_id}", headers=marc).status_code == 403
        finally:
            http.delete(f"/api/v1/blocks/{blocked.json()['block_id']}", headers=camille)

        # The author replaces its report: a new version; the old one is deprecated. Then deletes it.
        replaced = _deposit(http, lab, CAMILLE_INS, "Bilan lipidique (corrigé)", replaces_document_id=report_id)
        assert replaced.status_code == 201, replaced.text
        new_id = replaced.json()["document_id"]
        assert replaced.json()["version"] == 2
        old = http.get(f"/api/v1/documents/{report_id}", headers=camille).json()
        assert (old["status"], old["replaced_by_document_id"]) == ("DOCUMENT_STATUS_DEPRECATED", new_id)
        stale = _deposit(http, lab, CAMILLE_INS, "Bilan lipidique (bis)", replaces_document_id=report_id)
        assert (stale.status_code, stale.json()["reason"]) == (409, "DOCUMENT_NOT_CURRENT")
        assert (
            http.delete(f"/api/v1/documents/{new_id}", params={"reason": "erreur d'identité"}, headers=lab).status_code
            == 204
        )
        assert http.get(f"/api/v1/documents/{new_id}", headers=camille).status_code == 404

        # Camille, as Léa's legal representative, does not see what Léa keeps from her representatives.
        kept = _deposit(http, lab, LEA_INS, "Consultation confidentielle", invisible_to_representatives=True)
        shown = _deposit(http, lab, LEA_INS, "Vaccins à jour")
        assert kept.status_code == shown.status_code == 201
        lea_id = kept.json()["metadata"]["holder_id"]
        acting = http.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": camille_tokens["refresh_token"],
                "acting_for": lea_id,
            },
        )
        assert acting.status_code == 200, acting.text
        for_lea = _auth(acting.json()["access_token"])
        visible = _ids(http.get("/api/v1/documents", params={"holder_id": lea_id}, headers=for_lea))
        assert shown.json()["document_id"] in visible and kept.json()["document_id"] not in visible
        assert http.get(f"/api/v1/documents/{kept.json()['document_id']}", headers=for_lea).status_code == 403

        # Camille (back as herself) sees each step in her access log, and the chain holds.
        me_again = http.post(
            "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": acting.json()["refresh_token"]}
        )
        camille = _auth(me_again.json()["access_token"])
        log = http.get("/api/v1/access-log", params={"page_size": 100}, headers=camille)
        assert log.status_code == 200, log.text
        operations = {(entry["operation"], entry.get("outcome")) for entry in log.json()["entries"]}
        for expected in (
            ("DepositDocument", "ACCESS_OUTCOME_ALLOWED"),
            ("UpdateDocumentMetadata", "ACCESS_OUTCOME_ALLOWED"),
            ("GetDocument", "ACCESS_OUTCOME_DENIED"),
            ("DeleteDocument", "ACCESS_OUTCOME_ALLOWED"),
        ):
            assert expected in operations, expected
        denied = http.get(
            "/api/v1/access-log", params={"outcome": "ACCESS_OUTCOME_DENIED", "page_size": 100}, headers=camille
        )
        assert {entry["actor"]["rpps"] for entry in denied.json()["entries"]} >= {"10000000025", "10000000041"}
        verdict = http.get("/api/v1/access-log/verification", headers=camille).json()
        assert verdict["intact"] is True and int(verdict["entry_count"]) >= len(log.json()["entries"])
        assert http.get("/api/v1/access-log", params={"holder_id": camille_id}, headers=paul).status_code == 403
