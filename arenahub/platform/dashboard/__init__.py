"""The admin dashboard: sign-in, sessions, the admin API gate, and the pages at ``/dashboard``.

``auth`` checks who is calling (admin token, dashboard password, session cookie, CSRF); ``sessions``
keeps the sessions; ``password`` the dashboard password; ``arenahub.platform.throttle`` slows failed sign-ins; ``pages``
serves the sign-in page, the dashboard shell and its static files.
"""
