"""The OpenAI chat-completions wire format: request validation, responses, chunks and errors.

Pure functions and small classes, no I/O: the platform, the client and the bridge share them.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from itertools import accumulate
from typing import Any, Literal, NoReturn, TypeVar

import msgspec

from arenahub.protocol.errors import ApiError, InvalidRequest

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class StreamOptions(msgspec.Struct):
    include_usage: bool = False


class Message(msgspec.Struct):
    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class ChatCompletionRequest(msgspec.Struct):
    model: str
    messages: list[Message]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    user: str | None = None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


_request_decoder = msgspec.json.Decoder(ChatCompletionRequest)
_encoder = msgspec.json.Encoder()

# How deep a request's JSON may nest arrays and objects. Real requests (tool schemas included) stay
# far below; much deeper ones would exhaust a parser's stack, here or in a client.
MAX_JSON_DEPTH = 64
_NOT_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # an opening bracket +1, a closing one -1 (signed)


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether valid JSON ``body`` nests arrays and objects more than ``limit`` deep.

    Two byte counts, unless the body has more than ``limit`` brackets; then its strings are dropped
    (escaped backslashes, then escaped quotes, then what lies between quotes) and the depth is the
    highest running sum of its brackets: C loops, linear in the body's size."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    unquoted = b"".join(body.replace(b"\\\\", b"").replace(b'\\"', b"").split(b'"')[::2])
    return max(accumulate(array("b", unquoted.translate(_STEP, _NOT_BRACKET))), default=0) > limit


def _too_deep() -> InvalidRequest:
    return InvalidRequest(f"The request body nests JSON arrays and objects more than {MAX_JSON_DEPTH} levels "
                          "deep.", code="invalid_json")


def _param_from_validation(message: str) -> str | None:
    # msgspec: "Expected `str`, got `int` - at `$.messages[0].role`", and for a field left out
    # "Object missing required field `role` - at `$.messages[0]`" (at the top level without "- at").
    marker = " - at `$."
    at = message.split(marker, 1)[1].rstrip("`") if marker in message else None
    missing = "Object missing required field `"
    if message.startswith(missing):
        field = message[len(missing):].split("`", 1)[0]
        return f"{at}.{field}" if at else field
    return at


T = TypeVar("T")


def decode_request(body: bytes, decoder: msgspec.json.Decoder[T], empty: str) -> T:
    """A request body decoded as ``decoder``'s type, or InvalidRequest naming the bad field (``param``);
    ``empty`` says what to send instead of an empty body. Shared by every OpenAI endpoint."""
    if not body.strip():
        raise InvalidRequest(f"The request body is empty: {empty}", code="invalid_json")
    try:
        req = decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        param = _param_from_validation(text)
        if text.startswith("Expected `object`") and param is None:
            text = "The request body must be a JSON object."
        return _raise(InvalidRequest(f"Invalid request: {text}", param=param))
    except msgspec.DecodeError as exc:
        return _raise(InvalidRequest(f"The request body is not valid JSON ({exc}).", code="invalid_json"))
    except RecursionError:  # msgspec's own guard, hundreds of levels down (skipped fields too)
        return _raise(_too_deep())
    if json_too_deep(body):
        raise _too_deep()
    return req


def parse_chat_request(body: bytes) -> ChatCompletionRequest:
    """Validate a chat-completions body, raising InvalidRequest that names the bad field."""
    req = decode_request(body, _request_decoder, "send a JSON object with `model` and `messages`.")
    if not req.model:
        raise InvalidRequest("`model` must not be empty.", param="model")
    if not req.messages:
        raise InvalidRequest("`messages` must contain at least one message.", param="messages")
    if req.n != 1:
        raise InvalidRequest("Only `n` = 1 is supported.", param="n")
    for field in ("max_tokens", "max_completion_tokens"):
        value = getattr(req, field)
        if value is not None and value < 1:
            raise InvalidRequest(f"`{field}` must be at least 1.", param=field)
    return req


def _raise(err: ApiError) -> NoReturn:
    raise err


def error_body(err: ApiError) -> bytes:
    """OpenAI's error envelope. What an upstream said (a client's own words: bounded and cleaned)
    travels only in ``upstream_message``, never as the message."""
    error: dict[str, Any] = {"message": err.message, "type": err.type, "param": err.param, "code": err.code}
    if err.upstream_message is not None:
        error["upstream_message"] = err.upstream_message
    return _encoder.encode({"error": error})


def error_event(err: ApiError) -> bytes:
    """An SSE event carrying an error after the stream has started (the openai package raises it)."""
    return b"data: " + error_body(err) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def chunk_event(completion_id: str, created: int, model: str, choices: list[dict[str, Any]],
                usage: dict[str, Any] | None = None) -> bytes:
    chunk: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk",
                             "created": created, "model": model, "choices": choices}
    if usage is not None:
        chunk["usage"] = usage
    return b"data: " + _encoder.encode(chunk) + b"\n\n"


def completion_body(completion_id: str, created: int, model: str,
                    choices: list[dict[str, Any]], usage: dict[str, Any]) -> bytes:
    return _encoder.encode({"id": completion_id, "object": "chat.completion", "created": created,
                            "model": model, "choices": choices, "usage": usage})


def models_body(model_ids: list[str], owned_by: str = "arenahub", types: Mapping[str, str] | None = None) -> bytes:
    """OpenAI's model list; ``types`` adds each model's ``type`` ("chat", "image", ...), as the bridge
    tells its client which models make images."""
    return _encoder.encode({"object": "list", "data": [
        {"id": m, "object": "model", "created": 0, "owned_by": owned_by, **({"type": types[m]} if types else {})}
        for m in model_ids]})


def usage_dict(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class ChoiceAccumulator:
    """Folds streamed ``choices`` deltas into the choices of one non-streamed response."""

    def __init__(self) -> None:
        self._choices: dict[int, dict[str, Any]] = {}

    def add(self, choices: list[dict[str, Any]]) -> None:
        for choice in choices:
            index = choice.get("index", 0)
            acc = self._choices.setdefault(index, {"role": "assistant", "content": [], "reasoning": [],
                                                   "tool_calls": {}, "finish_reason": None})
            delta = choice.get("delta") or {}
            if delta.get("role"):
                acc["role"] = delta["role"]
            if isinstance(delta.get("content"), str):
                acc["content"].append(delta["content"])
            if isinstance(delta.get("reasoning_content"), str):
                acc["reasoning"].append(delta["reasoning_content"])
            for call in delta.get("tool_calls") or []:
                slot = acc["tool_calls"].setdefault(call.get("index", 0), {
                    "id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                if call.get("id"):
                    slot["id"] = call["id"]
                fn = call.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                acc["finish_reason"] = choice["finish_reason"]

    def text(self) -> str:
        return "".join("".join(c["content"]) + "".join(c["reasoning"]) for c in self._choices.values())

    def choices(self) -> list[dict[str, Any]]:
        out = []
        for index in sorted(self._choices) or [0]:
            acc = self._choices.get(index) or {"role": "assistant", "content": [], "reasoning": [],
                                               "tool_calls": {}, "finish_reason": None}
            message: dict[str, Any] = {"role": acc["role"], "content": "".join(acc["content"])}
            if acc["reasoning"]:
                message["reasoning_content"] = "".join(acc["reasoning"])
            if acc["tool_calls"]:
                message["tool_calls"] = [acc["tool_calls"][i] for i in sorted(acc["tool_calls"])]
            out.append({"index": index, "message": message,
                        "finish_reason": acc["finish_reason"] or "stop", "logprobs": None})
        return out


def delta_text(choices: list[dict[str, Any]]) -> str:
    """The text a chunk's choices add (content and reasoning), for counting tokens."""
    parts = []
    for choice in choices:
        delta = choice.get("delta") or {}
        for key in ("content", "reasoning_content"):
            value = delta.get(key)
            if isinstance(value, str):
                parts.append(value)
    return "".join(parts)


def prompt_text(req: ChatCompletionRequest) -> str:
    parts = []
    for message in req.messages:
        if isinstance(message.content, str):
            parts.append(message.content)
        elif message.content:
            parts.extend(p.get("text", "") for p in message.content if isinstance(p.get("text"), str))
    return "\n".join(parts)


def prompt_images(req: ChatCompletionRequest) -> int:
    """How many images the messages carry (``image_url`` content parts), for per-image pricing."""
    return sum(1 for message in req.messages if isinstance(message.content, list)
               for p in message.content if p.get("type") == "image_url")
