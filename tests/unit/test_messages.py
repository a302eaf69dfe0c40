from __future__ import annotations

import pytest
from pydantic import ValidationError
from temporalio.contrib.pydantic import pydantic_data_converter

from seawall.contract.messages import ProbeSiteInput, SiteProbe


@pytest.mark.parametrize("bad", ["", "Primary", "has space", "-lead", "x" * 64])
def test_probe_input_rejects_names_that_are_not_site_names(bad: str) -> None:
    with pytest.raises(ValidationError):
        ProbeSiteInput(site=bad)


def test_messages_round_trip_through_the_pydantic_converter() -> None:
    conv = pydantic_data_converter.payload_converter
    probe = SiteProbe(site="dr", kind="vsphere", reachable=True, detail="ok", elapsed_ms=3, worker="1@h")
    inp = ProbeSiteInput(site="dr")
    payloads = conv.to_payloads([inp, probe])
    back = conv.from_payloads(payloads, [ProbeSiteInput, SiteProbe])
    assert back == [inp, probe]
    # What a person types in the UI's Start Workflow form decodes to the same input.
    assert payloads[0].data == b'{"site":"dr"}'
