"""The authorization server's HTML: the login and consent form, and the error page shown when
the request cannot be redirected back to the app. Plain HTML, no script; every value escaped."""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse

HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
STYLE = ("body{font-family:sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}"
         "label{display:block;margin:.8rem 0 .2rem}input[type=text],input[type=password]{width:100%}"
         ".error{color:#a00}ul{font-family:monospace}button{margin:1rem .5rem 0 0}")


def _page(title: str, body: str, status: int) -> HTMLResponse:
    html = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width"><style>{STYLE}</style></head>'
            f"<body>{body}</body></html>")
    return HTMLResponse(html, status, headers=HEADERS)


def error_page(message: str, status: int = 400) -> HTMLResponse:
    return _page("Authorization error", f"<h1>Authorization error</h1><p class=\"error\">{escape(message)}</p>"
                 "<p>The application's request is not valid; it was not sent back to the application.</p>", status)


def login_form(action: str, params: dict[str, str], client_name: str, scope: str, ask_patient: bool,
               error: str = "", username: str = "", patient: str = "", status: int = 200) -> HTMLResponse:
    """The form posts the authorization request back with the user's answer."""
    hidden = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in params.items())
    scopes = "".join(f"<li>{escape(s)}</li>" for s in scope.split())
    patient = ('<label for="patient">Patient id (practitioners: the patient to open)</label>'
               f'<input type="text" id="patient" name="patient" value="{escape(patient)}">'
               if ask_patient else "")
    problem = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = (f"<h1>Sign in</h1><p><strong>{escape(client_name)}</strong> asks for access:</p><ul>{scopes}</ul>"
            f'{problem}<form method="post" action="{escape(action)}">{hidden}'
            '<label for="username">Username</label>'
            f'<input type="text" id="username" name="username" value="{escape(username)}" autocomplete="username" required>'
            '<label for="password">Password</label>'
            '<input type="password" id="password" name="password" autocomplete="current-password" required>'
            f'{patient}<button type="submit" name="decision" value="allow">Allow</button>'
            '<button type="submit" name="decision" value="deny" formnovalidate>Deny</button></form>')
    return _page("Sign in", body, status)
