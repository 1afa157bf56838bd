"""What the client tells the platform it can do: ``capabilities`` in its hello and heartbeats.

The config lists what the owner lets the client offer (``platform_integration.capabilities``). The
platform routes image requests only to clients that declare ``images``, so the client declares it
only while its bridge serves an image model: arenahub's bridge marks each model of its
``/v1/models`` with its ``type`` (``"image"`` for the ``"<uuid>:image"`` entries of models.json). A
bridge that marks no model's type (LMArenaBridge) cannot tell: then the config decides.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from arenahub.protocol import frames


def announced(configured: Sequence[str], image_models: Collection[str] | None) -> list[str]:
    """The capabilities to declare, given the config's and the bridge's image models (None: not known)."""
    caps = list(dict.fromkeys(configured))
    if image_models is not None and not image_models and frames.IMAGES_CAPABILITY in caps:
        caps.remove(frames.IMAGES_CAPABILITY)
    return caps
