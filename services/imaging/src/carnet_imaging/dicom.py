"""The DICOM network face of imaging (pynetdicom): association control and verification.

pynetdicom runs its association server in threads of its own; the service starts it next
to the gRPC server and stops it on shutdown. Handlers that need the service's asyncio
world (database, object store, identity) hand their work to the service's event loop and
wait for it (:meth:`DicomServer.run_in_loop`).

Association control
-------------------
Only calling AE titles of the AE registry are accepted (A-ASSOCIATE-RJ, permanent,
"calling AE title not recognised" otherwise); an empty registry accepts nobody. The
called AE title must be ours (``CARNET_DICOM_AE_TITLE``). Every socket gets TCP_NODELAY,
and the maximum PDU size is unlimited.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Coroutine
from typing import Any, TypeVar

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from carnet_imaging.ingest import Ingest
from carnet_imaging.registry import CallingAeTitles
from carnet_kit.config import HostPort
from carnet_kit.errors import InvalidArgument

log = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_NOT_AUTHORISED = 0x0124
STATUS_OUT_OF_RESOURCES = 0xA700
"""Something on our side failed (database, object store, identity): the PACS may send again."""
STATUS_CANNOT_UNDERSTAND = 0xC000
"""The dataset is malformed or truncated: nothing was stored."""
STORE_TIMEOUT_SECONDS = 60.0
_NOBODY = "\x00no registered AE"
"""Stands for an empty registry: a title no AE can have, so that pynetdicom rejects every caller."""

T = TypeVar("T")


class RegistryAE(AE):
    """An AE whose accepted calling AE titles are the registry's, read at each association request."""

    def __init__(self, ae_title: str, known: CallingAeTitles) -> None:
        super().__init__(ae_title=ae_title)
        self._known = known

    @property
    def require_calling_aet(self) -> list[str]:
        """The registered titles (never empty: an empty list would mean "anyone" to pynetdicom)."""
        return self._known.titles() or [_NOBODY]

    @require_calling_aet.setter
    def require_calling_aet(self, ae_titles: list[str]) -> None:
        raise AttributeError("the calling AE titles are the AE registry's")


def _status(code: int, comment: str) -> Dataset:
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]
    return status


def _on_echo(event: Any) -> int:
    log.info("C-ECHO from %s", event.assoc.requestor.ae_title)
    return STATUS_SUCCESS


def _on_connection(event: Any) -> None:
    # Nagle's algorithm delays the small PDUs of a DICOM exchange by tens of ms.
    try:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


def _on_rejected(event: Any) -> None:
    log.warning("association from %s (%s) rejected", event.assoc.requestor.ae_title, event.assoc.requestor.address)


class DicomServer:
    """The DICOM SCP listening for PACS and viewers' DICOM tools."""

    def __init__(
        self,
        listen: HostPort,
        ae_title: str,
        known: CallingAeTitles,
        *,
        max_associations: int,
        acse_timeout: float,
        dimse_timeout: float,
        network_timeout: float,
    ) -> None:
        self._listen = listen
        self._known = known
        self._ae = RegistryAE(ae_title, known)
        self._ae.require_called_aet = True
        self._ae.maximum_pdu_size = 0  # unlimited
        self._ae.maximum_associations = max_associations
        self._ae.acse_timeout = acse_timeout
        self._ae.dimse_timeout = dimse_timeout
        self._ae.network_timeout = network_timeout
        self._ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        self._handlers: list[Any] = [
            (evt.EVT_C_ECHO, _on_echo),
            (evt.EVT_CONN_OPEN, _on_connection),
            (evt.EVT_REJECTED, _on_rejected),
        ]
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def ae(self) -> AE:
        """The pynetdicom AE (to add presentation contexts before :meth:`start`)."""
        return self._ae

    def accept_storage(self, ingest: Ingest) -> None:
        """Serve C-STORE for every storage SOP class in every transfer syntax, storing through ``ingest``."""
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                self._ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)

        def on_store(event: Any) -> Any:
            calling = event.assoc.requestor.ae_title
            source = self._known.get(calling)
            if source is None:  # removed from the registry while the association was open
                return STATUS_NOT_AUTHORISED
            try:
                self.run_in_loop(ingest.store(event.encoded_dataset(), source=source), STORE_TIMEOUT_SECONDS)
            except InvalidArgument as error:
                log.warning("C-STORE from %s refused: %s", calling, error.message)
                return _status(STATUS_CANNOT_UNDERSTAND, error.message)
            except Exception:
                log.exception("C-STORE from %s failed", calling)
                return _status(STATUS_OUT_OF_RESOURCES, "the instance could not be stored; send it again")
            return STATUS_SUCCESS

        self._handlers.append((evt.EVT_C_STORE, on_store))

    def handle(self, event: Any, handler: Any) -> None:
        """Bind ``handler`` to ``event`` (before :meth:`start`)."""
        self._handlers.append((event, handler))

    def run_in_loop(self, work: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``work`` on the service's event loop from a pynetdicom thread and wait for its result."""
        assert self._loop is not None, "the server is not started"
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout)

    def start(self, loop: asyncio.AbstractEventLoop) -> int:
        """Start listening in background threads; return the bound port."""
        self._loop = loop
        self._server = self._ae.start_server(
            (self._listen.host, self._listen.port), block=False, evt_handlers=self._handlers
        )
        port = int(self._server.server_address[1])
        log.info("DICOM SCP %s listening on %s:%d", self._ae.ae_title, self._listen.host, port)
        return port

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return int(self._server.server_address[1])

    def stop(self) -> None:
        """Stop accepting associations and close the listening socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
