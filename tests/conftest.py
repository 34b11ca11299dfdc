"""Shared test configuration.

Hypothesis profiles: `fast` (default, for local runs) and `ci` (more examples); choose with
`HYPOTHESIS_PROFILE=ci`.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("fast", max_examples=100, deadline=None)
settings.register_profile(
    "ci", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))
