"""The HTML the server sends: one shell per page (the page's script fills `<main>`), the
sign-in page and the 403 page. Pages are plain links, each a full load that the server
checks against the session's role first; no page carries a secret."""

from __future__ import annotations

from html import escape

from warden_console.sessions import Session

__all__ = ["ADMIN_PAGES", "USER_PAGES", "forbidden_page", "login_page", "shell", "signed_in_page", "sso_error_page"]

# (path, title) in the navigation's order
ADMIN_PAGES = (
    ("connectors", "Connectors"),
    ("tools", "Tools"),
    ("try", "Try it"),
    ("profiles", "Profiles & keys"),
    ("approvals", "Approvals"),
    ("audit", "Audit"),
)
USER_PAGES = (("me", "My connections"),)


def _doc(title: str, body: str, page: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · Warden</title>
<link rel="stylesheet" href="/static/style.css">
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
</head>
<body data-page="{escape(page)}">
<a class="skip" href="#main">Skip to content</a>
{body}
<script type="module" src="/static/app.js"></script>
</body>
</html>
"""


def shell(page: str, title: str, session: Session) -> str:
    pages = ADMIN_PAGES if session.role == "admin" else USER_PAGES
    current = ' aria-current="page"'
    links = "".join(f'<li><a href="/{p}"{current if p == page else ""}>{escape(t)}</a></li>' for p, t in pages)
    body = f"""<header class="top">
  <a class="brand" href="/">Warden</a>
  <nav aria-label="Main"><ul>{links}</ul></nav>
  <div class="who"><span>Signed in as <strong>{escape(session.label)}</strong></span>
  <button type="button" id="signout" class="ghost">Sign out</button></div>
</header>
<div id="banner" role="status" aria-live="polite"></div>
<main id="main" tabindex="-1"><h1>{escape(title)}</h1><div id="page"><p class="muted">Loading…</p></div></main>"""
    return _doc(title, body, page)


def login_page(sso: str | None = None) -> str:
    """`sso`: the issuer's name, when single sign-on is configured."""
    with_sso = (
        f"""<p class="sso"><a class="button" href="/login/oidc">Sign in with {escape(sso)}</a></p>
<p class="hint">Administrators and end users alike: your organization's sign-in.</p>
<p class="or"><span>or</span></p>
"""
        if sso
        else ""
    )
    body = f"""<main id="main" class="login" tabindex="-1">
<h1>Sign in to Warden</h1>
{with_sso}<form id="login" novalidate>
  <fieldset>
    <legend>Sign in as</legend>
    <label><input type="radio" name="kind" value="admin" checked> Administrator (admin token)</label>
    <label><input type="radio" name="kind" value="agent_key"> End user (your agent key)</label>
  </fieldset>
  <label for="secret">Token or key</label>
  <input id="secret" name="secret" type="password" autocomplete="current-password" required>
  <p class="hint">It stays on the server: the browser keeps only a session cookie.</p>
  <button type="submit">Sign in</button>
  <p id="login-error" class="error" role="alert"></p>
</form>
</main>"""
    return _doc("Sign in", body, "login")


def signed_in_page(next_page: str) -> str:
    """After the issuer's callback: the page moves on by itself (app.js). A navigation from
    this page is same-site, so the SameSite=Strict session cookie goes with it; a redirect
    straight from the callback would still count as the issuer's and go without it."""
    body = f"""<main id="main" class="login" tabindex="-1">
<h1>Signed in</h1>
<p><a id="continue" href="{escape(next_page)}">Continue</a></p>
</main>"""
    return _doc("Signed in", body, "signed-in")


def sso_error_page(message: str) -> str:
    body = f"""<main id="main" class="login" tabindex="-1">
<h1>Sign-in failed</h1>
<p class="error" role="alert">{escape(message)}</p>
<p><a href="/login">Back to sign-in</a></p>
</main>"""
    return _doc("Sign-in failed", body, "sso-error")


def forbidden_page(session: Session) -> str:
    body = f"""<main id="main" class="login" tabindex="-1">
<h1>403 — not for this session</h1>
<p>This page is for administrators. You are signed in as <strong>{escape(session.label)}</strong>,
an end user.</p>
<p><a href="/me">Go to My connections</a> or <a href="/login">sign in as an administrator</a>.</p>
</main>"""
    return _doc("Forbidden", body, "forbidden")
