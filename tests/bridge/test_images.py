"""ImageFetcher against a real HTTP server on 127.0.0.1: downloads, refusals, and the private-address guard."""

import base64
from collections import Counter

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from arenahub.bridge import images
from arenahub.bridge.images import ImageFetcher, is_public, public_refs
from arenahub.bridge.lmarena import ImageRef, Turn
from arenahub.protocol.errors import InvalidRequest, RequestTooLarge

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9a"
                       "wAAAABJRU5ErkJggg==")
DATA = "data:image/png;base64,AAAA"
WHERE = "messages[0].content[0].image_url.url"


@pytest.fixture
async def server():
    hits: Counter[str] = Counter()

    async def handle(request: web.Request) -> web.StreamResponse:
        hits[request.path] += 1
        match request.path:
            case "/cat.png":
                return web.Response(body=PNG, content_type="image/png")
            case "/page":
                return web.Response(text="<html></html>", content_type="text/html")
            case "/big.png":
                return web.Response(body=b"x" * 2000, content_type="image/png")
            case "/streamed.png":  # no Content-Length: the size shows only while reading
                response = web.StreamResponse(headers={"Content-Type": "image/png"})
                await response.prepare(request)
                for _ in range(4):
                    await response.write(b"x" * 600)
                await response.write_eof()
                return response
            case "/moved":
                raise web.HTTPFound("/cat.png")
            case "/loop":
                raise web.HTTPFound("/loop")
            case "/to-private":
                raise web.HTTPFound(f"http://127.0.0.2:{request.url.port}/cat.png")
        return web.Response(status=404, text="gone")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    test_server.hits = hits  # type: ignore[attr-defined]
    yield test_server
    await test_server.close()


@pytest.fixture
async def fetcher():
    made: list[ImageFetcher] = []

    def make(**kw) -> ImageFetcher:
        made.append(ImageFetcher(**kw))
        return made[-1]

    yield make
    for f in made:
        await f.close()


def link(server, path, host="127.0.0.1"):
    return f"http://{host}:{server.port}{path}"


def turns(*urls):
    return [Turn("user", "look", tuple(ImageRef(u, None, f"messages[0].content[{i}].image_url.url")
                                       for i, u in enumerate(urls)))]


async def refused(fetch, url, kind=InvalidRequest):
    with pytest.raises(kind) as info:
        await fetch.resolve(turns(url))
    assert info.value.param == "messages[0].content[0].image_url.url"
    return info.value


# --- allowed to fetch local addresses ---

async def test_a_link_becomes_a_data_url(server, fetcher):
    url = link(server, "/cat.png")
    (turn,) = await fetcher(allow_private=True).resolve(turns(url, DATA, url))
    expected = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert [ref.url for ref in turn.images] == [expected, DATA, expected]
    assert [ref.where for ref in turn.images] == [f"messages[0].content[{i}].image_url.url" for i in range(3)]
    assert server.hits["/cat.png"] == 1  # one download per distinct link


async def test_data_urls_alone_need_no_download(fetcher):
    request = turns(DATA)
    assert await fetcher().resolve(request) is request


async def test_redirects_are_followed(server, fetcher):
    (turn,) = await fetcher(allow_private=True).resolve(turns(link(server, "/moved")))
    assert turn.images[0].url.startswith("data:image/png;base64,")
    assert server.hits == {"/moved": 1, "/cat.png": 1}


async def test_too_many_redirects(server, fetcher):
    error = await refused(fetcher(allow_private=True), link(server, "/loop"))
    assert "redirects more than 3 times" in error.message and server.hits["/loop"] == 4


async def test_not_an_image(server, fetcher):
    error = await refused(fetcher(allow_private=True), link(server, "/page"))
    assert "not an image (content type 'text/html')" in error.message


@pytest.mark.parametrize("path", ["/big.png", "/streamed.png"])
async def test_too_large(server, fetcher, path):
    error = await refused(fetcher(allow_private=True, max_bytes=1000), link(server, path), RequestTooLarge)
    assert (error.status, error.code) == (413, "image_too_large")


async def test_http_error_is_named(server, fetcher):
    error = await refused(fetcher(allow_private=True), link(server, "/missing.png"))
    assert error.status == 400 and "answered HTTP 404" in error.message
    assert f"`{WHERE}`" in error.message


async def test_nothing_listening(fetcher, unused_tcp_port):
    error = await refused(fetcher(allow_private=True), f"http://127.0.0.1:{unused_tcp_port}/x.png")
    assert "could not download the image" in error.message


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd", "javascript:alert(1)",
                                 "http:///nohost.png"])
async def test_other_schemes_are_refused(fetcher, url):
    error = await refused(fetcher(allow_private=True), url)
    assert "must be a data: URI" in error.message


# --- the guard: a stranger's link must not reach the owner's network ---

@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_private_addresses_are_refused_before_any_request(server, fetcher, host):
    error = await refused(fetcher(), link(server, "/cat.png", host))
    assert "private or local" in error.message
    assert sum(server.hits.values()) == 0


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/a.png",
                                 "http://192.168.1.1/a.png", "http://[::1]/a.png", "http://[fe80::1]/a.png",
                                 "http://0.0.0.0/a.png", "http://100.64.0.1/a.png"])
async def test_private_literals_are_refused(fetcher, url):
    assert "private or local" in (await refused(fetcher(), url)).message


async def test_a_redirect_to_a_private_address_is_refused(server, fetcher, monkeypatch):
    # Let the test server's own address pass as public, so that its redirect is what the guard meets.
    monkeypatch.setattr(images, "is_public", lambda address: address == "127.0.0.1")
    error = await refused(fetcher(), link(server, "/to-private"))
    assert "private or local" in error.message
    assert server.hits == {"/to-private": 1}


async def test_a_reloaded_setting_applies_to_the_open_session(server, fetcher):
    fetch = fetcher(allow_private=True)
    await fetch.resolve(turns(link(server, "/cat.png", "localhost")))
    fetch.allow_private = False  # the owner turned it off in config.jsonc
    await refused(fetch, link(server, "/cat.png", "localhost"))
    await refused(fetch, link(server, "/cat.png"))
    assert server.hits["/cat.png"] == 1


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("2606:4700::1111", True), ("127.0.0.1", False), ("10.1.2.3", False),
    ("172.16.0.1", False), ("169.254.169.254", False), ("::1", False), ("fe80::1%eth0", False),
    ("::ffff:127.0.0.1", False), ("::ffff:8.8.8.8", True), ("2002:7f00:1::", False), ("fc00::1", False),
])
def test_is_public(address, public):
    assert is_public(address) is public


def test_public_refs_never_show_data():
    request = [Turn("user", "", (ImageRef(DATA, None, "a"), ImageRef("https://x.example/i.png", None, "b")))]
    assert public_refs(request) == [{"where": "a", "link": False}, {"where": "b", "link": True}]
