"""The object storage behind uploads: presigned upload URLs, stored bytes, presigned read URLs.

The real site hands out S3-style presigned URLs; the sim keeps each signature it issued and checks
the one presented, so a URL that was not issued here (or has expired) is refused the way S3 does,
with an XML ``<Error>``.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, unquote, urlsplit

ALLOWED_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "application/pdf")
UPLOAD_TTL = 600
READ_TTL = 3600
UPLOAD_PREFIX = "/__storage/upload/"
READ_PREFIX = "/__storage/"


@dataclass
class StoredObject:
    key: str
    content_type: str
    signature: str  # of the upload URL
    upload_expires_at: float
    data: bytes | None = None


@dataclass(frozen=True)
class SignedRead:
    key: str
    expires_at: float


class StorageError(Exception):
    """What S3 answers: a status and an error code, as XML."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def xml(self) -> str:
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{self.code}</Code>'
                f"<Message>{self.message}</Message></Error>")


def _signature() -> str:
    return secrets.token_hex(32)


def upload_url(origin: str, obj: StoredObject) -> str:
    return (f"{origin}{UPLOAD_PREFIX}{quote(obj.key)}?X-Amz-Signature={obj.signature}&X-Amz-Expires={UPLOAD_TTL}")


def read_url(origin: str, key: str, signature: str) -> str:
    return f"{origin}{READ_PREFIX}{quote(key)}?X-Amz-Signature={signature}&X-Amz-Expires={READ_TTL}"


@dataclass
class Storage:
    max_bytes: int
    objects: dict[str, StoredObject] = field(default_factory=dict)
    reads: dict[str, SignedRead] = field(default_factory=dict)  # by signature

    def clear(self) -> None:
        self.objects.clear()
        self.reads.clear()

    def issue_upload(self, file_name: str, content_type: str, now: float) -> StoredObject:
        key = f"uploads/{uuid.uuid4()}/{file_name}"
        obj = StoredObject(key, content_type, _signature(), now + UPLOAD_TTL)
        self.objects[key] = obj
        return obj

    def put(self, key: str, signature: str | None, content_type: str | None, data: bytes, now: float) -> None:
        obj = self.objects.get(key)
        if obj is None or signature is None or not secrets.compare_digest(signature, obj.signature):
            raise StorageError(403, "SignatureDoesNotMatch", "The request signature we calculated does not match "
                               "the signature you provided.")
        if now > obj.upload_expires_at:
            raise StorageError(403, "AccessDenied", "Request has expired")
        if content_type != obj.content_type:
            raise StorageError(403, "SignatureDoesNotMatch", f"Content-Type {content_type!r} is not the signed "
                               f"{obj.content_type!r}")
        if len(data) > self.max_bytes:
            raise StorageError(413, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
        obj.data = data

    def sign_read(self, key: str, now: float) -> str | None:
        """A read signature for an uploaded key, or None when nothing was uploaded under it."""
        obj = self.objects.get(key)
        if obj is None or obj.data is None:
            return None
        signature = _signature()
        self.reads[signature] = SignedRead(key, now + READ_TTL)
        return signature

    def read(self, key: str, signature: str | None, now: float) -> StoredObject:
        signed = self.reads.get(signature or "")
        if signed is None or signed.key != key:
            raise StorageError(403, "SignatureDoesNotMatch", "The request signature we calculated does not match "
                               "the signature you provided.")
        if now > signed.expires_at:
            raise StorageError(403, "AccessDenied", "Request has expired")
        obj = self.objects.get(key)
        if obj is None or obj.data is None:
            raise StorageError(404, "NoSuchKey", "The specified key does not exist.")
        return obj

    def is_attachment_url(self, url: str, now: float) -> bool:
        """A read URL issued here and not expired (any host: the page may show it under arena.ai)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.path.startswith(READ_PREFIX) \
                or parts.path.startswith(UPLOAD_PREFIX):
            return False
        signature = parse_qs(parts.query).get("X-Amz-Signature", [""])[0]
        try:
            self.read(unquote(parts.path[len(READ_PREFIX):]), signature, now)
        except StorageError:
            return False
        return True
