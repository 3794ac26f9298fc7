"""The fault row of the OpenAI-compatible vendors (Groq, Together): a 429 or 5xx burst on
every endpoint their plugin calls, as for the other providers (test_provider_faults.py).
Their crash rows are in test_crashes.py; the rest of the fault matrix runs the four
providers only (RELIABILITY.md says which cells the vendors have)."""

from __future__ import annotations

import pytest

from harness import VENDORS
from test_provider_faults import burst


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("vendor", VENDORS)
def test_a_burst_on_every_vendor_endpoint_is_ridden_out_without_duplicates(make_lane, vendor, status):
    burst(make_lane, vendor, status)
