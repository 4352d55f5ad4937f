"""Prevention reminders on the launched platform: an agent runs the day's computation for Karim BENALI
(47: the 45-50 check-up), Karim finds the reminder in his space, and the e-mail notify sent him with
its own service token (no caller behind a run) reaches the mailbox without saying which programme."""

from __future__ import annotations

import time

import httpx

from carnet_identity.demo import KARIM, KARIM_ID
from tests.conftest import Platform
from tests.people import client_token, login


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_an_agent_runs_the_reminders_and_karim_is_told_once(platform: Platform) -> None:
    with httpx.Client(base_url=platform.base_url, timeout=30) as http:
        agent = _auth(client_token(http, "agent-desk-demo", "agent-desk-demo-secret"))
        run = {"as_of_date": {"year": 2026, "month": 11, "day": 23}, "recipient_id": str(KARIM_ID)}
        dry = http.post("/api/v1/prevention-reminders/run", json={**run, "dry_run": True}, headers=agent)
        assert dry.status_code == 200, dry.text
        assert (dry.json().get("due_count"), dry.json().get("sent_count", "0")) == ("1", "0")
        started = time.time()
        done = http.post("/api/v1/prevention-reminders/run", json=run, headers=agent)
        assert done.status_code == 200, done.text
        assert (done.json()["due_count"], done.json()["sent_count"]) == ("1", "1")
        again = http.post("/api/v1/prevention-reminders/run", json=run, headers=agent).json()
        assert again.get("sent_count", "0") == "0"  # once per period

        karim = _auth(login(http, KARIM.email)["access_token"])
        reminders = http.get("/api/v1/prevention-reminders", headers=karim)
        assert reminders.status_code == 200, reminders.text
        [reminder] = reminders.json()["reminders"]
        assert (reminder["program"], reminder["period"]) == ("PREVENTION_PROGRAM_CHECKUP_45_50", "45-50")

        # A holder may not run it, nor read someone else's.
        refused = http.post("/api/v1/prevention-reminders/run", json=run, headers=karim)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")

        deadline = time.monotonic() + 20
        mails: list[dict[str, str]] = []
        while time.monotonic() < deadline and not mails:
            messages = http.get("/dev/mailbox", headers={"accept": "application/json"}).json()["messages"]
            mails = [m for m in messages if KARIM.email in m["to"] and "prévention" in m["subject"]]
            time.sleep(0.2)
        assert len(mails) == 1, f"no prevention e-mail reached Karim since {started}"
        assert "bilan" not in mails[0]["subject"].lower() and "45" not in mails[0]["text"]
