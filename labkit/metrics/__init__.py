"""Sample- and density-based distances with uncertainty.

Every metric returns an :class:`Estimate` ``(value, interval, n, method, stderr)``.
"""

from .estimate import Estimate

__all__ = ["Estimate"]
