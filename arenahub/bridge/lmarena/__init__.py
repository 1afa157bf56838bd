"""The one place in Python that knows LMArena's private web formats.

LMArena changes its private API often. When it does, this package and the userscript are the only
places to change: the task payload the userscript turns into the upstream call (``task.build_task``),
the upstream stream's line format (``stream.StreamParser``), the failures it answers with
(``failures.classify_failure``) and where the page keeps its model list (``page.extract_page_models``);
``models`` holds the ids those work on (``Endpoint``, ``Model``). No sockets here: the server feeds
in dicts and strings and gets values back. Import the names from here, not from the modules.
"""

from arenahub.bridge.lmarena.failures import CAPTURE_HINT as CAPTURE_HINT
from arenahub.bridge.lmarena.failures import (
    CHALLENGE_MARKERS,
    AttachmentTooLarge,
    ContentRejected,
    InvalidSession,
    LMArenaError,
    ModelListNotFound,
    NeedsVerification,
    UpstreamApiChanged,
    UpstreamRateLimited,
    UpstreamStreamTimeout,
    WrongPosition,
    classify_failure,
    is_challenge,
    stream_timeout,
)
from arenahub.bridge.lmarena.models import MODES, POSITIONS, Endpoint, Model, is_uuid
from arenahub.bridge.lmarena.models import Mode as Mode
from arenahub.bridge.lmarena.models import Position as Position
from arenahub.bridge.lmarena.page import extract_page_models, models_json_text
from arenahub.bridge.lmarena.stream import ARENA_ERROR_TEXT as ARENA_ERROR_TEXT
from arenahub.bridge.lmarena.stream import (
    Challenge,
    Event,
    Finish,
    Images,
    Reasoning,
    StreamParser,
    TextDelta,
    Unknown,
    UpstreamFailure,
)
from arenahub.bridge.lmarena.task import IMAGE_BYPASS_FLAG as IMAGE_BYPASS_FLAG
from arenahub.bridge.lmarena.task import build_task

# ``X as X`` above: importable from here as before the split, but not part of __all__.
__all__ = [
    "CHALLENGE_MARKERS",
    "MODES",
    "POSITIONS",
    "AttachmentTooLarge",
    "Challenge",
    "ContentRejected",
    "Endpoint",
    "Event",
    "Finish",
    "Images",
    "InvalidSession",
    "LMArenaError",
    "Model",
    "ModelListNotFound",
    "NeedsVerification",
    "Reasoning",
    "StreamParser",
    "TextDelta",
    "Unknown",
    "UpstreamApiChanged",
    "UpstreamFailure",
    "UpstreamRateLimited",
    "UpstreamStreamTimeout",
    "WrongPosition",
    "build_task",
    "classify_failure",
    "extract_page_models",
    "is_challenge",
    "is_uuid",
    "models_json_text",
    "stream_timeout",
]
