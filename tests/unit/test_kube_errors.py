"""API errors by behaviour, whatever body the failure came with (a Status, plain text, HTML)."""

from __future__ import annotations

from typing import Any

import pytest

from wasmlet.kube.errors import (
    MAX_TEXT_MESSAGE,
    AlreadyExists,
    ApiError,
    ApiUnavailable,
    Conflict,
    Invalid,
    NotFound,
    error_from_status,
)  # fmt: skip


def test_a_status_body_gives_reason_message_and_body() -> None:
    status = {"kind": "Status", "reason": "NotFound", "message": 'pods "p" not found', "code": 404}
    error = error_from_status(404, status)
    assert isinstance(error, NotFound) and (error.reason, error.message, error.body) == ("NotFound", 'pods "p" not found', status)


def test_a_plain_text_404_is_not_found_with_the_text_as_message() -> None:
    # kube-apiserver's answer for a path no API group serves, e.g. the resources of a CRD not installed.
    error = error_from_status(404, "404 page not found\n")
    assert isinstance(error, NotFound)
    assert (error.reason, error.message, error.body) == ("NotFound", "404 page not found", {})


@pytest.mark.parametrize(("status", "body", "cls", "message"), [
    (502, b"<html>\n<head><title>502 Bad Gateway</title></head>\n</html>", ApiUnavailable, "<html>"),
    (409, "", Conflict, "HTTP 409"),
    (422, None, Invalid, "HTTP 422"),
    (418, ["not", "a", "status"], ApiError, "HTTP 418"),
    (503, "\n\n  upstream connect error  \n", ApiUnavailable, "upstream connect error"),
])
def test_any_other_body_still_gives_the_class_of_its_status(status: int, body: Any, cls: type[ApiError], message: str) -> None:
    error = error_from_status(status, body)
    assert type(error) is cls and error.message == message and error.body == {}


def test_a_long_text_body_is_cut() -> None:
    assert len(error_from_status(500, "x" * 10_000).message) == MAX_TEXT_MESSAGE


def test_already_exists_is_told_from_other_conflicts_by_its_reason() -> None:
    assert isinstance(error_from_status(409, {"reason": "AlreadyExists", "message": "m"}), AlreadyExists)
    assert type(error_from_status(409, {"reason": "Conflict", "message": "m"})) is Conflict
