"""The sign-in page, rendered on the server: no script, no inline style (the CSP allows neither).

Styled by ``/dashboard/static/style.css`` through the ``auth-*`` classes.
"""

from __future__ import annotations

from html import escape

TITLE = "arenahub \u2014 Sign in"


def render_login(csrf_token: str, message: str = "", *, notice: str = "") -> str:
    """The page; ``message`` is an error shown above the form, ``notice`` a neutral note (signed out)."""
    alert = (f'\n      <p class="auth-error" role="alert">{escape(message)}</p>' if message else
             f'\n      <p class="auth-notice" role="status">{escape(notice)}</p>' if notice else "")
    return _page(TITLE, f"""<h1>Sign in</h1>
    <p class="auth-lead">Sign in to the dashboard with the admin token or the dashboard password.</p>
    <form method="post" action="/dashboard/login" class="auth-form">{alert}
      <input type="hidden" name="csrf_token" value="{escape(csrf_token)}">
      <label class="field" for="secret">
        <span class="field-label">Admin token or password</span>
        <input id="secret" name="secret" type="password" autocomplete="current-password" required autofocus
               spellcheck="false" maxlength="2048">
      </label>
      <button type="submit" class="btn btn-primary auth-submit">Sign in</button>
    </form>
    <p class="auth-hint">Lost the token? On the platform's machine, <code>arenahub admin reset-admin-token</code>
      makes a new one; <code>arenahub admin set-dashboard-password</code> sets the password.</p>""")


def render_message(title: str, message: str, *, link: str = "/dashboard",
                   link_text: str = "Back to the dashboard") -> str:
    """A short page for an error outside the sign-in form (e.g. a sign-out without its CSRF token)."""
    return _page(f"arenahub \u2014 {title}", f"""<h1>{escape(title)}</h1>
    <p class="auth-error" role="alert">{escape(message)}</p>
    <p><a class="btn btn-primary" href="{escape(link)}">{escape(link_text)}</a></p>""")


def _page(title: str, content: str) -> str:
    """The frame both pages share: the head, and a card with the brand above ``content`` (HTML)."""
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="robots" content="noindex">
  <title>{escape(title)}</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/dashboard/static/style.css">
</head>
<body class="auth-page">
  <main class="auth-card">
    <div class="auth-brand">
      <span class="brand-mark" aria-hidden="true"></span>
      <span>arenahub</span>
    </div>
    {content}
  </main>
</body>
</html>
"""
