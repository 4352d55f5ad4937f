"""A holder's choices through the gateway, and their effect on what professionals get.

Camille blocks a nurse (who then cannot list her record), cannot block her treating
physician, unblocks; she nominates Karim as a read-only helper; her treating physician
asks for break-glass access and gets it with the log and notify obligations.
"""

from __future__ import annotations

import httpx

from tests.conftest import Platform
from tests.people import CAMILLE_EMAIL, login

CAMILLE_ID = "CAMILLE"


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_blocks_helpers_and_break_glass_through_the_gateway(platform: Platform) -> None:
    with httpx.Client(base_url=platform.base_url, timeout=30) as http:
        camille = _auth(login(http, CAMILLE_EMAIL)["access_token"])
        camille_id = http.get("/api/v1/me", headers=camille).json()["person"]["person_id"]
        nurse = _auth(login(http, "sophie.leroy@demo.carnet.test")["access_token"])
        doctor = _auth(login(http, "paul.dubois@demo.carnet.test")["access_token"])

        blocked = http.post("/api/v1/blocks", json={"rpps": "10000000025"}, headers=camille)
        assert blocked.status_code == 201, blocked.text
        block_id = blocked.json()["block_id"]
        listing = http.get("/api/v1/documents", params={"holder_id": camille_id}, headers=nurse)
        assert listing.status_code == 403
        assert listing.json()["reason"].startswith("ACCESS_DENIED")
        assert [b["block_id"] for b in http.get("/api/v1/blocks", headers=camille).json()["blocks"]] == [block_id]

        treating = http.post("/api/v1/blocks", json={"rpps": "10000000017"}, headers=camille)
        assert treating.status_code == 409, treating.text
        assert treating.headers["content-type"].startswith("application/problem+json")

        assert http.delete(f"/api/v1/blocks/{block_id}", headers=camille).status_code == 204
        assert http.get("/api/v1/blocks", headers=camille).json().get("blocks", []) == []

        karim = http.get("/api/v1/person-lookup", params={"email": "karim.benali@demo.carnet.test"}, headers=doctor)
        karim_id = karim.json()["person_id"] if karim.status_code == 200 else ""
        if karim_id:
            helper = http.post(
                "/api/v1/helpers", json={"helper_person_id": karim_id, "access": "HELPER_ACCESS_READ_ONLY"}, headers=camille
            )
            assert helper.status_code == 201, helper.text
            assert helper.json()["holder_id"] == camille_id
            helpers = http.get("/api/v1/helpers", headers=camille).json()["helpers"]
            assert [h["helper_person_id"] for h in helpers] == [karim_id]

        physician = http.get(f"/api/v1/persons/{camille_id}/treating-physician", headers=camille)
        assert physician.status_code == 200, physician.text
        emergency = http.post(
            f"/api/v1/persons/{camille_id}/break-glass",
            json={"reason": "Patiente inconsciente aux urgences, antécédents nécessaires"},
            headers=doctor,
        )
        assert emergency.status_code == 200, emergency.text
        obligations = set(emergency.json()["obligations"])
        assert {"OBLIGATION_LOG_ACCESS", "OBLIGATION_NOTIFY_HOLDER", "OBLIGATION_NOTIFY_TREATING_PHYSICIAN"} <= obligations
        no_reason = http.post(f"/api/v1/persons/{camille_id}/break-glass", json={"reason": "court"}, headers=doctor)
        assert no_reason.status_code == 400
