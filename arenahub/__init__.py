"""arenahub: a central OpenAI-compatible gateway (platform), the clients that serve it,
and the LMArena bridge those clients run."""

__version__ = "0.1.0"
