"""Drop-ins for programs arenahub does not own.

``lmarena_platform_integration.py`` is a single file to copy beside the existing LMArenaBridge's
api_server.py (it ships as package data, so an installed arenahub has it); its docstring says how.
"""
