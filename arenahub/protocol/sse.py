"""Incremental server-sent-events parsing: bytes in, ``data`` payloads out."""

from __future__ import annotations


class SSEDecoder:
    """Feed it bytes as they arrive; it returns the ``data`` field of every complete event.

    Handles events split across reads, CRLF line ends, multi-line data and comments.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        events: list[bytes] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line = self._buffer[:end].rstrip(b"\r")
            self._buffer = self._buffer[end + 1:]
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
                continue
            if line.startswith(b":"):
                continue
            field, _, value = line.partition(b":")
            if field == b"data":
                self._data.append(value[1:] if value.startswith(b" ") else value)
        return events

    def close(self) -> list[bytes]:
        """Events left when the stream ended without a final blank line."""
        events = self.feed(b"\n\n") if (self._buffer or self._data) else []
        return events
