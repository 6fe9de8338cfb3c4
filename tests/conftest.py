"""Shared test configuration: hypothesis profiles.

Profiles: ``ci`` (default; modest example counts, no deadline, derandomised so CI is
reproducible) and ``thorough`` (many examples, for local runs:
``HYPOTHESIS_PROFILE=thorough pytest``).
"""

import os

import torch
from hypothesis import HealthCheck, settings

# xdist runs one worker per core; torch's intra-op threads on top would oversubscribe the CPU.
torch.set_num_threads(1)

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

