"""Custom search attributes, registered on the server by the lab (and by operators in production).

Import-light on purpose: workflows import it inside the sandbox.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

SA_PLAN = SearchAttributeKey.for_keyword("SeawallPlan")
SA_VM = SearchAttributeKey.for_keyword("SeawallVM")
SA_SITE = SearchAttributeKey.for_keyword("SeawallSite")
SA_MODE = SearchAttributeKey.for_keyword("SeawallMode")
SA_RUN = SearchAttributeKey.for_keyword("SeawallRun")
# The hashed Idempotency-Key an API-started run was started with: a retry finds its run by a
# visibility query for 24 hours, whatever runs of the plan came after it.
SA_REQUEST = SearchAttributeKey.for_keyword("SeawallRequest")
# The nonce of the signed intent a run was authorised by: a second run presenting it is a replay.
SA_INTENT = SearchAttributeKey.for_keyword("SeawallIntent")
SEARCH_ATTRIBUTES = (SA_PLAN, SA_VM, SA_SITE, SA_MODE, SA_RUN, SA_REQUEST, SA_INTENT)
