"""A holder's agenda, space summary and export through the gateway, as a front-end would call them."""

from __future__ import annotations

import io
import json
import zipfile

import httpx

from tests.conftest import Platform
from tests.people import CAMILLE_EMAIL, login


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_agenda_space_and_export_through_the_gateway(platform: Platform) -> None:
    with httpx.Client(base_url=platform.base_url, timeout=30) as http:
        camille = _auth(login(http, CAMILLE_EMAIL)["access_token"])
        paul = _auth(login(http, "paul.dubois@demo.carnet.test")["access_token"])

        created = http.post(
            "/api/v1/agenda",
            json={
                "agenda_event": {
                    "kind": "AGENDA_EVENT_KIND_APPOINTMENT",
                    "title": "Ophtalmologue",
                    "start_time": "2031-06-12T07:30:00Z",
                    "end_time": "2031-06-12T08:00:00Z",
                    "reminders": [{"offset": "86400s", "channels": ["DELIVERY_CHANNEL_EMAIL"]}],
                }
            },
            headers=camille,
        )
        assert created.status_code == 201, created.text
        event = created.json()
        assert event["source"] == "ENTRY_SOURCE_HOLDER" and event["reminders"][0]["offset"] == "86400s"
        listed = http.get(
            "/api/v1/agenda", params={"start_time": "2031-06-01", "end_time": "2031-07-01"}, headers=camille
        )
        assert [e["agenda_event_id"] for e in listed.json()["agenda_events"]] == [event["agenda_event_id"]]
        renamed = http.patch(
            f"/api/v1/agenda/{event['agenda_event_id']}",
            json={"agenda_event": {"title": "Ophtalmologue (fond d'œil)"}, "update_mask": "title"},
            headers=camille,
        )
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["title"] == "Ophtalmologue (fond d'œil)"
        bad = http.post(
            "/api/v1/agenda", json={"agenda_event": {"kind": "AGENDA_EVENT_KIND_OTHER", "title": "x"}}, headers=camille
        )
        assert (bad.status_code, bad.json()["field"]) == (400, "agenda_event.start_time")
        assert http.delete(f"/api/v1/agenda/{event['agenda_event_id']}", headers=camille).status_code == 204

        for kind, value, unit in (("MEASUREMENT_TYPE_WEIGHT", 61.5, "kg"), ("MEASUREMENT_TYPE_HEIGHT", 168, "cm")):
            added = http.post(
                "/api/v1/profile",
                json={
                    "entry": {
                        "kind": "PROFILE_ENTRY_KIND_MEASUREMENT",
                        "measurement": {"type": kind, "value": value, "unit": unit},
                    }
                },
                headers=camille,
            )
            assert added.status_code == 201, added.text
        implausible = http.post(
            "/api/v1/profile",
            json={
                "entry": {
                    "kind": "PROFILE_ENTRY_KIND_MEASUREMENT",
                    "measurement": {"type": "MEASUREMENT_TYPE_WEIGHT", "value": 900, "unit": "kg"},
                }
            },
            headers=camille,
        )
        assert (implausible.status_code, implausible.json()["reason"]) == (400, "MEASUREMENT_OUT_OF_RANGE")
        assert implausible.json()["field"] == "entry.measurement.value"
        measures = http.get(
            "/api/v1/profile",
            params={"kinds": "PROFILE_ENTRY_KIND_MEASUREMENT", "measurement_type": "MEASUREMENT_TYPE_BMI"},
            headers=camille,
        )
        assert measures.status_code == 200, measures.text
        [bmi] = measures.json()["entries"]
        assert bmi["source"] == "ENTRY_SOURCE_DERIVED" and bmi["measurement"]["value"] == 21.8

        space = http.get("/api/v1/space", headers=camille)
        assert space.status_code == 200, space.text
        assert space.json()["state"] == "SPACE_STATE_OPEN"
        count = int(space.json().get("document_count", 0))

        export = http.get("/api/v1/space/export", headers=camille)
        assert export.status_code == 200, export.text
        assert export.headers["content-type"] == "application/zip"
        assert export.headers["content-disposition"].startswith('attachment; filename="carnet-export-')
        with zipfile.ZipFile(io.BytesIO(export.content)) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            documents = json.loads(archive.read("documents.json"))
            assert manifest["document_count"] == len(documents) == int(export.headers["x-carnet-document-count"])
            assert 0 < len(documents) <= count
            for document in documents:
                assert len(archive.read(document["file"])) == int(document["size_bytes"])

        refused = http.get("/api/v1/space/export", params={"holder_id": space.json()["holder_id"]}, headers=paul)
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["reason"] == "EXPORT_HOLDER_ONLY"
