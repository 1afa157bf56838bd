"""The client's calls to its bridge: an OpenAI-compatible server on the owner's machine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec

from arenahub.protocol.frames import SessionStatus
from arenahub.protocol.images import MAX_ANSWER_CHARS, image_events
from arenahub.protocol.sse import SSEDecoder

log = logging.getLogger("arenahub.client.relay")

_json = msgspec.json.Decoder()
_encode = msgspec.json.Encoder().encode


class RelayError(Exception):
    """The bridge could not answer; carries what the platform needs to decide on a retry."""

    def __init__(self, message: str, *, code: str, status: int = 502, retryable: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.status, self.retryable = message, code, status, retryable
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds (dates are not used by the bridge); None when absent or unreadable."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 < seconds <= 86_400 else None


def _error_from_body(status: int, body: bytes, retry_after: str | None = None) -> RelayError:
    message, code = f"the bridge answered HTTP {status}", "bridge_error"
    try:
        data = _json.decode(body)
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            code = str(err.get("code") or err.get("type") or code)
        elif isinstance(err, str):
            message = err
        elif isinstance(data, dict) and isinstance(data.get("detail"), str):
            message = data["detail"]
    except msgspec.DecodeError:
        text = body[:200].decode("utf-8", "replace").strip()
        if text:
            message = f"{message}: {text}"
    # 5xx and 429 depend on this bridge and its session; another client may well succeed.
    return RelayError(message, code=code, status=status, retryable=status >= 500 or status == 429,
                      retry_after=_retry_after(retry_after) if status == 429 else None)


class BridgeRelay:
    def __init__(self, http: aiohttp.ClientSession, base_url: str, api_key: str | None = None) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def model_list(self) -> tuple[list[str], set[str] | None]:
        """The bridge's models, and which of them make images: those of ``"type": "image"`` (arenahub's
        bridge marks every model's type; None when the bridge marks none, as LMArenaBridge)."""
        async with self._http.get(self._base + "/v1/models", headers=self._headers,
                                  timeout=aiohttp.ClientTimeout(total=10)) as resp:
            if resp.status != 200:
                raise _error_from_body(resp.status, await resp.read())
            data = _json.decode(await resp.read())
        entries = [m for m in data.get("data", []) if isinstance(m, dict) and isinstance(m.get("id"), str)]
        typed = any("type" in m for m in entries)
        images = {m["id"] for m in entries if m.get("type") == "image"} if typed else None
        return sorted({m["id"] for m in entries}), images

    async def images(self, body: bytes) -> AsyncIterator[tuple[list[list[dict[str, Any]]], dict[str, Any] | None]]:
        """Yields (events, None) for an image request: one event per image URL or piece of an image's
        base64 (protocol/images.py), each to go in a frame of its own. Raises RelayError on failure."""
        try:
            request = _json.decode(body)
        except msgspec.DecodeError as exc:
            raise RelayError(f"the platform sent a request body that is not JSON ({exc})",
                             code="bad_request_frame", status=400) from None
        fmt = request.get("response_format") if isinstance(request, dict) else None
        fmt = fmt if fmt in ("url", "b64_json") else "url"
        try:
            async with self._http.post(self._base + "/v1/images/generations", data=body,
                                       headers={**self._headers, "Content-Type": "application/json"}) as resp:
                if resp.status != 200:
                    raise _error_from_body(resp.status, await resp.read(), resp.headers.get("retry-after"))
                # Bounded: an answer larger than the platform takes is not held here either.
                chunks, size = [], 0
                async for chunk in resp.content.iter_any():
                    size += len(chunk)
                    if size > MAX_ANSWER_CHARS + 64 * 1024:  # the images, and the JSON around them
                        resp.close()
                        raise RelayError("the bridge's images are larger than the platform takes "
                                         f"({MAX_ANSWER_CHARS // 2**20} MiB)", code="image_answer_too_large")
                    chunks.append(chunk)
                raw = b"".join(chunks)
        except (aiohttp.ClientError, OSError) as exc:
            raise RelayError(f"cannot reach the bridge at {self._base}: {exc}", code="bridge_unreachable",
                             retryable=True) from None
        try:
            data = _json.decode(raw)
        except msgspec.DecodeError:
            raise RelayError("the bridge answered with something that is not JSON", code="bad_upstream_body") from None
        events = image_events(data.get("data") if isinstance(data, dict) else None, fmt)
        if not events:
            raise RelayError(f"the bridge answered without an image (response_format {fmt})", code="no_image")
        for event in events:
            yield [event], None

    async def session_status(self) -> SessionStatus:
        """The bridge's own view of its upstream session, from ``GET /bridge/status`` when it has one
        (arenahub's bridge does; LMArenaBridge does not, and then only reachability is known)."""
        try:
            async with self._http.get(self._base + "/bridge/status", headers=self._headers,
                                      timeout=aiohttp.ClientTimeout(total=5)) as resp:
                if resp.status != 200:
                    return SessionStatus(bridge_reachable=True)
                data = _json.decode(await resp.read())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return SessionStatus(bridge_reachable=False, last_error=f"bridge unreachable: {exc}")
        except msgspec.DecodeError:
            return SessionStatus(bridge_reachable=True)
        session = data.get("lmarena") if isinstance(data, dict) else None
        if isinstance(session, dict):
            try:
                return msgspec.convert(session, SessionStatus)
            except msgspec.ValidationError:
                pass
        return SessionStatus(bridge_reachable=True)

    async def answer(self, body: bytes) -> AsyncIterator[tuple[list[list[dict[str, Any]]], dict[str, Any] | None]]:
        """Yields (events, usage): the ``choices`` of every upstream chunk that arrived in one read.

        A streamed request is streamed from the bridge; a non-streamed one is answered in one
        piece, as one event whose deltas carry the whole messages. Raises RelayError on failure.
        """
        try:
            request = _json.decode(body)
        except msgspec.DecodeError as exc:
            raise RelayError(f"the platform sent a request body that is not JSON ({exc})",
                             code="bad_request_frame", status=400) from None
        if not isinstance(request, dict):
            raise RelayError("the platform sent a request body that is not an object",
                             code="bad_request_frame", status=400)
        streamed = bool(request.get("stream"))
        if streamed:
            request["stream_options"] = {"include_usage": True}
        else:
            request.pop("stream_options", None)
        try:
            async with self._http.post(self._base + "/v1/chat/completions", data=_encode(request),
                                       headers={**self._headers, "Content-Type": "application/json"}) as resp:
                if resp.status != 200:
                    raise _error_from_body(resp.status, await resp.read(), resp.headers.get("retry-after"))
                if "text/event-stream" not in resp.headers.get("content-type", ""):
                    yield self._single(await resp.read())
                    return
                decoder = SSEDecoder()
                done = False
                try:
                    async for raw in resp.content.iter_any():
                        events: list[list[dict[str, Any]]] = []
                        usage = None
                        failure: RelayError | None = None
                        for data in decoder.feed(raw):
                            if data == b"[DONE]":
                                done = True
                                break
                            try:
                                choices, chunk_usage = self._chunk(data)
                            except RelayError as exc:
                                failure = exc  # deliver the chunks that came before it in this read first
                                break
                            usage = chunk_usage or usage
                            if choices:
                                events.append(choices)
                        if events or usage:
                            yield events, usage
                        if failure is not None:
                            raise failure
                        if done:
                            break
                except BaseException:
                    # Left before the end (cancelled, or a failure): close the connection, or aiohttp reads
                    # the rest of the answer to reuse it, and the bridge goes on with the upstream call.
                    resp.close()
                    raise
                if done:
                    await self._drain(resp)
                else:
                    tail = [self._chunk(d) for d in decoder.close() if d != b"[DONE]"]
                    if tail:
                        yield [c for c, _ in tail if c], next((u for _, u in reversed(tail) if u), None)
        except (aiohttp.ClientError, OSError) as exc:
            raise RelayError(f"cannot reach the bridge at {self._base}: {exc}", code="bridge_unreachable",
                             retryable=True) from None

    @staticmethod
    async def _drain(resp: aiohttp.ClientResponse) -> None:
        """Read what follows [DONE] (normally just the end of the body) so the connection is reused."""
        try:
            async with asyncio.timeout(2):
                await resp.content.read()
        except TimeoutError:
            resp.close()

    def _chunk(self, data: bytes) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        try:
            chunk = _json.decode(data)
        except msgspec.DecodeError:
            raise RelayError(f"the bridge sent a malformed stream event: {data[:120]!r}",
                             code="bad_upstream_chunk") from None
        if not isinstance(chunk, dict):
            raise RelayError("the bridge sent a stream event that is not an object", code="bad_upstream_chunk")
        if chunk.get("error"):
            err = chunk["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            code = (err.get("code") or err.get("type")) if isinstance(err, dict) else None
            raise RelayError(str(message or "upstream error"), code=str(code or "upstream_error"))
        choices = chunk.get("choices")
        usage = chunk.get("usage")
        return (choices if isinstance(choices, list) else []), (usage if isinstance(usage, dict) else None)

    def _single(self, body: bytes) -> tuple[list[list[dict[str, Any]]], dict[str, Any] | None]:
        """A whole (non-streamed) response as one event of deltas."""
        try:
            data = _json.decode(body)
        except msgspec.DecodeError:
            raise RelayError("the bridge answered with something that is not JSON", code="bad_upstream_body") from None
        if not isinstance(data, dict):
            raise RelayError("the bridge answered with JSON that is not an object", code="bad_upstream_body")
        if data.get("error"):
            raise _error_from_body(502, body)
        choices = []
        for c in data.get("choices") or []:
            if isinstance(c, dict):
                message = c.get("message") if isinstance(c.get("message"), dict) else {}
                choices.append({"index": c.get("index", 0), "delta": message, "finish_reason": c.get("finish_reason")})
        usage = data.get("usage")
        return ([choices] if choices else []), (usage if isinstance(usage, dict) else None)
