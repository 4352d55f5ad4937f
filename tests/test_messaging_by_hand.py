"""Secure messaging and notification preferences through the gateway: a doctor writes to Camille with
an attachment, Camille reads, replies, saves the attachment into her record; she cannot start a thread."""

from __future__ import annotations

import json

import httpx

from carnet_dossier.seed import make_pdf
from tests.conftest import Platform
from tests.people import CAMILLE_EMAIL, login


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_a_conversation_with_an_attachment_saved_into_the_record(platform: Platform) -> None:
    with httpx.Client(base_url=platform.base_url, timeout=30) as http:
        camille = _auth(login(http, CAMILLE_EMAIL)["access_token"])
        camille_id = http.get("/api/v1/me", headers=camille).json()["person"]["person_id"]
        paul = _auth(login(http, "paul.dubois@demo.carnet.test")["access_token"])
        report = make_pdf("Résultats commentés", ["Cholestérol LDL 1,2 g/L : normal"])

        uploaded = http.post(
            "/api/v1/attachments",
            data={"metadata": json.dumps({"file_name": "resultats.pdf", "mime_type": "application/pdf"})},
            files={"file": ("resultats.pdf", report, "application/pdf")},
            headers=paul,
        )
        assert uploaded.status_code == 201, uploaded.text
        attachment_id = uploaded.json()["attachment_id"]
        started = http.post(
            "/api/v1/threads",
            json={
                "thread": {"holder_id": camille_id, "subject": "Vos résultats"},
                "first_message": {
                    "body": "Bonjour, vos résultats sont normaux.",
                    "attachments": [{"attachment_id": attachment_id}],
                },
            },
            headers=paul,
        )
        assert started.status_code == 201, started.text
        thread_id = started.json()["thread_id"]

        mine = http.get("/api/v1/threads", headers=camille).json()["threads"]
        assert [t["thread_id"] for t in mine if t["thread_id"] == thread_id] == [thread_id]
        messages = http.get(f"/api/v1/threads/{thread_id}/messages", headers=camille).json()["messages"]
        assert messages[0]["body"] == "Bonjour, vos résultats sont normaux."
        content = http.get(f"/api/v1/attachments/{attachment_id}/content", headers=camille)
        assert content.status_code == 200 and content.content == report
        reply = http.post(
            f"/api/v1/threads/{thread_id}/messages", json={"message": {"body": "Merci docteur."}}, headers=camille
        )
        assert reply.status_code == 201, reply.text
        assert http.post(f"/api/v1/threads/{thread_id}/read", headers=camille).status_code == 200

        saved = http.post(
            f"/api/v1/attachments/{attachment_id}/save-to-record",
            json={"title": "Résultats commentés", "type_code": "11502-2"},
            headers=camille,
        )
        assert saved.status_code == 201, saved.text
        document_id = saved.json()["document_id"]
        document = http.get(f"/api/v1/documents/{document_id}", headers=camille).json()
        assert document["holder_own"] is True
        assert http.get(f"/api/v1/documents/{document_id}/content", headers=camille).content == report

        refused = http.post(
            "/api/v1/threads",
            json={"thread": {"holder_id": camille_id, "subject": "x"}, "first_message": {"body": "y"}},
            headers=camille,
        )
        assert refused.status_code == 403 and refused.json()["reason"] == "THREAD_START_FORBIDDEN"

        inbox = http.get("/api/v1/inbox", headers=camille).json()
        assert any(item.get("kind") == "NOTIFICATION_KIND_NEW_MESSAGE" for item in inbox["items"])

        preferences = http.get("/api/v1/preferences", headers=camille)
        assert preferences.status_code == 200, preferences.text
        changed = http.patch(
            "/api/v1/preferences",
            json={
                "preferences": {
                    "channels": [
                        {
                            "channel": "DELIVERY_CHANNEL_EMAIL",
                            "enabled": True,
                            "disabled_kinds": ["NOTIFICATION_KIND_NEW_DOCUMENT"],
                        }
                    ]
                },
                "update_mask": "channels",
            },
            headers=camille,
        )
        assert changed.status_code == 200, changed.text
        security = http.patch(
            "/api/v1/preferences",
            json={
                "preferences": {
                    "channels": [
                        {
                            "channel": "DELIVERY_CHANNEL_EMAIL",
                            "enabled": True,
                            "disabled_kinds": ["NOTIFICATION_KIND_ONE_TIME_CODE"],
                        }
                    ]
                },
                "update_mask": "channels",
            },
            headers=camille,
        )
        assert (security.status_code, security.json()["reason"]) == (409, "SECURITY_KIND_NOT_OPTIONAL")
