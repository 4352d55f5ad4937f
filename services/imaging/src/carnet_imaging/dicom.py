"""The DICOM network face of imaging (pynetdicom): verification (C-ECHO) for now.

pynetdicom runs its association server in threads of its own; the service starts it
next to the gRPC server and stops it on shutdown.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from carnet_kit.config import HostPort

log = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000


def _on_echo(event: Any) -> int:
    log.info("C-ECHO from %s", event.assoc.requestor.ae_title)
    return STATUS_SUCCESS


def _on_connection(event: Any) -> None:
    # Nagle's algorithm delays the small PDUs of a DICOM exchange by tens of ms.
    with _suppress_os_error():
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _suppress_os_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], (OSError, AttributeError))  # type: ignore[arg-type]


class DicomServer:
    """The DICOM SCP listening for PACS."""

    def __init__(self, listen: HostPort, ae_title: str) -> None:
        self._listen = listen
        self._ae = AE(ae_title=ae_title)
        self._ae.maximum_pdu_size = 0  # unlimited
        self._ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        self._server: Any = None

    def start(self) -> int:
        """Start listening in background threads; return the bound port."""
        self._server = self._ae.start_server(
            (self._listen.host, self._listen.port),
            block=False,
            evt_handlers=[(evt.EVT_C_ECHO, _on_echo), (evt.EVT_CONN_OPEN, _on_connection)],
        )
        port = int(self._server.server_address[1])
        log.info("DICOM SCP %s listening on %s:%d", self._ae.ae_title, self._listen.host, port)
        return port

    def stop(self) -> None:
        """Stop accepting associations and close the listening socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
