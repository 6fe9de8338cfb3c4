"""Options of ``labkit.sample``: per-sample generators, denoise_to_zero, callback/trajectory,
progress, error messages, ``multistep_order`` (lower_order_final), and the docs example."""

import inspect
import runpy
from pathlib import Path

import pytest
import torch

import labkit
from labkit.solvers import sample
from labkit.solvers._noise import check_generators, standard_normal
from labkit.solvers.base import multistep_order
from labkit.solvers.euler_ancestral import EulerAncestral
from labkit.solvers.euler_maruyama import EulerMaruyama

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
TARGET = labkit.GaussianMixture(torch.tensor([[-1.0, 0.5], [1.0, -0.5]]), torch.tensor([0.2, 0.4]))
SIGMAS = torch.tensor([10.0, 3.0, 1.0, 0.3, 0.1], dtype=torch.float64)   # ends above 0
SIGMAS0 = torch.tensor([10.0, 3.0, 1.0, 0.3, 0.0], dtype=torch.float64)  # ends at 0
# Stochastic solvers that draw through standard_normal with a per-sample list (instances, so
# the test does not depend on names being registered).
STOCHASTIC = [EulerAncestral, EulerMaruyama, lambda: labkit.solvers.Heun(s_churn=2.0)]


def _x(n, seed=0):
    return 10.0 * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed),
                              dtype=torch.float64)


def _gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


# ---------------------------------------------------------------------------------- per-sample seeds
@pytest.mark.parametrize("make", STOCHASTIC)
def test_per_sample_generators_make_rows_independent_of_the_batch(make):
    """Row j depends only on generator[j]: same row alone, in a batch of 5, at position 0 or 3."""
    x1 = _x(1, seed=7)
    alone, _ = sample(TARGET, x1, SIGMAS, solver=make(), generator=_gens([42]))
    x5 = torch.cat([_x(3, seed=1), x1, _x(1, seed=2)])           # x1 at position 3
    batch, _ = sample(TARGET, x5, SIGMAS, solver=make(), generator=_gens([1, 2, 3, 42, 5]))
    assert torch.equal(batch[3], alone[0])
    x5b = torch.cat([x1, _x(4, seed=3)])                          # x1 at position 0
    first, _ = sample(TARGET, x5b, SIGMAS, solver=make(), generator=_gens([42, 9, 8, 7, 6]))
    assert torch.equal(first[0], alone[0])
    # Negative control: another seed for that row changes it (the generator is really used).
    other, _ = sample(TARGET, x1, SIGMAS, solver=make(), generator=_gens([43]))
    assert not torch.equal(other, alone)


def test_standard_normal_rows_follow_their_generators():
    x = torch.zeros(3, 2, 2, dtype=torch.float32)
    z = standard_normal(x, _gens([5, 6, 5]))
    assert z.shape == x.shape and z.dtype == torch.float32
    assert torch.equal(z[0], z[2]) and not torch.equal(z[0], z[1])
    assert torch.equal(z[1], torch.randn(2, 2, generator=torch.Generator().manual_seed(6)))


def test_generator_list_errors():
    x = _x(3)
    with pytest.raises(ValueError, match="one generator per sample, got 2 generators for a "
                                         "batch of 3"):
        sample(TARGET, x, SIGMAS, solver="euler_ancestral", generator=_gens([1, 2]))
    with pytest.raises(TypeError, match="list holds other objects"):
        sample(TARGET, x, SIGMAS, solver="euler_ancestral",
               generator=[torch.Generator(), 3, torch.Generator()])
    with pytest.raises(TypeError, match="got int"):
        sample(TARGET, x, SIGMAS, solver="euler_ancestral", generator=123)


