"""The LMArena bridge: an OpenAI-compatible local server whose answers come from a logged-in LMArena tab.

``lmarena`` (a package) is the one place in Python that knows LMArena's formats (task payload,
stream lines, failures, the page's model list); ``config`` reads the existing LMArenaBridge's
config.jsonc, models.json and model_endpoint_map.json; ``config_edit`` writes captured ids back into
config.jsonc, keeping its comments; ``server``, ``runtime``, ``tabs`` and ``answers`` serve requests
through the connected tabs; ``userscript.js`` is the script those tabs run.
"""
