"""The one place in Python that knows arena.ai's private web formats.

arena.ai changes its private API often. When it does, this package and the userscript's
``UPSTREAM`` object are the places to change: ``site`` (names, markers, the line format), the
task the tab turns into the upstream call (``task``, from the flattened history in
``conversation``), the answer stream (``stream.StreamParser``), its failures
(``failures.classify_failure``) and where the page keeps its models (``page.page_models``);
``models`` holds the ids those work on. No sockets here: the server feeds in dicts and strings
and gets values back. Import the names from here, not from the modules.
"""

from arenahub.bridge.lmarena import site as site
from arenahub.bridge.lmarena.conversation import Conversations, ImageRef, Prompt, Turn, flatten, read_turns
from arenahub.bridge.lmarena.failures import CAPTURE_HINT as CAPTURE_HINT
from arenahub.bridge.lmarena.failures import (
    AttachmentTooLarge,
    ClockSkew,
    CloudflareBlocked,
    ContentRejected,
    InvalidSession,
    LMArenaError,
    MessageHasFeedback,
    ModelListNotFound,
    NeedsVerification,
    RecaptchaUnavailable,
    RequestFieldRefused,
    SignedOut,
    UnexpectedAnswer,
    UploadUnavailable,
    UpstreamApiChanged,
    UpstreamRateLimited,
    UpstreamSchemaError,
    UpstreamStreamTimeout,
    VerificationRequired,
    WrongPosition,
    classify_failure,
    is_block_page,
    is_challenge,
    stream_timeout,
    unexpected_answer,
)
from arenahub.bridge.lmarena.models import MODES, POSITIONS, Endpoint, Model, is_uuid
from arenahub.bridge.lmarena.models import Mode as Mode
from arenahub.bridge.lmarena.models import Position as Position
from arenahub.bridge.lmarena.page import PageModel, extract_page_models, models_json_text, page_models
from arenahub.bridge.lmarena.stream import (
    Citations,
    Event,
    Finish,
    Images,
    Reasoning,
    RoutedModel,
    StreamParser,
    TextDelta,
    Unknown,
    UpstreamFailure,
)
from arenahub.bridge.lmarena.task import IMAGE_BYPASS_FLAG as IMAGE_BYPASS_FLAG
from arenahub.bridge.lmarena.task import (
    ArenaSettings,
    attachments,
    create_task,
    follow_up_task,
    retry_task,
)

# ``X as X`` above: importable from here, but not part of __all__.
__all__ = [
    "MODES",
    "POSITIONS",
    "ArenaSettings",
    "AttachmentTooLarge",
    "Citations",
    "ClockSkew",
    "CloudflareBlocked",
    "ContentRejected",
    "Conversations",
    "Endpoint",
    "Event",
    "Finish",
    "ImageRef",
    "Images",
    "InvalidSession",
    "LMArenaError",
    "MessageHasFeedback",
    "Model",
    "ModelListNotFound",
    "NeedsVerification",
    "PageModel",
    "Prompt",
    "Reasoning",
    "RecaptchaUnavailable",
    "RequestFieldRefused",
    "RoutedModel",
    "SignedOut",
    "StreamParser",
    "TextDelta",
    "Turn",
    "UnexpectedAnswer",
    "Unknown",
    "UploadUnavailable",
    "UpstreamApiChanged",
    "UpstreamFailure",
    "UpstreamRateLimited",
    "UpstreamSchemaError",
    "UpstreamStreamTimeout",
    "VerificationRequired",
    "WrongPosition",
    "attachments",
    "classify_failure",
    "create_task",
    "extract_page_models",
    "flatten",
    "follow_up_task",
    "is_block_page",
    "is_challenge",
    "is_uuid",
    "models_json_text",
    "page_models",
    "read_turns",
    "retry_task",
    "stream_timeout",
    "unexpected_answer",
]