def test_generator_on_the_wrong_device():
    """A CPU generator with x on another device ("meta": no GPU needed) is refused, naming both
    devices and the fix; one bad generator in a list is enough."""
    x = torch.empty(2, 3, device="meta")
    msg = r"generator is on device 'cpu' but x is on 'meta'.*torch.Generator\(device='meta'\)"
    with pytest.raises(ValueError, match=msg):
        check_generators(torch.Generator(), x)
    with pytest.raises(ValueError, match=msg):
        check_generators(_gens([0, 1]), x)
    check_generators(torch.Generator(), torch.empty(2, 3))           # same device: fine
    check_generators(None, x)


# ---------------------------------------------------------------------------------- denoise_to_zero
class Counting:
    def __init__(self, target):
        self.target, self.calls = target, []

    def __call__(self, x, sigma):
        self.calls.append(float(sigma[0]))
        return self.target(x, sigma)


@pytest.mark.parametrize("solver", ["euler", "heun", "dpmpp_2m"])
def test_denoise_to_zero_above_zero(solver):
    x = _x(4)
    plain, info = sample(TARGET, x, SIGMAS, solver=solver, record_trajectory=True)
    model = Counting(TARGET)
    out, info_z = sample(model, x, SIGMAS, solver=solver, denoise_to_zero=True,
                         record_trajectory=True)
    assert info_z.nfe == info.nfe + 1 == len(model.calls)
    assert model.calls[-1] == float(SIGMAS[-1])                   # the extra call at sigma_N
    sigma_n = SIGMAS[-1] * torch.ones(4, dtype=torch.float64)
    assert torch.equal(out, TARGET(plain, sigma_n))               # x = D(x, sigma_N)
    assert len(info_z.trajectory) == len(SIGMAS) + 1              # recorded as one more state
    assert torch.equal(info_z.trajectory[-2], plain) and torch.equal(info_z.trajectory[-1], out)


@pytest.mark.parametrize("solver", ["euler", "heun", "dpmpp_2m"])
def test_denoise_to_zero_is_a_no_op_on_a_grid_ending_at_zero(solver):
    x = _x(4)
    plain, info = sample(TARGET, x, SIGMAS0, solver=solver, record_trajectory=True)
    out, info_z = sample(TARGET, x, SIGMAS0, solver=solver, denoise_to_zero=True,
                         record_trajectory=True)
    assert torch.equal(out, plain) and info_z.nfe == info.nfe
    assert len(info_z.trajectory) == len(SIGMAS0)


def test_denoise_to_zero_must_be_bool():
    with pytest.raises(TypeError, match="denoise_to_zero must be a bool"):
        sample(TARGET, _x(2), SIGMAS, solver="euler", denoise_to_zero=1)


# ---------------------------------------------------------------------------------- callback
def test_callback_and_trajectory():
    x = _x(3)
    seen = []
    out, info = sample(TARGET, x, SIGMAS, solver="heun", record_trajectory=True,
                       callback=seen.append)
    traj = info.trajectory
    assert len(traj) == len(SIGMAS)                               # N + 1
    assert traj[0] is x and torch.equal(traj[-1], out)
    assert [s["i"] for s in seen] == list(range(len(SIGMAS) - 1))
    for s, state in zip(seen, traj[1:]):
        assert torch.equal(s["x"], state)
        assert float(s["sigma"]) == float(SIGMAS[s["i"]])
        assert float(s["sigma_next"]) == float(SIGMAS[s["i"] + 1])
    # Each recorded state is the solver's own step from the previous one.
    again, _ = sample(TARGET, traj[1], SIGMAS[1:], solver="heun")
    assert torch.allclose(again, out, rtol=0, atol=1e-12)
    _, info_off = sample(TARGET, x, SIGMAS, solver="heun")
    assert info_off.trajectory == []


def test_progress_runs(capsys):
    out, info = sample(TARGET, _x(2), SIGMAS, solver="euler", progress=True)
    plain, _ = sample(TARGET, _x(2), SIGMAS, solver="euler")
    assert torch.equal(out, plain) and info.nfe == len(SIGMAS) - 1
    assert "euler" in capsys.readouterr().err                     # the bar is labelled


