"""The foundation's vertical slice, end to end over HTTP, and its trace across services.

A laboratory's software gets a token (client credentials) and deposits a PDF for
Camille; dossier asks consent, stores the blob and writes its event in the outbox;
notify consumes the event into Camille's inbox; Camille logs in with a one-time code
read from the local mailbox, lists, and downloads the very same bytes.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from carnet_dossier.seed import make_pdf
from tests.conftest import Platform
from tests.people import client_token as _client_token
from tests.people import login as _login

CAMILLE_INS = "284057512000531"
CAMILLE_EMAIL = "camille.martin@demo.carnet.test"
DEMO_PASSWORD = "Carnet-demo-2026"


def _deposit(client: httpx.Client, token: str, unique_id: str, content: bytes, title: str) -> httpx.Response:
    metadata = {
        "unique_id": unique_id,
        "holder_ins": CAMILLE_INS,
        "type_code": "11502-2",
        "format": "pdf",
        "title": title,
    }
    import json

    return client.post(
        "/api/v1/documents",
        headers={"authorization": f"Bearer {token}"},
        data={"metadata": json.dumps(metadata)},
        files={"file": ("report.pdf", content, "application/pdf")},
    )


def test_vertical_slice_from_deposit_to_holder_download(platform: Platform) -> None:
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        lab_token = _client_token(client, "lab-demo", "lab-demo-secret")
        content = make_pdf("Bilan lipidique", ["Cholestérol total : 1,85 g/L", f"Réf. {uuid.uuid4()}"])
        unique_id = f"lab-{uuid.uuid4()}"
        deposited = _deposit(client, lab_token, unique_id, content, "Bilan lipidique")
        assert deposited.status_code == 201, deposited.text
        document = deposited.json()
        assert document["size_bytes"] == str(len(content)) or int(document["size_bytes"]) == len(content)
        assert document["metadata"]["title"] == "Bilan lipidique"

        again = _deposit(client, lab_token, unique_id, content, "Bilan lipidique")
        assert again.json()["document_id"] == document["document_id"]
        other = _deposit(client, lab_token, unique_id, content + b"\n% changed", "Bilan lipidique")
        assert other.status_code == 409
        assert other.headers["content-type"].startswith("application/problem+json")
        assert other.json()["reason"] == "UNIQUE_ID_TAKEN"

        tokens = _login(client, CAMILLE_EMAIL)
        holder = {"authorization": f"Bearer {tokens['access_token']}"}
        listed = client.get("/api/v1/documents", headers=holder)
        assert listed.status_code == 200, listed.text
        ids = [d["document_id"] for d in listed.json()["documents"]]
        assert document["document_id"] in ids

        downloaded = client.get(f"/api/v1/documents/{document['document_id']}/content", headers=holder)
        assert downloaded.status_code == 200
        assert downloaded.content == content
        assert downloaded.headers["content-type"] == "application/pdf"

        deadline = time.monotonic() + 20
        titles: list[str] = []
        while time.monotonic() < deadline:
            inbox = client.get("/api/v1/inbox", headers=holder).json()
            titles = [" ".join([item.get("title", ""), item.get("body", "")]) for item in inbox["items"]]
            if any("Bilan lipidique" in t for t in titles):
                break
            time.sleep(0.2)
        assert any("Bilan lipidique" in t for t in titles), titles
        assert inbox["unread_count"] >= 1


def test_the_deposit_trace_spans_gateway_dossier_and_consent_and_notify_links_back(platform: Platform) -> None:
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        token = _client_token(client, "lab-demo", "lab-demo-secret")
        title = f"Traçage {uuid.uuid4().hex[:8]}"
        response = _deposit(client, token, f"trace-{uuid.uuid4()}", make_pdf(title, ["x"]), title)
        assert response.status_code == 201, response.text
        trace_id = response.headers["traceparent"].split("-")[1]
    deadline = time.monotonic() + 20
    while True:
        spans = platform.otlp.snapshot()
        in_trace = [s for s in spans if s.trace_id == trace_id]
        services = {s.service for s in in_trace}
        consumers = [
            s for s in spans if s.service == "carnet-notify" and s.name.startswith("consume ") and any(
                link[0] == trace_id for link in s.links
            )
        ]
        if {"carnet-gateway", "carnet-dossier", "carnet-consent"} <= services and consumers:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"trace {trace_id}: services {services}, consumer spans linking back: {consumers}")
        time.sleep(0.2)
    dossier_server = [s for s in in_trace if s.service == "carnet-dossier" and "DepositDocument" in s.name]
    consent_server = [s for s in in_trace if s.service == "carnet-consent" and "Decide" in s.name]
    assert dossier_server and consent_server
    # The consumer's span is a new trace of its own, linked to the producer's span.
    assert all(c.trace_id != trace_id for c in consumers)


def test_problem_json_for_bad_requests(platform: Platform) -> None:
    with httpx.Client(base_url=platform.base_url, timeout=30) as client:
        no_token = client.get("/api/v1/documents")
        assert no_token.status_code == 401
        assert no_token.headers["content-type"].startswith("application/problem+json")
        token = _client_token(client, "lab-demo", "lab-demo-secret")
        bad_type = client.post(
            "/api/v1/documents",
            headers={"authorization": f"Bearer {token}"},
            data={"metadata": '{"unique_id": "x-1", "holder_ins": "284057512000531", "type_code": "nope",'
                  ' "format": "pdf", "title": "t"}'},
            files={"file": ("a.pdf", b"%PDF-1.4 x", "application/pdf")},
        )
        assert bad_type.status_code == 400
        assert bad_type.json()["field"] == "metadata.type_code"
        not_pdf = _deposit(client, token, f"x-{uuid.uuid4()}", b"GIF89a not a pdf", "t")
        assert not_pdf.status_code == 400
        assert not_pdf.json()["reason"] == "CONTENT_FORMAT_MISMATCH"
        # The same unique id with other bytes is a conflict; the same bytes again return the first document.
        unique_id = f"x-{uuid.uuid4()}"
        first = _deposit(client, token, unique_id, make_pdf("Premier", ["a"]), "t")
        assert first.status_code == 201, first.text
        again = _deposit(client, token, unique_id, make_pdf("Premier", ["a"]), "t")
        assert again.status_code in (200, 201) and again.json()["document_id"] == first.json()["document_id"]
        taken = _deposit(client, token, unique_id, make_pdf("Autre", ["b"]), "t")
        assert taken.status_code == 409, taken.text
        assert taken.headers["content-type"].startswith("application/problem+json")
        assert taken.json()["reason"] == "UNIQUE_ID_TAKEN"
        # Over the size limit (20 MB): cut off with a clear problem, nothing kept; beyond what the gateway reads
        # whole (32 MiB) as well.
        for size in (21 * 1024 * 1024, 33 * 1024 * 1024):
            big_id = f"x-{uuid.uuid4()}"
            big = _deposit(client, token, big_id, b"%PDF-1.4\n" + b"0" * size, "t")
            assert big.status_code == 413, big.text[:300]
            assert big.json()["reason"] == "DOCUMENT_TOO_LARGE"
            # Nothing was kept under that unique id: other bytes with it are a new document, not a conflict.
            assert _deposit(client, token, big_id, make_pdf("Petit", ["c"]), "t").status_code == 201
        wrong_secret = client.post(
            "/oauth/token", data={"grant_type": "client_credentials", "client_id": "lab-demo", "client_secret": "nope"}
        )
        assert wrong_secret.status_code == 401
        assert wrong_secret.json()["error"] == "invalid_client"
