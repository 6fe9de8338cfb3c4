"""Shared test configuration: hypothesis profiles and float64 defaults.

Profiles: ``ci`` (default; modest example counts, no deadline, derandomised so CI is
reproducible) and ``thorough`` (many examples, for local runs:
``HYPOTHESIS_PROFILE=thorough pytest``).
"""

import os

import torch
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_default_dtype(torch.float64)
