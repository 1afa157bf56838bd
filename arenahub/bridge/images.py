"""Image links in a request, downloaded by the bridge so that the tab can upload them as the page does.

The request comes from a stranger (a platform consumer), and the bridge runs on its owner's
machine: a link to ``http://192.168.1.1/`` must not make that machine fetch its own network and
hand the result to a model that describes it back. So links resolve only to public addresses
(checked on the addresses actually connected to, redirects included) unless the owner sets
``allow_private_image_urls``; downloads are bounded in size and time.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import ipaddress
import socket
from dataclasses import replace
from typing import Any

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from arenahub.bridge.lmarena.conversation import ImageRef, Turn
from arenahub.protocol.errors import InvalidRequest, RequestTooLarge

MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_REDIRECTS = 3
TIMEOUT = aiohttp.ClientTimeout(total=20, sock_connect=5)
_REDIRECTS = (301, 302, 303, 307, 308)


def is_public(address: str) -> bool:
    """A globally routable address (an IPv4 address inside IPv6, ``::ffff:10.0.0.1``, counts as that address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ip.ipv4_mapped or ip.sixtofour or ip
    return ip.is_global


class _PublicOnly(AbstractResolver):
    """Resolves like the default resolver, then keeps only globally routable addresses, unless the fetcher
    allows private ones (read at each lookup: a config reload changes it for the session already open)."""

    def __init__(self, fetcher: ImageFetcher) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._fetcher = fetcher

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if self._fetcher.allow_private:
            return found
        public = [r for r in found if is_public(r["host"])]
        if not public:
            raise OSError(errno.EACCES, f"{host} resolves only to private or local addresses")
        return public

    async def close(self) -> None:
        await self._inner.close()


class ImageFetcher:
    """Downloads image links (one HTTP session for the bridge's life)."""

    def __init__(self, *, allow_private: bool = False, max_bytes: int = MAX_IMAGE_BYTES) -> None:
        self.allow_private = allow_private
        self.max_bytes = max_bytes
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            # No DNS cache and no kept-alive connections: either would skip the resolver's check, which must
            # see every request (allow_private may change on a config reload).
            connector = aiohttp.TCPConnector(resolver=_PublicOnly(self), limit=8, use_dns_cache=False,
                                             force_close=True)
            self._http = aiohttp.ClientSession(connector=connector, timeout=TIMEOUT,
                                               headers={"User-Agent": "arenahub-bridge (image fetch)"})
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def base64_of(self, url: str) -> str:
        """The image at ``url`` (one arena.ai made) as base64, downloaded with the same guards as links."""
        if url[:5].lower() == "data:":
            return url.split(",", 1)[-1]
        data_url = await self._fetch(ImageRef(url=url, name=None, where="data[].url"))
        return data_url.split(",", 1)[1]

    async def resolve(self, turns: list[Turn]) -> list[Turn]:
        """``turns`` with every http(s) image link replaced by a data: URL of what it points to."""
        links = {ref.url for t in turns for ref in t.images if ref.url[:5].lower() != "data:"}
        if not links:
            return turns
        refs = {ref.url: ref for t in turns for ref in t.images}
        fetched = dict(zip(links, await asyncio.gather(*(self._fetch(refs[url]) for url in links)), strict=True))
        return [replace(t, images=tuple(replace(ref, url=fetched.get(ref.url, ref.url)) for ref in t.images))
                for t in turns]

    def _check(self, url: yarl.URL, where: str) -> None:
        """Refuse a link the guard cannot see later: another scheme, or an IP address (the connector connects
        to those without asking the resolver)."""
        if url.scheme not in ("http", "https") or not url.host:
            raise InvalidRequest(f"`{where}` must be a data: URI (data:image/png;base64,...) or an http(s) URL, "
                                 f"got {str(url)[:60]!r}.", param=where)
        try:
            public = is_public(url.host)
        except ValueError:
            return  # a name: the resolver checks what it resolves to
        if not public and not self.allow_private:
            raise InvalidRequest(f"`{where}`: the image link points to a private or local address; the bridge "
                                 "downloads images from public addresses only.", param=where)

    async def _fetch(self, ref: ImageRef) -> str:
        where = ref.where
        try:
            url = yarl.URL(ref.url)
            for _ in range(MAX_REDIRECTS + 1):
                self._check(url, where)
                async with self._session().get(url, allow_redirects=False) as resp:
                    if resp.status in _REDIRECTS and resp.headers.get("location"):
                        url = resp.url.join(yarl.URL(resp.headers["location"]))
                        continue  # checked again, before it is followed
                    if resp.status != 200:
                        raise InvalidRequest(f"`{where}`: the image link answered HTTP {resp.status}.", param=where)
                    kind = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                    if not kind.startswith("image/"):
                        raise InvalidRequest(f"`{where}`: the link is not an image (content type "
                                             f"{kind or 'none'!r}).", param=where)
                    data = await self._read(resp, where)
                    return f"data:{kind};base64,{base64.b64encode(data).decode()}"
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            why = "it did not answer in time" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            raise InvalidRequest(f"`{where}`: could not download the image ({why}).", param=where) from None
        raise InvalidRequest(f"`{where}`: the image link redirects more than {MAX_REDIRECTS} times.", param=where)

    async def _read(self, resp: aiohttp.ClientResponse, where: str) -> bytes:
        if (resp.content_length or 0) > self.max_bytes:
            raise _too_large(where, self.max_bytes)
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self.max_bytes:
                raise _too_large(where, self.max_bytes)
            chunks.append(chunk)
        return b"".join(chunks)


def _too_large(where: str, limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"`{where}`: the image is larger than {limit // (1024 * 1024)} MB.", param=where,
                           code="image_too_large")


def public_refs(turns: list[Turn]) -> list[dict[str, Any]]:
    """The images of ``turns`` for a log line: where they came from, never their data."""
    return [{"where": ref.where, "link": ref.url[:5].lower() != "data:"} for t in turns for ref in t.images]
