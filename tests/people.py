"""Getting tokens the way people and software do: client credentials, password + one-time code."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx

CAMILLE_EMAIL = "camille.martin@demo.carnet.test"
DEMO_PASSWORD = "Carnet-demo-2026"

def client_token(client: httpx.Client, client_id: str, secret: str) -> str:
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"].lower() == "bearer"
    assert body["expires_in"] > 0
    assert "refresh_token" not in body
    return str(body["access_token"])


def otp_from_mailbox(client: httpx.Client, recipient: str, after: float) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        messages = client.get("/dev/mailbox", headers={"accept": "application/json"}).json()["messages"]
        for message in messages:
            if recipient in message["to"]:
                match = re.search(r"\b(\d{6})\b", message["text"])
                if match and message["id"] not in _seen:
                    _seen.add(message["id"])
                    return match.group(1)
        time.sleep(0.2)
    raise AssertionError(f"no one-time code reached {recipient}")


_seen: set[str] = set()


def login(client: httpx.Client, login: str, password: str = DEMO_PASSWORD) -> dict[str, Any]:
    started = time.time()
    response = client.post("/api/v1/auth/login", json={"login": login, "password": password})
    assert response.status_code == 200, response.text
    challenge = response.json()["challenge_id"]
    code = otp_from_mailbox(client, login if "@" in login else CAMILLE_EMAIL, started)
    response = client.post("/api/v1/auth/otp", json={"challenge_id": challenge, "code": code})
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    assert tokens["refresh_token"]
    return tokens