# ---------------------------------------------------------------------------------- errors
def test_unknown_solver_and_option():
    with pytest.raises(ValueError, match=r"solver must be one of \[.*'euler'.*\], got 'eulr'"):
        sample(TARGET, _x(2), SIGMAS, solver="eulr")
    with pytest.raises(TypeError, match=r"solver 'euler' got unknown options: \['s_chrn'\]"):
        sample(TARGET, _x(2), SIGMAS, solver="euler", s_chrn=1.0)
    with pytest.raises(TypeError, match="options can only be given with a solver name"):
        sample(TARGET, _x(2), SIGMAS, solver=labkit.solvers.Euler(), s_churn=1.0)
    with pytest.raises(TypeError, match="solver must be a solver name or a Solver instance"):
        sample(TARGET, _x(2), SIGMAS, solver=3)


def test_denoiser_with_the_wrong_shape():
    with pytest.raises(ValueError, match=r"denoiser must return a tensor of the input's shape "
                                         r"\(2, 2\), got \(2, 1\)"):
        sample(lambda x, s: x[:, :1], _x(2), SIGMAS, solver="euler")
    with pytest.raises(ValueError, match="got list"):
        sample(lambda x, s: [0.0], _x(2), SIGMAS, solver="euler")


def test_denoiser_returning_nan():
    """NaN from the denoiser propagates and is caught after the loop, with a message that
    names the solver and points at the denoiser (no per-call check: it would cost a sync)."""
    with pytest.raises(FloatingPointError, match=r"solver 'heun' produced NaN or inf; check "
                                                 r"the denoiser's output"):
        sample(lambda x, s: torch.full_like(x, float("nan")), _x(2), SIGMAS, solver="heun")


# ---------------------------------------------------------------------------------- multistep_order
def test_multistep_order_warm_up_and_lower_order_final():
    # Warm-up: min(order, history + 1).
    assert [multistep_order(3, h, i, 10, False) for i, h in enumerate(range(5))] == [1, 2, 3, 3, 3]
    # lower_order_final: also capped by the steps left, n_steps - i.
    n = 5
    assert [multistep_order(3, min(i, 3), i, n, True) for i in range(n)] == [1, 2, 3, 2, 1]
    assert [multistep_order(3, min(i, 3), i, n, False) for i in range(n)] == [1, 2, 3, 3, 3]
    # A 2-step grid with order 4: warm-up and final cap meet.
    assert [multistep_order(4, i, i, 2, True) for i in range(2)] == [1, 1]
    assert multistep_order(2, 0, 0, 1, True) == 1
    assert multistep_order(1, 5, 3, 4, True) == 1                 # never below 1


@pytest.mark.parametrize("cls_name", ["DPMpp2M", "LMS"])
def test_lower_order_final_changes_only_the_last_steps(cls_name):
    """With lower_order_final the trajectory is identical until the order cap bites."""
    cls = getattr(labkit.solvers, cls_name)
    if "lower_order_final" not in inspect.signature(cls.__init__).parameters:
        pytest.fail(f"{cls_name} must offer lower_order_final (house style for multistep)")
    x = _x(3)
    _, a = sample(TARGET, x, SIGMAS, solver=cls(), record_trajectory=True)
    _, b = sample(TARGET, x, SIGMAS, solver=cls(lower_order_final=True), record_trajectory=True)
    n = len(SIGMAS) - 1
    # dpmpp_2m (order 2) differs only on the last step; lms (order 4) from step n - 3 on
    # (q = min(4, i + 1) vs min(., n - i): equal for i + 1 <= n - i, i.e. i <= 1 here).
    first_diff = n - 1 if cls_name == "DPMpp2M" else 2
    for k in range(first_diff + 1):
        assert torch.equal(a.trajectory[k], b.trajectory[k])
    assert not torch.equal(a.trajectory[-1], b.trajectory[-1])


# ---------------------------------------------------------------------------------- docs example
def test_property_test_your_solver_example(capsys):
    runpy.run_path(str(EXAMPLES / "property_test_your_solver.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "ralston: observed order" in out and "properties: ok" in out
