"""The client package offers image requests: its config.jsonc lists the images capability, which the client
then declares only while its bridge serves an image model (tests/client/test_images.py)."""

from __future__ import annotations

import io
import zipfile

import pytest

from arenahub.client.config import load_client_config
from arenahub.platform.client_package import DEFAULT_CAPABILITIES, build_client_package, build_wheel
from tests.platform.support import register, serving

TOKEN = "adm-package-images"


@pytest.fixture(scope="module")
def wheel():
    return build_wheel()


def test_the_package_config_lists_the_images_capability(wheel, tmp_path):
    assert "images" in DEFAULT_CAPABILITIES
    data = build_client_package(platform_url="https://gw.example.test/api", client_id="cl_img", api_key="ck-x" * 10,
                                wheel=wheel)
    text = zipfile.ZipFile(io.BytesIO(data)).read("config.jsonc").decode()
    assert '"capabilities": ["chat", "models", "images"]' in text
    assert "only while the bridge serves an image model" in text
    (tmp_path / "config.jsonc").write_text(text)
    assert load_client_config(tmp_path / "config.jsonc").capabilities == ("chat", "models", "images")


def test_the_package_the_dashboard_downloads_lists_it_too(tmp_path):
    with serving(f"sqlite+aiosqlite:///{tmp_path / 'platform.db'}", TOKEN) as admin:
        client_id, _ = register(admin, "painter")
        r = admin.post(f"/api/admin/clients/{client_id}/package")
    assert r.status_code == 200, r.text
    (tmp_path / "config.jsonc").write_bytes(zipfile.ZipFile(io.BytesIO(r.content)).read("config.jsonc"))
    assert "images" in load_client_config(tmp_path / "config.jsonc").capabilities

