"""Exact linear-region and decision-boundary counts of ReLU networks.

A ReLU MLP (``torch.nn.Sequential`` of ``Linear``/``ReLU``, or a list of ``(W, b)``) is a
tropical rational function ``F - G`` (Zhang, Naitzat & Lim 2018, arXiv:1805.07091). labkit
counts its linear regions and the affine pieces of a binary classifier's decision boundary
(Piwek, Klukowski & Hu 2023, arXiv:2306.08805) exactly, two independent ways: LP enumeration of
activation regions (any input dimension) and polygon geometry of ``F - G`` (input dimension 2);
plus a sampling lower bound and the exact Lipschitz constant over a box.
"""

from ._geometry import Box, ExactCountLimitError, as_box
from .boundary import BoundaryCount, count_boundary_pieces
from .counting import RegionCount, count_linear_regions
from .lipschitz import LipschitzResult, lipschitz_constant
from .network import ReLUNetwork, as_network, binary_network
from .polynomial import MaxPlusPolynomial
from .rational import TropicalRational, tropical_form
from .regions import ActivationRegion, RegionEnumeration, enumerate_regions
from .sampling import SampleBound, sample_lower_bound

__all__ = ["count_linear_regions", "count_boundary_pieces", "sample_lower_bound",
           "lipschitz_constant", "tropical_form", "enumerate_regions", "as_network",
           "binary_network", "as_box", "Box", "ReLUNetwork", "MaxPlusPolynomial",
           "TropicalRational", "RegionCount", "BoundaryCount", "SampleBound", "LipschitzResult",
           "ActivationRegion", "RegionEnumeration", "ExactCountLimitError"]
