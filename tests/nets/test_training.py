"""Tests of labkit.nets.training: loss formulas, determinism, exact resume, autocast, compile,
DDP (gloo, 2 CPU processes), trained quality against an exact mixture denoiser, bad input."""

import os

import pytest
import torch
import torch.multiprocessing as mp

import labkit
from labkit.nets.mlp import mlp_denoiser
from labkit.nets.precond import EDMPrecond
from labkit.nets.training import (TrainConfig, edm_loss, load_checkpoint, loss_weight,
                                  sample_sigma, train)

SMALL = dict(hidden=16, depth=1, emb_dim=8)


def _model(seed=0, dim=2, **kw):
    torch.manual_seed(seed)
    return mlp_denoiser(dim, sigma_data=1.0, **{**SMALL, **kw})


def _data(n=64, dim=2, seed=1):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def _randomise_output(model):
    with torch.no_grad():
        model.net.out.weight.normal_(generator=torch.Generator().manual_seed(2))
    return model


# ------------------------------------------------------------------------------ loss
def test_loss_weights_formulas():
    s = torch.tensor([0.5, 2.0], dtype=torch.float64)
    torch.testing.assert_close(loss_weight(s, "edm", 0.5), (s**2 + 0.25) / (s * 0.5) ** 2)
    torch.testing.assert_close(loss_weight(s, "score", 0.5), 1 / s**2)
    torch.testing.assert_close(loss_weight(s, "uniform", 0.5), torch.ones(2, dtype=s.dtype))
    with pytest.raises(ValueError, match="weighting"):
        loss_weight(s, "snr", 0.5)


def test_edm_loss_matches_formula_and_score_weighting_is_dsm():
    model = _randomise_output(_model()).double()
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(6, 2, generator=g, dtype=torch.float64)
    sigma = torch.rand(6, generator=g, dtype=torch.float64) * 2 + 0.1
    eps = torch.randn(6, 2, generator=g, dtype=torch.float64)
    x = x0 + sigma[:, None] * eps
    with torch.no_grad():
        err = (model(x, sigma) - x0).square().mean(1)
        edm = edm_loss(model, x0, sigma, "edm", noise=eps)
        score = edm_loss(model, x0, sigma, "score", noise=eps)
        # DSM: sigma^2 ||s_theta(x) - (x0 - x)/sigma^2||^2 (Song's lambda = sigma^2).
        dsm = (sigma**2 * (model.score(x, sigma) - (x0 - x) / sigma[:, None] ** 2)
               .square().mean(1)).mean()
    # float64 throughout: only rounding differs between the two expressions.
    torch.testing.assert_close(edm, ((sigma**2 + 1) / sigma**2 * err).mean(), rtol=1e-12, atol=0)
    torch.testing.assert_close(score, dsm, rtol=1e-10, atol=0)


def test_sigma_distributions():
    g = torch.Generator().manual_seed(0)
    n = 20000
    ln = sample_sigma(n, TrainConfig(p_mean=-1.2, p_std=1.2), g).log()
    # Mean of n normals: standard error 1.2/sqrt(n) = 0.0085; allow 5 standard errors.
    assert abs(float(ln.mean()) + 1.2) < 5 * 1.2 / n**0.5
    lu = sample_sigma(n, TrainConfig(sigma_distribution="loguniform", sigma_min=0.01,
                                     sigma_max=100.0), g)
    assert float(lu.min()) >= 0.01 and float(lu.max()) <= 100.0
    # log-uniform on [log .01, log 100]: mean 0, sd 9.21/sqrt(12) = 2.66; 5 standard errors.
    assert abs(float(lu.log().mean())) < 5 * 2.66 / n**0.5


# ------------------------------------------------------------------------------ config
@pytest.mark.parametrize("kwargs, err, name", [
    (dict(weighting="snr"), ValueError, "weighting"),
    (dict(sigma_distribution="normal"), ValueError, "sigma_distribution"),
    (dict(steps=0), ValueError, "steps"),
    (dict(lr=-1.0), ValueError, "lr"),
    (dict(ema_decay=1.0), ValueError, "ema_decay"),
    (dict(sigma_min=2.0, sigma_max=1.0), ValueError, "sigma_min"),
    (dict(autocast="fp8"), ValueError, "autocast"),
    (dict(grad_clip=0.0), ValueError, "grad_clip"),
    (dict(compile=1), TypeError, "compile"),
    (dict(batch_size=2.5), TypeError, "batch_size"),
])
def test_config_validation(kwargs, err, name):
    with pytest.raises(err, match=name):
        TrainConfig(**kwargs)


