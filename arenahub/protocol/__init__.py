"""What the three programs agree on: the tunnel frames, the OpenAI wire format and errors."""
