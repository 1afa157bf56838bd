"""Between platform instances: a request for a client that another instance holds.

Instance A (where the consumer's request arrived) opens one WebSocket to instance B (which holds the
client's tunnel) at ``/api/cluster/peer``, authenticated with the cluster's secret, and multiplexes
every request it sends there over it:

- A -> B: ``Forward`` (the request and the client it is for), ``frames.Window`` (A's consumer took
  that many bytes: B may send that much more), ``frames.Cancel`` (the consumer left);
- B -> A: the client's ``frames.Chunk`` / ``frames.End`` / ``frames.Error``, as the client sent them;
  ``Gone`` (the client's tunnel ended mid-answer), or ``NotHere`` (B cannot place the request on that
  client now: it left, or is busy, draining or out of rotation; A tries another client).

Flow control is the tunnel's, end to end: B takes the client's frames only while A has granted room
(``Forward.window``, then ``Window``), so the consumer's pace holds the client back as it does on
one instance, and no instance holds more than a window for a request.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from arenahub.protocol import frames

PATH = "/api/cluster/peer"
TOKEN_HEADER = "x-arenahub-cluster-token"
INSTANCE_HEADER = "x-arenahub-instance"


class Forward(msgspec.Struct, tag_field="type", tag="forward"):
    id: frames.Id
    client_id: frames.Id
    body: msgspec.Raw
    kind: Literal["chat.completions", "images.generations"] = "chat.completions"
    window: Annotated[int, Meta(ge=1)] = 256 * 1024


class Gone(msgspec.Struct, tag_field="type", tag="gone"):
    id: frames.Id
    reason: frames.Text


class NotHere(msgspec.Struct, tag_field="type", tag="not_here"):
    id: frames.Id
    reason: frames.Text
    # Seconds until B expects to take work for that client again, when it knows (its RPM window, its
    # breaker's cool-down, its upstream's limit); A routes around the client that long (else a second).
    retry_after: Annotated[float, Meta(ge=0, le=3600)] | None = None


PeerFrame = Forward | Gone | NotHere | frames.Chunk | frames.End | frames.Error | frames.Window | frames.Cancel

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(PeerFrame)


def encode(frame: PeerFrame) -> bytes:
    return _encoder.encode(frame)


def decode(data: bytes | str) -> PeerFrame:
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise frames.FrameError(str(exc)) from None