# ------------------------------------------------------------------------------ train
def test_determinism_and_callback():
    cfg = TrainConfig(steps=12, batch_size=16, lr=1e-2, log_every=4, grad_clip=1.0,
                      lr_warmup=3)
    calls = []
    a = train(_model(), _data(), cfg, progress=False,
              callback=lambda info: calls.append((info["step"], info["loss"])))
    b = train(_model(), _data(), cfg, progress=False)
    assert a.losses.shape == (12,) and a.steps == 12 and bool(torch.isfinite(a.losses).all())
    torch.testing.assert_close(a.losses, b.losses, rtol=0, atol=0)  # same seeds, CPU: bitwise
    assert [c[0] for c in calls] == [4, 8, 12]
    assert calls[-1][1] == float(a.losses[-1])
    # Negative control: another seed draws other minibatches, hence other losses.
    c = train(_model(), _data(), TrainConfig(**{**cfg.__dict__, "seed": 1}), progress=False)
    assert not torch.equal(a.losses, c.losses)
    # The EMA moved away from the initial weights and differs from the raw model.
    assert not torch.equal(a.ema.net.inp.weight, a.model.net.inp.weight)


class _Stop(Exception):
    pass


def test_interrupted_run_resumes_exactly(tmp_path):
    ckpt = tmp_path / "run.pt"
    cfg = TrainConfig(steps=50, batch_size=16, lr=1e-2, checkpoint_every=10, ema_decay=0.9)
    full = train(_model(), _data(), cfg, progress=False)

    def stop_at_25(info):
        if info["step"] == 25:
            raise _Stop  # a crash after the step-20 checkpoint, mid-interval

    with pytest.raises(_Stop):
        train(_model(), _data(), cfg, checkpoint=ckpt, progress=False, callback=stop_at_25)
    assert load_checkpoint(ckpt, _model())["step"] == 20
    # A fresh process would rebuild the model with other initial weights: seed 7.
    resumed = train(_model(seed=7), _data(), cfg, checkpoint=ckpt, progress=False)
    # Same op sequence, same generator states, float tensors saved bit-exactly -> bitwise equal.
    for got, want in [(resumed.model, full.model), (resumed.ema, full.ema)]:
        for p, q in zip(got.state_dict().values(), want.state_dict().values()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    torch.testing.assert_close(resumed.losses, full.losses, rtol=0, atol=0)
    assert sorted(os.listdir(tmp_path)) == ["run.pt"]  # atomic writes leave no temporaries
    # Extending steps continues the same run; changing something that matters is refused.
    longer = train(_model(seed=7), _data(), TrainConfig(**{**cfg.__dict__, "steps": 55}),
                   checkpoint=ckpt, progress=False)
    torch.testing.assert_close(longer.losses[:50], full.losses, rtol=0, atol=0)
    with pytest.raises(ValueError, match="config.lr"):
        train(_model(), _data(), TrainConfig(**{**cfg.__dict__, "steps": 60, "lr": 1e-3}),
              checkpoint=ckpt, progress=False)
    # resume=False starts over (negative control: a fresh model is not the checkpoint's).
    fresh = train(_model(seed=7), _data(), TrainConfig(**{**cfg.__dict__, "steps": 5}),
                  checkpoint=ckpt, resume=False, progress=False)
    assert not torch.equal(fresh.losses, full.losses[:5])


def test_target_data_float64_trains_in_float32():
    target = labkit.Gaussian(torch.zeros(2), torch.eye(2))
    r = train(_model(), target, TrainConfig(steps=3, batch_size=8), progress=False)
    assert next(r.model.parameters()).dtype == torch.float32
    assert bool(torch.isfinite(r.losses).all())


def test_class_labels_are_fed_to_the_network():
    model = _model(num_classes=2)
    labels = (torch.arange(64) % 2).long()
    r = train(model, _data(), TrainConfig(steps=3, batch_size=8), labels=labels, progress=False)
    assert r.model.net.class_emb.weight.grad is not None  # labels reached the embedding


def test_bf16_autocast_close_to_float32_and_trains():
    model = _randomise_output(_model())
    g = torch.Generator().manual_seed(0)
    x0, sigma = torch.randn(256, 2, generator=g), torch.rand(256, generator=g) + 0.2
    eps = torch.randn(256, 2, generator=g)
    with torch.no_grad():
        full = edm_loss(model, x0, sigma, noise=eps)
        half = edm_loss(EDMPrecond(model.net, 1.0, autocast=torch.bfloat16), x0, sigma,
                        noise=eps)
    # bf16 keeps 8 mantissa bits (relative rounding 2^-9 = 0.2% per op); over the ~6 layers the
    # loss moves by well under 5%, while a broken (e.g. zeroed) network would change it by O(1).
    assert abs(float(half) / float(full) - 1) < 0.05 and float(half) != float(full)
    r = train(_model(), _data(), TrainConfig(steps=3, batch_size=16, autocast="bf16"),
              progress=False)
    assert bool(torch.isfinite(r.losses).all())


def test_compile_eager_backend_matches_plain():
    cfg = TrainConfig(steps=3, batch_size=16, lr=1e-2)
    plain = train(_model(), _data(), cfg, progress=False)
    compiled = train(_model(), _data(), TrainConfig(**{**cfg.__dict__, "compile": "eager"}),
                     progress=False)
    # The eager backend replays the same aten ops: equal up to float32 reassociation.
    torch.testing.assert_close(compiled.losses, plain.losses, rtol=1e-5, atol=1e-6)
    assert not any("_orig_mod" in k for k in compiled.model.state_dict())


# ------------------------------------------------------------------------------ DDP
def _ddp_worker(rank, world, port, out_dir):
    import torch.distributed as dist
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = _model(seed=rank)  # different inits: DDP must broadcast rank 0's weights
        r = train(model, _data(), TrainConfig(steps=4, batch_size=8, lr=1e-2, checkpoint_every=2),
                  checkpoint=os.path.join(out_dir, "ddp.pt"), progress=False)
        torch.save({"model": r.model.state_dict(), "ema": r.ema.state_dict(),
                    "losses": r.losses}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_two_cpu_ranks_stay_identical(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # fork: the children skip re-importing torch and labkit (spawn costs ~5 s more here). Once
    # an earlier test in this process has run autograd on a GPU, the autograd engine's device
    # threads make fork unsafe (torch refuses the backward in the child), so spawn then.
    method = "spawn" if torch.cuda.is_initialized() else "fork"
    mp.start_processes(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True,
                       start_method=method)
    r0, r1 = (torch.load(tmp_path / f"rank{i}.pt") for i in range(2))
    for key in ("model", "ema"):
        for a, b in zip(r0[key].values(), r1[key].values()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)  # same averaged update everywhere
    torch.testing.assert_close(r0["losses"], r1["losses"], rtol=0, atol=0)  # all-reduced
    record = load_checkpoint(tmp_path / "ddp.pt", _model())
    assert record["world_size"] == 2 and record["step"] == 4 and len(record["rng"]) == 2
    # Negative control: a single process from the same start draws only rank 0's batches.
    single = train(_model(seed=0), _data(), TrainConfig(steps=4, batch_size=8, lr=1e-2),
                   progress=False)
    assert not torch.equal(single.losses, r0["losses"])


# ------------------------------------------------------------------------------ quality
MIXTURE = dict(means=[[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0]], covs=0.09)


def _denoiser_errors(model, target, sigma_data):
    """Mean squared error to the exact denoiser, for the model and for c_skip x."""
    g = torch.Generator().manual_seed(5)
    out = []
    for s in (0.5, 1.0, 2.0):
        x = target.sample_noised(4000, s, g)
        exact = target.denoise(x, s)
        with torch.no_grad():
            err = (model(x, s) - exact).square().sum(1).mean()
        trivial = (sigma_data**2 / (s**2 + sigma_data**2) * x - exact).square().sum(1).mean()
        out.append(float(err / trivial))
    return out


def test_trained_mlp_learns_the_exact_mixture_denoiser():
    target = labkit.GaussianMixture(**MIXTURE)
    sd = 1.4  # per-coordinate std of this mixture (1.41 from 20000 samples)
    torch.manual_seed(0)
    model = mlp_denoiser(2, sigma_data=sd, hidden=64, depth=2)
    r = train(model, target, TrainConfig(steps=400, batch_size=256, lr=3e-3, lr_warmup=20,
                                          ema_decay=0.98), progress=False)
    ratios = _denoiser_errors(r.ema, target, sd)
    # Measured ratios about 0.02-0.03 (EMA); 0.15 leaves a 5x margin for seeds and platforms,
    # while c_skip x itself has ratio 1: learning the mixture's clusters is required.
    assert max(ratios) < 0.15, ratios
    # Negative control: the untrained model is exactly c_skip x, ratio 1 at every sigma.
    untrained = _denoiser_errors(mlp_denoiser(2, sigma_data=sd, hidden=64, depth=2), target, sd)
    assert min(untrained) > 0.99, untrained


# ------------------------------------------------------------------------------ bad input
def test_bad_inputs():
    cfg = TrainConfig(steps=2, batch_size=4)
    with pytest.raises(ValueError, match=r"data must have shape \(N, 2\)"):
        train(_model(), _data(dim=3), cfg, progress=False)
    with pytest.raises(ValueError, match="dim 3"):
        train(_model(), labkit.Gaussian(torch.zeros(3), torch.eye(3)), cfg, progress=False)
    with pytest.raises(ValueError, match=r"labels must be an int64 tensor of shape \(64,\)"):
        train(_model(num_classes=2), _data(), cfg, labels=torch.zeros(10).long(), progress=False)
    with pytest.raises(TypeError, match="model"):
        train(torch.nn.Linear(2, 2), _data(), cfg)
    with pytest.raises(TypeError, match="config"):
        train(_model(), _data(), {"steps": 2})
    with pytest.raises(FloatingPointError, match=r"step \d+ \(lr=1e\+30\)"):
        train(_model(), _data(), TrainConfig(steps=20, batch_size=4, lr=1e30), progress=False)


def test_progress_bar_shows_the_loss(capsys):
    train(_model(), _data(), TrainConfig(steps=3, batch_size=4), progress=True)
    err = capsys.readouterr().err
    assert "loss=" in err and "3/3" in err
    train(_model(), _data(), TrainConfig(steps=3, batch_size=4), progress=False)
    assert capsys.readouterr().err == ""  # negative control: no bar, no output


def test_log_every_batches_host_syncs_without_changing_losses():
    """Losses wait on the device between logs; the recorded values are the same, and a
    non-finite loss is still caught (at the next log) naming its step."""
    ref = train(_model(), _data(), TrainConfig(steps=12, batch_size=16, seed=3), progress=False)
    seen = []
    batched = train(_model(), _data(), TrainConfig(steps=12, batch_size=16, seed=3, log_every=5),
                    progress=False, callback=lambda info: seen.append(info["step"]))
    torch.testing.assert_close(batched.losses, ref.losses, rtol=0, atol=0)  # same arithmetic
    assert seen == [5, 10, 12]
    with pytest.raises(FloatingPointError, match=r"at step \d+ \(lr=1e\+30\)"):
        train(_model(), _data(), TrainConfig(steps=20, batch_size=16, lr=1e30, log_every=7),
              progress=False)


def test_training_does_not_depend_on_torch_default_dtype():
    # sigma and eps are drawn as float32 explicitly: a float64 default dtype (common in labkit
    # sessions) must not change the random stream, so the losses are bitwise equal (CPU).
    cfg = TrainConfig(steps=4, batch_size=8, lr=1e-2)
    want = train(_randomise_output(_model()), _data(), cfg, progress=False).losses
    model, data = _randomise_output(_model()), _data()  # built before switching the default
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = train(model, data, cfg, progress=False).losses
    finally:
        torch.set_default_dtype(saved)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # The sigma stream itself is float32 under either default.
    torch.set_default_dtype(torch.float64)
    try:
        assert sample_sigma(3, cfg, torch.Generator().manual_seed(0)).dtype == torch.float32
    finally:
        torch.set_default_dtype(saved)
