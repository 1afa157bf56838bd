"""``platform_features.enable_request_validation``: check a Request frame's body before it goes to the bridge.

The platform validates what consumers send, so a body that fails here means a platform (or a
peer posing as one) that sends something it should not: it is refused at once with an Error
frame and never reaches the bridge.
"""

from __future__ import annotations

import re

from arenahub.protocol import frames
from arenahub.protocol.errors import ApiError
from arenahub.protocol.images import parse_image_request
from arenahub.protocol.openai import parse_chat_request

# msgspec quotes the offending value of a Literal ("Invalid enum value 'x' - at `$.messages[0].role`");
# the value is the consumer's, so it stays out of the message.
_ENUM_VALUE = re.compile(r"Invalid enum value .*?(?= - at `\$)", re.DOTALL)
_MAX_MESSAGE = 300


def rejection(request: frames.Request) -> frames.Error | None:
    """The Error frame answering a request whose body is not a valid request of its kind (a chat completion
    or an image generation), else None.

    The message names what is wrong (and where, as ``error.param`` would) but never quotes the body.
    """
    try:
        if request.kind == frames.IMAGES:
            parse_image_request(bytes(request.body))
        else:
            parse_chat_request(bytes(request.body))
    except ApiError as exc:
        reason = _ENUM_VALUE.sub("Invalid value", exc.message)
        where = f" (at {exc.param})" if exc.param and exc.param not in reason else ""
        message = f"the client refused a malformed request: {reason}{where}"
        if len(message) > _MAX_MESSAGE:
            message = message[:_MAX_MESSAGE - 1] + "…"
        return frames.Error(id=request.id, code=exc.code, message=message, status=400, retryable=False)
    return None
