"""The bridge's config.jsonc also holds the platform client's sections: a mistake there is said when the
file changes."""

from __future__ import annotations


def test_a_mistake_in_the_platform_sections_is_said_when_the_file_changes(tmp_path, caplog) -> None:
    """The bridge re-reads config.jsonc when it changes; the platform client's sections in it are taken by
    POST /platform/register, but a mistake there is logged now, naming line and key."""
    import logging

    from arenahub.bridge.runtime import Bridge

    path = tmp_path / "config.jsonc"
    path.write_text('{\n  "platform_integration": {\n    "enabled": true, "platform_url": "http://127.0.0.1:1",\n'
                    '    "client_id": "cl_x", "api_key": "ck_x",\n    "heartbeat_interval_seconds": 30\n  }\n}\n')
    bridge = Bridge(path)
    path.write_text(path.read_text().replace('"heartbeat_interval_seconds": 30', '"heartbeat_interval_seconds": 0'))
    with caplog.at_level(logging.ERROR, logger="arenahub.bridge"):
        bridge.reload()
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("platform_integration.heartbeat_interval_seconds" in m and "config.jsonc:5:" in m and
               "POST /platform/register" in m for m in said), said
