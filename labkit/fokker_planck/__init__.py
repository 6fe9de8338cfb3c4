"""The Fokker–Planck view of score-based samplers (issue #5).

Controlled wrong scores (wrappers over any denoiser), the score Fokker–Planck residual by
autograd, and 1-D and 2-D grid solvers that propagate the exact marginals of the probability-
flow ODE (continuity equation) and of the reverse SDE (Fokker–Planck equation) for any score
field. Fokker–Planck-regularised training lives in :mod:`labkit.nets` (``TrainConfig.fp_weight``,
:func:`labkit.nets.fp_penalty`). See docs/ode-sde-gap.md.
"""

from .grid1d import GridMarginals, continuity_1d, fokker_planck_1d
from .grid2d import continuity_2d, fokker_planck_2d
from .residual import fp_residual, fp_residual_norm
from .wrong_scores import (BandLimited, DivergenceFreePerturbation, GradientPerturbation,
                           LowRankPerturbation, OtherDistributionScore, Potential,
                           RotationalPerturbation, SigmaBand, WrongScore, gaussian_bump,
                           quadratic_potential, score_error)

__all__ = ["WrongScore", "GradientPerturbation", "RotationalPerturbation",
           "DivergenceFreePerturbation", "LowRankPerturbation", "BandLimited", "SigmaBand",
           "OtherDistributionScore", "Potential", "gaussian_bump", "quadratic_potential",
           "score_error", "fp_residual", "fp_residual_norm", "GridMarginals", "continuity_1d",
           "fokker_planck_1d", "continuity_2d", "fokker_planck_2d"]
