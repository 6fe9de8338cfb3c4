"""Tests of ``labkit.processes``: schedules, parameterisation conversions and model wrappers.

References are written here independently of the library: each process's own literature form
``x_t = a(t) x0 + b(t) eps`` (differentiated with autograd), and an inline Gaussian target
``N(m, c^2)`` per coordinate whose posterior means follow from Gaussian conditioning in that form.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from labkit.processes import (EDM, PREDICTIONS, PROCESSES, VE, VP, CosineVP, RectifiedFlow,
                              as_denoiser, as_model, convert, get_process, prediction_from_x0,
                              x0_from)

F64 = torch.float64
NAMES = list(PROCESSES)
MEAN, STD = 0.7, 1.3  # the inline Gaussian target N(m, c^2), independently in every coordinate


# ---------------------------------------------------------------- independent references
def _vp_exponent(t):
    return 0.1 * t + 0.5 * (20.0 - 0.1) * t ** 2


def _cosine_alpha_bar(t, s=0.008):
    def f(u):
        return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return f(t) / f(torch.zeros_like(t))


# MATH_NOTES table (plus the cosine row of Nichol & Dhariwal): name -> (s(t), sigma(t)).
TABLE = {
    "ve": (lambda t: torch.ones_like(t), lambda t: 0.002 * (80 / 0.002) ** t),
    "vp": (lambda t: 1 / torch.sqrt(torch.exp(_vp_exponent(t))),
           lambda t: torch.sqrt(torch.exp(_vp_exponent(t)) - 1)),
    "cosine": (lambda t: torch.sqrt(_cosine_alpha_bar(t)),
               lambda t: torch.sqrt((1 - _cosine_alpha_bar(t)) / _cosine_alpha_bar(t))),
    "edm": (lambda t: torch.ones_like(t), lambda t: t.clone()),
    "rectified_flow": (lambda t: 1 - t, lambda t: t / (1 - t)),
}

# Each paper's noising x_t = a x0 + b eps: name -> (a(t), b(t)).
LITERATURE = {
    "ve": (lambda t: torch.ones_like(t), lambda t: 0.002 * (80 / 0.002) ** t),
    "vp": (lambda t: torch.sqrt(torch.exp(-_vp_exponent(t))),
           lambda t: torch.sqrt(1 - torch.exp(-_vp_exponent(t)))),
    "cosine": (lambda t: torch.sqrt(_cosine_alpha_bar(t)),
               lambda t: torch.sqrt(1 - _cosine_alpha_bar(t))),
    "edm": (lambda t: torch.ones_like(t), lambda t: t.clone()),
    "rectified_flow": (lambda t: 1 - t, lambda t: t.clone()),
}


def _with_derivative(fn, t):
    """``fn(t)`` and ``dfn/dt`` (elementwise) by autograd."""
    t = t.detach().clone().requires_grad_(True)
    value = fn(t)
    if not value.requires_grad:  # a constant coefficient
        return value.detach(), torch.zeros_like(value)
    (grad,) = torch.autograd.grad(value.sum(), t)
    return value.detach(), grad


def _times(name, n=7, dtype=F64):
    """Interior times spanning the default range of process ``name``."""
    p = PROCESSES[name]()
    u = torch.linspace(0.05, 0.95, n, dtype=dtype)
    return p.t_min + u * (p.t_max - p.t_min)


def gaussian_denoiser(x, sigma):
    """EDM denoiser of N(m, c^2): ``m + c^2 / (c^2 + sigma^2) (x - m)``."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    sigma = sigma.reshape(sigma.shape + (1,) * (x.ndim - sigma.ndim))
    return MEAN + STD ** 2 / (STD ** 2 + sigma ** 2) * (x - MEAN)


