"""The platform: the central gateway that consumers call and clients connect to."""
