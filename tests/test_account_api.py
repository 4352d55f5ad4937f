"""Account endpoints of the gateway against the running platform: me, refresh, logout."""

from __future__ import annotations

import httpx

from tests.conftest import Platform
from tests.people import CAMILLE_EMAIL, login


def test_me_tells_a_holder_who_they_are(platform: Platform) -> None:
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        tokens = login(client, CAMILLE_EMAIL)
        me = client.get("/api/v1/me", headers={"authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["actor"]["role"] == "ROLE_HOLDER"
    assert body["person"]["ins"].startswith("284057512000531")
    assert body["person"]["email"] == CAMILLE_EMAIL


def test_refresh_rotates_and_logout_revokes_both_tokens(platform: Platform) -> None:
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        tokens = login(client, CAMILLE_EMAIL)
        refreshed = client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        fresh = refreshed.json()
        assert fresh["refresh_token"] != tokens["refresh_token"]
        auth = {"authorization": f"Bearer {fresh['access_token']}"}
        assert client.get("/api/v1/me", headers=auth).status_code == 200
        out = client.post("/api/v1/auth/logout", json={"refresh_token": fresh["refresh_token"]}, headers=auth)
        assert out.status_code == 204, out.text
        after = client.get("/api/v1/me", headers=auth)
        assert after.status_code == 401
        assert after.json()["reason"] == "TOKEN_REVOKED"
        again = client.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": fresh["refresh_token"]})
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"


def test_the_access_matrix_is_served_to_professionals(platform: Platform) -> None:
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        tokens = login(client, "sophie.leroy@demo.carnet.test")
        matrix = client.get("/api/v1/access-matrix", headers={"authorization": f"Bearer {tokens['access_token']}"})
    assert matrix.status_code == 200, matrix.text
    body = matrix.json()
    assert body["version"]
    assert body["rules"]
