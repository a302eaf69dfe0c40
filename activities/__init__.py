"""Every side effect lives here: small, idempotent, retryable, heartbeating when long.

Activities are thin: they resolve the site's adapter at the worker (``seawall.sites.registry``) and
call its verbs, or ``seawall.blockstore`` for a VM's replica; none of them branches on a site's kind.
"""
