"""Break-glass through the gateway: a doctor outside Camille's care team opens her record in an
emergency with a written reason; the reads are allowed, and Camille's access log shows them with the reason."""

from __future__ import annotations

import httpx

from tests.conftest import Platform
from tests.people import CAMILLE_EMAIL, login

REASON = "Patiente inconsciente aux urgences, traitement en cours inconnu"


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_an_emergency_read_through_the_gateway_is_logged_with_its_reason(platform: Platform) -> None:
    with httpx.Client(base_url=platform.base_url, timeout=30) as http:
        camille = _auth(login(http, CAMILLE_EMAIL)["access_token"])
        camille_id = http.get("/api/v1/me", headers=camille).json()["person"]["person_id"]
        anne = _auth(login(http, "anne.moreau@demo.carnet.test")["access_token"])

        plain = http.get("/api/v1/documents", params={"holder_id": camille_id}, headers=anne)
        assert plain.status_code == 403, plain.text
        opened = http.get(
            "/api/v1/documents", params={"holder_id": camille_id, "break_glass_reason": REASON}, headers=anne
        )
        assert opened.status_code == 200, opened.text
        documents = opened.json()["documents"]
        assert documents, "the demo record has documents a doctor may read"
        first = documents[0]["document_id"]
        read = http.get(f"/api/v1/documents/{first}", params={"break_glass_reason": REASON}, headers=anne)
        assert read.status_code == 200, read.text
        content = http.get(f"/api/v1/documents/{first}/content", params={"break_glass_reason": REASON}, headers=anne)
        assert content.status_code == 200 and content.content.startswith(b"%PDF-")

        log = http.get(
            "/api/v1/access-log", params={"action": "ACTION_BREAK_GLASS_READ", "page_size": 50}, headers=camille
        ).json()["entries"]
        operations = sorted(entry["operation"] for entry in log if entry["actor"].get("rpps") == "10000000033")
        assert operations == ["DownloadDocument", "GetDocument", "ListDocuments"]
        assert {entry["break_glass_reason"] for entry in log} == {REASON}