def literature_model(name, kind):
    """Exact ``model(x_t, t)`` of kind ``kind`` for the Gaussian, by conditioning in (a, b) form."""
    alpha_fn, beta_fn = LITERATURE[name]

    def model(x_t, t):
        t = torch.as_tensor(t, dtype=x_t.dtype).expand(x_t.shape[0])
        (a, da), (b, db) = _with_derivative(alpha_fn, t), _with_derivative(beta_fn, t)
        a, da, b, db = (c.reshape(-1, *([1] * (x_t.ndim - 1))) for c in (a, da, b, db))
        var = a ** 2 * STD ** 2 + b ** 2  # Var(x_t) per coordinate
        centred = x_t - a * MEAN
        mean_x0 = MEAN + a * STD ** 2 / var * centred
        mean_eps = b / var * centred
        return {"x0": mean_x0, "eps": mean_eps, "score": -centred / var,
                # Salimans & Ho's v of the VP process with this log-SNR (= a eps - b x0 for VP).
                "v": (a * mean_eps - b * mean_x0) / torch.sqrt(a ** 2 + b ** 2),
                # E[d x_t / dt | x_t] for x_t = a x0 + b eps.
                "velocity": da * mean_x0 + db * mean_eps}[kind]
    return model


def _batch(n=7, d=2, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64).to(dtype) * 2


