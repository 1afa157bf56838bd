"""Schema fuzzing of the consumer API (``/v1/chat/completions``, ``/v1/images/generations``, ``/v1/models``)
with a valid consumer key, against the real platform over HTTP, with no client connected: requests for a known
model get as far
as routing (authentication, parsing, limits, the credit reservation, token counting) and are refused
503 there. A 4xx or that 503 is an answer; any other 5xx is a defect, and so is an answer that is not
the OpenAI error envelope the document (``consumer_openapi.py``) describes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import settings
from schemathesis import CheckContext, Response

from arenahub.protocol.images import ImageGenerationRequest
from arenahub.protocol.openai import ChatCompletionRequest
from tests.fuzz.consumer_openapi import CHAT_REQUEST, CONSUMER_OPENAPI, IMAGE_REQUEST
from tests.fuzz.support import CONSUMER_KEY, FUZZ, Seeded, config, platform

schema = schemathesis.openapi.from_dict(CONSUMER_OPENAPI, config=config(
    "consumerKey", CONSUMER_KEY,
    # No client is connected: 503 no_client_available is the answer to every request that gets that far.
    not_a_server_error={"expected-statuses": ["2xx", "3xx", "4xx", "503"]},
    # The document describes what the platform reads; what else it refuses is not this suite's business.
    positive_data_acceptance={"enabled": False}, negative_data_rejection={"enabled": False},
    missing_required_header={"enabled": False}))


def no_client_is_the_only_server_error(ctx: CheckContext, response: Response, case: schemathesis.Case) -> None:
    """A 503 only as the platform's own refusal for want of a client, never as a disguised failure."""
    assert response.status_code < 500 or response.status_code == 503, response.text
    if response.status_code == 503:
        assert response.json()["error"]["code"] == "no_client_available", response.text


def test_the_document_describes_every_field_the_platform_reads() -> None:
    assert set(ChatCompletionRequest.__struct_fields__) <= set(CHAT_REQUEST["properties"])
    assert set(ImageGenerationRequest.__struct_fields__) <= set(IMAGE_REQUEST["properties"])


@pytest.fixture(scope="module")
def consumer_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with platform(tmp_path_factory.mktemp("consumer-fuzz")) as seeded:
        yield seeded


@schema.parametrize()
@settings(FUZZ, max_examples=100)  # a request takes a millisecond or two
def test_consumer_api(case: schemathesis.Case, consumer_platform: Seeded) -> None:
    case.call_and_validate(base_url=consumer_platform.url, additional_checks=[no_client_is_the_only_server_error],
                           timeout=30)

