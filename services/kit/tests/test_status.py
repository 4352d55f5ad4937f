"""Domain errors travel as google.rpc.Status with one ErrorInfo and come back the same."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2

from carnet_kit.errors import Conflict, InvalidArgument, NotFound, error_class_for
from carnet_kit.status import RemoteError, to_status_proto


def test_status_carries_code_message_and_error_info() -> None:
    status = to_status_proto(InvalidArgument("bad INS", field="ins", reason="INS_KEY_MISMATCH", domain="identity.carnet"))
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert status.message == "bad INS"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == ("INS_KEY_MISMATCH", "identity.carnet", {"field": "ins"})


def test_remote_error_becomes_the_same_kind_of_error() -> None:
    error = RemoteError(grpc.StatusCode.NOT_FOUND, "gone", "DOCUMENT_NOT_FOUND", "dossier.carnet", {"id": "1"}).to_error()
    assert isinstance(error, NotFound)
    assert (error.reason, error.domain, error.metadata) == ("DOCUMENT_NOT_FOUND", "dossier.carnet", {"id": "1"})


def test_error_classes_match_their_codes() -> None:
    assert error_class_for(grpc.StatusCode.ALREADY_EXISTS) is Conflict
    assert Conflict("x").http_status == 409
    assert InvalidArgument("x").http_status == 400
