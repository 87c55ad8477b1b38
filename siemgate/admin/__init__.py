"""The operator status page and its JSON API, on a listener of its own (`admin:` in the config).

    sources.py  the Protocols of what admin reads (the ingest, the forwarders) and calls (a link
                requester): admin imports neither ingest nor forwarders
    status.py   the snapshot: what this process knows (integrations, sinks, spool)
    auth.py     the admin token, login sessions and CSRF tokens
    page.py     the HTML (plain templates, every value escaped)
    confirm.py  the Confirm button: the SSRF-guarded request of `siemgate confirm`
    app.py      the Starlette app: routes and security headers
    server.py   its uvicorn server, started for `siemgate run`, `ingest` and `forward` by the
                composition root (siemgate.serve)
"""
