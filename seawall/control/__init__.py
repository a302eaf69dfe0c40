"""Operator actions over a Temporal client, written once for every door: the CLI, the HTTP API, the
demo and the benchmarks.

- ``recovery``: start a failover or failback (the id-conflict policy a parameter), approve, abort,
  clean up, extend a drill's TTL; commit, reprotect, clean up a lost drill by its run.
- ``replication``: protect, unprotect, replicate now, the status of many VMs.
- ``runs``: a plan's newest (or a given) run, whether it runs, its live progress, its memo.
- ``status``: replication status read from Temporal alone.
- ``keys``: rotate a kms:-keyed replica store's data key (direct to the store and KMS).
- ``errors``: the plain domain errors the actions raise; each door words them its own way (the API
  as problem+json 404/409, the CLI as one line and an exit code).

Reading and writing run reports is ``seawall.reports``.
"""
