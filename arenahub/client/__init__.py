"""The client: connects a bridge (LMArenaBridge or any OpenAI-compatible server) to the platform."""
