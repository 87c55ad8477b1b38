"""The operator status page and its JSON API, on a listener of its own (`admin:` in the config).

    status.py   the snapshot: what this process knows (integrations, sinks, spool)
    auth.py     the admin token, login sessions and CSRF tokens
    page.py     the HTML (plain templates, every value escaped)
    confirm.py  the Confirm button: the SSRF-guarded request of `siemgate confirm`
    app.py      the Starlette app: routes and security headers
    server.py   its uvicorn server, started by `siemgate run`, `ingest` and `forward`
"""
