"""What the three programs agree on: the tunnel frames, the OpenAI wire format and errors, and how many
requests share one connection (``mux``)."""
