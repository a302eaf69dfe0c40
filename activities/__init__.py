"""Every side effect lives here: small, idempotent, retryable, heartbeating when long.

Activities are thin: they resolve the site and its credentials at the worker and call into
``seawall.blockstore`` and ``seawall.sites``.
"""
