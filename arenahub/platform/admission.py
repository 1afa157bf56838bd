"""Admission of a consumer request, the same for every endpoint (chat completions, image generations):
its key, its model, an admin's pin, the key's rate limits, and the credit held for it.

Each step raises the ApiError that refuses the request; the endpoint records the refusal
(``Settlement.refused``). What passes holds a rate-limit ticket and a reservation, which settlement
(settlement.py) gives back, once, when the exchange ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.requests import Request

from arenahub.platform.accounting.limits import Refused
from arenahub.platform.billing import InsufficientQuota
from arenahub.platform.dashboard.auth import client_address
from arenahub.platform.exchange import Exchange
from arenahub.platform.storage.accounts import ConsumerKey
from arenahub.protocol.errors import (
    ApiError,
    ModelNotAllowed,
    ModelNotFound,
    NoClientAvailable,
    PinNotAllowed,
    ShuttingDown,
)

if TYPE_CHECKING:
    from arenahub.platform.runtime import Platform

PIN_HEADER = "x-arenahub-pin-client"
ADMIN_TOKEN_HEADER = "x-arenahub-admin-token"


def check_open(platform: Platform) -> None:
    if platform.refusing:
        raise ShuttingDown("The platform is shutting down; retry in a moment.", headers={"Retry-After": "5"})


async def authenticate(platform: Platform, request: Request) -> ConsumerKey:
    """The request's consumer key; a wrong one counts against the caller's address (throttle.py)."""
    authorization = request.headers.get("authorization")
    return await platform.credential_throttle.guard(client_address(request), "consumer_key",
                                                    lambda: platform.keys.authenticate(authorization))


def check_model(platform: Platform, key: ConsumerKey, model: str) -> None:
    """The key may use the model, and the platform offers it."""
    if not key.allows(model):
        raise ModelNotAllowed(f"This API key may not use the model '{model}'.", param="model")
    if not platform.model_known(model):
        if platform.catalogue.enabled:
            raise ModelNotFound(f"The model '{model}' is not offered here: the operator has not listed it in the "
                                "platform's model catalogue. GET /v1/models lists the models available now.",
                                param="model")
        raise ModelNotFound(f"The model '{model}' does not exist: no registered client serves it. "
                            "GET /v1/models lists the models available now.", param="model")
    if platform.catalogue.enabled and not any(s.serves(model) for s in platform.registry.sessions()):
        raise NoClientAvailable(f"No client can serve this request now: no connected client is approved for the model "
                                f"'{model}' (the operator approves clients in the model catalogue).",
                                headers={"Retry-After": "5"})


async def admit(platform: Platform, request: Request, ex: Exchange, est_tokens: Callable[[], int]) -> None:
    """An admin's pin, the key's rate limits (TPM counts ``est_tokens()``, corrected to real use at the
    end) and its credit, for the exchange; raises the ApiError that refuses it."""
    pin = request.headers.get(PIN_HEADER)
    if pin is not None:
        # Debugging aid for admins only: the admin token must come along.
        try:
            await platform.credential_throttle.guard(
                client_address(request), "admin_token",
                lambda: platform.admin.check("Bearer " + request.headers.get(ADMIN_TOKEN_HEADER, "")))
        except ApiError as err:
            if err.status == 429:
                raise
            raise PinNotAllowed(f"The {PIN_HEADER} header needs a valid {ADMIN_TOKEN_HEADER} header.") from None
        ex.pinned_client = pin.strip()
    limits = ex.key.limits
    if not limits.unlimited:
        estimate = est_tokens() if limits.tpm else 0
        admission = await platform.key_limits.admit(ex.key.id, limits, est_tokens=estimate)
        if isinstance(admission, Refused):
            raise admission.error()
        ex.ticket = admission.ticket
        ex.rate_headers = admission.status.headers()
    try:
        try:
            await platform.accounting.reserve(ex, platform.settings.max_answer_tokens)
        except InsufficientQuota:
            if not await platform.accounting.recheck(ex.key.id):
                raise
            await platform.accounting.reserve(ex, platform.settings.max_answer_tokens)
    except ApiError as err:  # out of credit (402), or the shared credit unreachable (503)
        if ex.ticket is not None:
            try:
                await platform.key_limits.release(ex.ticket)
            except ApiError:
                pass  # unreachable too: the slot comes back with the ticket's lease (limits_redis.py)
        err.headers = {**ex.rate_headers, **err.headers}
        raise