# ---------------------------------------------------------------- schedules
@pytest.mark.parametrize("name", NAMES)
def test_schedule_matches_math_notes_table(name):
    p, t = get_process(name), _times(name)
    s_ref, sigma_ref = (f(t) for f in TABLE[name])
    # Equivalent float64 formulas; at t >= 0.05 of the range the reference's cancellation in
    # 1 - alpha_bar costs at most ~2 digits, so 1e-12 leaves a margin of ~100 ulps.
    torch.testing.assert_close(p.s(t), s_ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(p.sigma(t), sigma_ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_derivatives_match_autograd(name):
    p, t = get_process(name), _times(name)
    (_, ds), (_, dsigma) = (_with_derivative(f, t) for f in TABLE[name])
    # Closed forms against autograd of independent formulas: rounding only (cancellation as above).
    torch.testing.assert_close(p.ds_dt(t), ds, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(p.dsigma_dt(t), dsigma, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_log_snr_and_default_range(name):
    p, t = get_process(name), _times(name)
    # Pure rounding: three equivalent expressions of the same float64 quantity.
    torch.testing.assert_close(p.log_snr(t), -torch.log(p.sigma(t)), rtol=1e-14, atol=0)
    torch.testing.assert_close(p.log_snr(t), torch.log(p.alpha(t) / p.sigma_vp(t)),
                               rtol=1e-12, atol=1e-14)
    assert p.sigma_min == float(p.sigma(p.t_min)) and p.sigma_max == float(p.sigma(p.t_max))
    assert 0 < p.sigma_min < p.sigma_max < math.inf


def test_default_ranges_match_the_papers():
    # VE spans exactly [sigma_min, sigma_max]; EDM Table 1 quotes VP's sigma_max as about 152.
    assert (VE().sigma_min, VE().sigma_max) == (0.002, 80.0)
    assert (EDM().sigma_min, EDM().sigma_max) == (0.002, 80.0)
    torch.testing.assert_close(VP().sigma_max, math.sqrt(math.exp(10.05) - 1), rtol=1e-14, atol=0)


@given(name=st.sampled_from(NAMES), u=st.floats(0.0, 1.0))
def test_t_of_sigma_inverts_sigma(name, u):
    p = get_process(name)
    t = torch.tensor(p.t_min + u * (p.t_max - p.t_min), dtype=F64)
    # A few ulps of t (absolute 1e-15 covers t ~ 0 for EDM/RF where the relative error is exact).
    torch.testing.assert_close(p.t_of_sigma(p.sigma(t)), t, rtol=1e-12, atol=1e-15)


@given(name=st.sampled_from(NAMES), log10_sigma=st.floats(-4.0, 4.0))
def test_sigma_inverts_t_of_sigma_beyond_the_range(name, log10_sigma):
    p = get_process(name)
    sigma = torch.tensor(10.0 ** log10_sigma, dtype=F64)
    # Near t = 1 the cosine schedule's cos(a) ~ 1e-4 costs 4 digits: rtol 1e-10 leaves margin.
    torch.testing.assert_close(p.sigma(p.t_of_sigma(sigma)), sigma, rtol=1e-10, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_add_noise_matches_the_literature_form(name):
    p, t = get_process(name), _times(name)
    x0, eps = _batch(seed=1), _batch(seed=2)
    a, b = (f(t)[:, None] for f in LITERATURE[name])
    x_t = p.add_noise(x0, t, eps)
    # Rounding and the reference's cancellation in 1 - alpha_bar (see the table test).
    torch.testing.assert_close(x_t, a * x0 + b * eps, rtol=1e-12, atol=1e-12)
    x_hat, sigma = p.to_edm(x_t, t)
    torch.testing.assert_close(x_hat, x0 + sigma[:, None] * eps, rtol=1e-12, atol=1e-12)
    back, t_back = p.from_edm(x_hat, sigma)
    torch.testing.assert_close(back, x_t, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(t_back, t, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["cosine", "rectified_flow"])
def test_add_noise_at_pure_noise_end(name):
    x0, eps = _batch(seed=1), _batch(seed=2)
    # At t = 1, alpha_bar = 0: x_t is eps up to the rounding of cos(pi/2) ~ 6e-17.
    torch.testing.assert_close(get_process(name).add_noise(x0, 1.0, eps), eps, rtol=0, atol=1e-15)


# ---------------------------------------------------------------- conversions
@given(name=st.sampled_from(NAMES), kinds=st.tuples(*[st.sampled_from(PREDICTIONS)] * 2),
       u=st.floats(0.0, 1.0), seed=st.integers(0, 2 ** 16))
def test_conversion_round_trips(name, kinds, u, seed):
    p = get_process(name)
    t = p.t_min + u * (p.t_max - p.t_min)
    x0, x_t = _batch(seed=seed), _batch(seed=seed + 1) * max(1.0, float(p.sigma_vp(t)))
    kind_a, kind_b = kinds
    pred_a = prediction_from_x0(x0, kind_a, x_t, t, p)
    # Each kind is affine in x0 with coefficients up to 1/sigma_min ~ 1e3: a few ulps times that.
    torch.testing.assert_close(x0_from(pred_a, kind_a, x_t, t, p), x0, rtol=1e-9, atol=1e-9)
    pred_b = convert(pred_a, from_=kind_a, to=kind_b, x_t=x_t, t=t, process=p)
    back = convert(pred_b, from_=kind_b, to=kind_a, x_t=x_t, t=t, process=p)
    scale = float(pred_a.abs().max())
    torch.testing.assert_close(back, pred_a, rtol=1e-8, atol=1e-9 * scale)


def _assert_predictions_match_literature(to_prediction, name, kind):
    p, t = get_process(name), _times(name)
    x_t = _batch(seed=3) * p.sigma_vp(t)[:, None] + p.alpha(t)[:, None] * MEAN
    x_hat, sigma = p.to_edm(x_t, t)
    got = to_prediction(gaussian_denoiser(x_hat, sigma), kind, x_t, t, p)
    # Two exact float64 routes; with |x_t| up to ~1e3 (sigma_max) rounding reaches ~1e-13.
    torch.testing.assert_close(got, literature_model(name, kind)(x_t, t), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", PREDICTIONS)
@pytest.mark.parametrize("name", NAMES)
def test_prediction_from_x0_matches_gaussian_conditioning(name, kind):
    _assert_predictions_match_literature(prediction_from_x0, name, kind)


@pytest.mark.parametrize(("kind", "planted"), [
    ("score", lambda x0, k, x_t, t, p: prediction_from_x0(x0, k, x_t, t, p) * p.s(t)[:, None]),
    ("eps", lambda x0, k, x_t, t, p: -prediction_from_x0(x0, k, x_t, t, p)),
    ("v", lambda x0, k, x_t, t, p: prediction_from_x0(x0, "eps", x_t, t, p) * p.alpha(t)[:, None]
     - p.sigma_vp(t)[:, None] * x0),  # the unnormalised alpha eps - sigma_vp x0
])
def test_negative_control_planted_conversion_is_detected(kind, planted):
    # score: forgetting the 1/s of d x_hat / d x_t; eps: a sign; v: no VP normalisation for RF.
    name = "rectified_flow"
    with pytest.raises(AssertionError):
        _assert_predictions_match_literature(planted, name, kind)


def _gaussian_flow_velocity_fd(p, x_t, t, h=1e-5):
    """Central difference in t of the exact Gaussian PF-ODE trajectory through (x_t, t)."""
    x_hat, sigma = p.to_edm(x_t, t)

    def state(tau):
        factor = torch.sqrt((STD ** 2 + p.sigma(tau) ** 2) / (STD ** 2 + sigma ** 2))
        return p.s(tau)[:, None] * (MEAN + (x_hat - MEAN) * factor[:, None])
    step = h * torch.clamp(t, min=1.0)
    return (state(t + step) - state(t - step)) / (2 * step[:, None])


def _assert_velocity_is_the_gaussian_flow(to_prediction, name):
    p, t = get_process(name), _times(name)
    x_t = _batch(seed=4) * p.sigma_vp(t)[:, None]
    x_hat, sigma = p.to_edm(x_t, t)
    velocity = to_prediction(gaussian_denoiser(x_hat, sigma), "velocity", x_t, t, p)
    # Central differences, h = 1e-5: truncation ~h^2 (relative < 1e-8), rounding ~1e-16/h.
    torch.testing.assert_close(velocity, _gaussian_flow_velocity_fd(p, x_t, t), rtol=1e-6,
                               atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_velocity_is_the_derivative_of_the_exact_gaussian_flow(name):
    _assert_velocity_is_the_gaussian_flow(prediction_from_x0, name)


def test_negative_control_velocity_without_scaling_term_is_detected():
    def planted(x0, kind, x_t, t, p):  # drops (s'/s) x_t, invisible only when s is constant
        full = prediction_from_x0(x0, kind, x_t, t, p)
        return full - (p.ds_dt(t) / p.s(t))[:, None] * x_t
    with pytest.raises(AssertionError):
        _assert_velocity_is_the_gaussian_flow(planted, "vp")


@pytest.mark.parametrize("name", NAMES)
def test_velocity_is_the_general_pf_ode(name):
    p, t = get_process(name), _times(name)
    x_t = _batch(seed=5)
    x_hat, sigma = p.to_edm(x_t, t)
    d = gaussian_denoiser(x_hat, sigma)
    score = prediction_from_x0(d, "score", x_t, t, p)
    s, ds, dsigma = p.s(t)[:, None], p.ds_dt(t)[:, None], p.dsigma_dt(t)[:, None]
    expected = ds / s * x_t - s ** 2 * dsigma * sigma[:, None] * score
    # dx/dt = (s'/s) x - s^2 sigma' sigma grad log p_t(x); two float64 routes, rounding only.
    torch.testing.assert_close(prediction_from_x0(d, "velocity", x_t, t, p), expected,
                               rtol=1e-10, atol=1e-10)


def test_edm_velocity_is_the_math_notes_ode_and_rf_velocity_is_eps_minus_x0():
    x, sigma = _batch(seed=6), torch.linspace(0.1, 5.0, 7, dtype=F64)
    d = gaussian_denoiser(x, sigma)
    # MATH_NOTES: dx_hat/dsigma = (x_hat - D)/sigma; one division each way, so rounding only.
    torch.testing.assert_close(prediction_from_x0(d, "velocity", x, sigma, "edm"),
                               (x - d) / sigma[:, None], rtol=1e-13, atol=0)
    x0, eps, t = _batch(seed=7), _batch(seed=8), torch.full((7,), 0.3, dtype=F64)
    x_t = RectifiedFlow().add_noise(x0, t, eps)
    # With the point posterior D = x0 the conditional flow-matching target eps - x0 is exact.
    torch.testing.assert_close(prediction_from_x0(x0, "velocity", x_t, t, "rectified_flow"),
                               eps - x0, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- wrappers
def _sigmas(p, n=7):
    return torch.logspace(math.log10(p.sigma_min), math.log10(p.sigma_max), n, dtype=F64)


def _assert_recovers_gaussian_denoiser(make_denoiser, name, kind):
    p = get_process(name)
    x, sigma = _batch(seed=9) * torch.sqrt(1 + _sigmas(p) ** 2)[:, None], _sigmas(p)
    got = make_denoiser(literature_model(name, kind), p, kind)(x, sigma)
    # float64 end to end; x ~ sigma_max ~ 1e3 loses 3 digits in x - sigma eps (~1e-13 absolute).
    torch.testing.assert_close(got, gaussian_denoiser(x, sigma), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", PREDICTIONS)
@pytest.mark.parametrize("name", NAMES)
def test_as_denoiser_recovers_the_exact_denoiser(name, kind):
    _assert_recovers_gaussian_denoiser(as_denoiser, name, kind)


@pytest.mark.parametrize("kind", PREDICTIONS)
@pytest.mark.parametrize("name", NAMES)
def test_as_model_then_as_denoiser_round_trip(name, kind):
    p = get_process(name)
    model = as_model(gaussian_denoiser, p, prediction=kind)
    x, sigma = _batch(seed=10), _sigmas(p)
    # Same conditioning as above; the exact denoiser is recovered to float64 precision.
    torch.testing.assert_close(as_denoiser(model, p, prediction=kind)(x, sigma),
                               gaussian_denoiser(x, sigma), rtol=1e-9, atol=1e-9)
    t = p.t_of_sigma(sigma)
    torch.testing.assert_close(model(p.from_edm(x, sigma)[0], t),
                               literature_model(name, kind)(p.from_edm(x, sigma)[0], t),
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("planted", [
    lambda model, p, kind: as_denoiser(model, p, prediction="v"),  # eps model declared as v
    lambda model, p, kind: as_denoiser(lambda x, t: model(x, t) * p.s(t)[:, None], p, kind),
])
def test_negative_control_wrong_wrapper_is_detected(planted):
    # A mislabelled kind or a stray scaling of the model output must break recovery.
    with pytest.raises(AssertionError):
        _assert_recovers_gaussian_denoiser(planted, "vp", "eps")


def test_as_denoiser_time_inputs_and_image_batches():
    p = VP()
    eps_model = literature_model("vp", "eps")
    x, sigma = _batch(n=4, d=6, seed=11).reshape(4, 2, 3), _sigmas(p, 4)
    expected = gaussian_denoiser(x, sigma)
    by_sigma = as_denoiser(lambda x_t, s: eps_model(x_t, p.t_of_sigma(s)), p, time="sigma")
    by_step = as_denoiser(lambda x_t, k: eps_model(x_t, k / 999), p, time=lambda t: 999 * t)
    # Same float64 computation with one extra t <-> sigma round trip (a few ulps of t).
    for denoiser in (as_denoiser(eps_model, p), by_sigma, by_step):
        torch.testing.assert_close(denoiser(x, sigma), expected, rtol=1e-9, atol=1e-9)
    model = as_model(gaussian_denoiser, p, time="sigma")
    x_t = p.from_edm(x, sigma)[0]
    torch.testing.assert_close(model(x_t, sigma), eps_model(x_t, p.t_of_sigma(sigma)),
                               rtol=1e-9, atol=1e-9)


def test_as_denoiser_returns_input_at_sigma_zero_without_calling_model():
    calls = []

    def model(x_t, t):
        calls.append(t.clone())
        return literature_model("ve", "eps")(x_t, t)
    x, sigma = _batch(n=3, seed=12), torch.tensor([0.0, 1.0, 0.0], dtype=F64)
    out = as_denoiser(model, VE())(x, sigma)
    # Exact: sigma = 0 rows are copied; the other row is a float64 conversion (rounding only).
    torch.testing.assert_close(out[[0, 2]], x[[0, 2]], rtol=0, atol=0)
    torch.testing.assert_close(out[1], gaussian_denoiser(x[1:2], 1.0)[0], rtol=1e-12, atol=1e-12)
    assert len(calls) == 1 and calls[0].shape == (1,)


# ---------------------------------------------------------------- dtypes
@pytest.mark.parametrize("kind", PREDICTIONS)
@pytest.mark.parametrize("name", NAMES)
def test_float32_agrees_with_float64(name, kind):
    p = get_process(name)
    x64, sigma64 = _batch(seed=13), torch.logspace(-1, 1, 7, dtype=F64)
    denoiser = as_denoiser(as_model(gaussian_denoiser, p, kind), p, kind)
    d32 = denoiser(x64.float(), sigma64.float())
    assert d32.dtype == torch.float32
    # ~100 float32 ulps (6e-8 each): the affine conversions amplify rounding by up to
    # 1 + sigma^2 ~ 1e2 on this grid (observed: below 5e-7).
    torch.testing.assert_close(d32.double(), denoiser(x64, sigma64), rtol=1e-5, atol=1e-5)
    t32 = p.t_of_sigma(sigma64.float())
    assert t32.dtype == p.sigma(t32).dtype == torch.float32
    assert p.s(0.5 * p.t_max).dtype == F64  # numbers give float64


def test_negative_control_float32_tolerance_can_fail():
    # The float32 tolerance above still sees a model fed x_hat instead of x_t = s(t) x_hat.
    p = VP()
    x, sigma = _batch(seed=13).float(), torch.logspace(-1, 1, 7).float()
    model = as_model(gaussian_denoiser, p, "eps")
    unscaled = as_denoiser(lambda x_t, t: model(x_t / p.s(t)[:, None], t), p, "eps")
    with pytest.raises(AssertionError):
        torch.testing.assert_close(unscaled(x, sigma), gaussian_denoiser(x, sigma), rtol=1e-5,
                                   atol=1e-5)


# ---------------------------------------------------------------- registry and bad input
def test_registry():
    assert set(PROCESSES) == {"ve", "vp", "cosine", "edm", "rectified_flow"}
    vp = VP()
    assert get_process(vp) is vp and isinstance(get_process("CoSiNe"), CosineVP)
    assert get_process("vp", beta_max=10.0).beta_max == 10.0


_X = torch.zeros(2, 3, dtype=F64)
_MODEL = as_model(gaussian_denoiser, "vp")


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: get_process("ddpm"), ValueError, "valid names: ve, vp, cosine, edm, rectified_flow"),
    (lambda: get_process(3), TypeError, "process must be a name"),
    (lambda: get_process(VP(), beta_max=3.0), ValueError, "only accepted with a process name"),
    (lambda: prediction_from_x0(_X, "noise", _X, 0.5, "vp"), ValueError,
     "kind must be one of 'x0', 'eps', 'score', 'v', 'velocity'"),
    (lambda: convert(_X, from_="eps", to="flow", x_t=_X, t=0.5, process="vp"), ValueError,
     "to must be one of"),
    (lambda: as_denoiser(_MODEL, "vp", prediction="epsilon"), ValueError, "prediction must be"),
    (lambda: as_denoiser(_MODEL, "vp", time="tau"), ValueError, "time must be one of 't', 'sigma'"),
    (lambda: as_denoiser(3, "vp"), TypeError, "model must be callable"),
    (lambda: VP().t_of_sigma(-1.0), ValueError, "sigma must be >= 0"),
    (lambda: VE().t_of_sigma(0.0), ValueError, "sigma must be > 0 for VE"),
    (lambda: VP().sigma(float("nan")), ValueError, "t must be finite"),
    (lambda: VP().s(torch.tensor([0.5, math.nan])), ValueError, "t must be finite"),
    (lambda: VP().sigma(-0.1), ValueError, r"t must lie in \[0.0, inf\)"),
    (lambda: RectifiedFlow().sigma(1.0), ValueError, r"t must lie in \[0.0, 1.0\)"),
    (lambda: as_denoiser(_MODEL, "vp")(_X, -1.0), ValueError, "sigma must be finite and >= 0"),
    (lambda: as_denoiser(_MODEL, "vp")(_X, torch.tensor([1.0, math.nan])), ValueError,
     "sigma must be finite"),
    (lambda: as_denoiser(lambda x, t: x[:1], "vp")(_X, 1.0), ValueError, "model output must"),
    (lambda: prediction_from_x0(_X, "eps", _X, 0.0, "vp"), ValueError, r"sigma\(t\) > 0"),
    (lambda: VP().add_noise(_X, 0.5, _X[:1]), ValueError, "eps must have the shape of x0"),
    (lambda: VP().to_edm(_X, torch.ones(3, dtype=F64) / 2), ValueError,
     r"t must be a scalar or have shape \(2,\)"),
    (lambda: VP().to_edm(_X.long(), 0.5), TypeError, "x_t must be a floating tensor"),
    (lambda: VP(beta_min=-1.0), ValueError, "beta_min must be finite and > 0"),
    (lambda: VP(beta_min="a"), TypeError, "beta_min must be a real number"),
    (lambda: VE(sigma_min=1.0, sigma_max=0.5), ValueError, "sigma_min must be < sigma_max"),
    (lambda: CosineVP(s=0.0), ValueError, "s must be finite and > 0"),
    (lambda: EDM(t_min=1.0, t_max=0.5), ValueError, "t_min < t_max"),
    (lambda: CosineVP(t_max=1.0), ValueError, "t_max < 1.0"),
])
def test_bad_input_is_rejected(call, error, match):
    with pytest.raises(error, match=match):
        call()
