"""The bridge: an OpenAI-compatible local server whose answers come from a signed-in arena.ai tab.

``lmarena`` (a package) is the one place in Python that knows arena.ai's formats (``site``: names and
markers; the task the tab runs; the answer stream; failures; the page's model list);
``config`` reads the existing LMArenaBridge's config.jsonc, models.json and model_endpoint_map.json;
``config_edit`` writes captured ids back into config.jsonc, keeping its comments; ``server``,
``runtime``, ``tabs`` and ``answers`` serve requests through the connected tabs; ``diagnosis`` and
``status`` judge what the tabs report; ``images`` downloads image links; ``userscript.js`` is the
script those tabs run, speaking ``arenahub.protocol.tab``.
"""
