"""Blob storage I/O: which blob names count, and storage errors named without secrets."""

from __future__ import annotations

import pytest

from include.painting_simulator.blob_storage import explain_storage_error, is_csv


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.csv", True), ("dir/B.CSV", True), ("a.csv.bak", False), ("notes.txt", False)],
)
def test_only_csv_blobs_count(name: str, expected: bool) -> None:
    assert is_csv(name) is expected


def test_storage_errors_name_the_blob_and_container_and_mask_signatures() -> None:
    from azure.core.exceptions import ServiceRequestError

    exc = ServiceRequestError("Max retries exceeded with url: /c/a.csv?sv=1&sig=SeCrEt%3D&se=2")
    message = str(explain_storage_error(exc, "c", "painting_blob_storage", blob="p/a.csv"))
    assert message.startswith(
        "storage unreachable (connection 'painting_blob_storage') while reading blob 'p/a.csv' "
        "in container 'c': ServiceRequestError"
    )
    assert "SeCrEt" not in message
    assert "sig=***" in message
