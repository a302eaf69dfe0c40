"""The HTTP API: failovers, approvals and replication for runbook tools, chat-ops and incident systems.

``app.create_app`` builds it from one router per resource (``routers/``); ``auth`` reads the token
file, ``gate`` checks size and token before routing, ``deps`` holds what the routers share, ``audit``
writes the audit log, ``problems`` answers every error as problem+json. The actions themselves are
``seawall.control``'s, the same the CLI runs.
"""
