"""Networks, samplers and training agree across devices and dtypes within stated tolerances.

Every test runs on the CPU; on a machine with a CUDA GPU the same tests also run there and compare
against the CPU (the device list is built at collection, so nothing is skipped on a CPU-only
machine). Tolerances:

* float32 network, TF32 off: CPU and GPU kernels sum in different orders; each of the ~30 layers
  of the small UNet adds a relative error of a few float32 ulps (6e-8), so outputs agree to
  ~1e-5 relative. We allow 1e-4 of the output scale.
* bf16 autocast: bf16 keeps 8 mantissa bits (relative rounding 2^-9 = 2e-3 per operation); over
  the network this compounds to ~1e-2 of the output scale. We allow 5e-2 relative (RMS).
* float64 sampler state with a float32 network: the state is float64 but each denoiser call
  rounds to float32 (6e-8 relative), so a 4-step Heun run on either device agrees with the CPU to
  ~1e-5 of the state scale; we allow 1e-4.
"""

import pytest
import torch

import labkit
from labkit.nets import TrainConfig, edm_loss, fp_penalty, mlp_denoiser, train, unet_denoiser

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def _no_tf32():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _unet(autocast=None):
    torch.manual_seed(0)
    model = unet_denoiser(8, 1, model_channels=16, channel_mult=(1, 2), num_blocks=1,
                          attn_resolutions=(4,), autocast=autocast)
    with torch.no_grad():  # give the zero-initialised output layer weights, so the net matters
        for p in model.net.parameters():
            if p.ndim > 1 and not p.abs().sum():
                p.normal_(0, 0.05)
    return model.eval()


def _inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    return torch.randn(6, 1, 8, 8, generator=g, dtype=dtype), torch.tensor(
        [0.01, 0.1, 0.5, 1.0, 5.0, 40.0], dtype=dtype)


def _rel(a, b):
    return float((a.double().cpu() - b.double().cpu()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize("device", DEVICES)
def test_unet_float32_agrees_with_cpu(device):
    x, sigma = _inputs()
    model = _unet()
    with torch.no_grad():
        ref = model(x, sigma)
        out = model.to(device)(x.to(device), sigma.to(device))
    assert out.device.type == device and out.dtype == torch.float32
    # the network part only (D - c_skip x), whose scale is that of c_out F
    c_skip = labkit.nets.edm_coefficients(sigma, model.sigma_data)[0].reshape(-1, 1, 1, 1)
    assert _rel(out.cpu() - c_skip * x, ref - c_skip * x) < 1e-4


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_is_close_to_float32(device):
    x, sigma = _inputs()
    ref_model, bf16_model = _unet(), _unet(torch.bfloat16)
    c_skip = labkit.nets.edm_coefficients(sigma, 0.5)[0].reshape(-1, 1, 1, 1)
    with torch.no_grad():
        ref = ref_model(x, sigma) - c_skip * x
        out = bf16_model.to(device)(x.to(device), sigma.to(device)).cpu() - c_skip * x
    assert out.dtype == torch.float32  # the denoiser output keeps x's dtype under autocast
    rms = float((out - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt())
    assert rms < 5e-2
    # negative control: the check can fail -- a different network is far outside it
    other = _unet()
    with torch.no_grad():
        other.net.conv_out.weight.mul_(3.0)
        moved = other(x, sigma) - c_skip * x
    assert float((moved - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt()) > 5e-2


@pytest.mark.parametrize("device", DEVICES)
def test_float64_sampler_state_through_a_float32_unet(device):
    model = _unet()
    g = torch.Generator().manual_seed(2)
    x = 80.0 * torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    sigmas = labkit.grids.karras(4, 0.002, 80.0)
    with torch.no_grad():
        ref, _ = labkit.sample(model, x, sigmas, solver="heun")
        out, info = labkit.sample(model.to(device), x.to(device), sigmas.to(device),
                                  solver="heun")
    assert out.dtype == torch.float64 and out.device.type == device and info.nfe == 7
    assert _rel(out, ref) < 1e-4


@pytest.mark.parametrize("device", DEVICES)
def test_edm_loss_agrees_with_cpu_and_training_runs_on_device(device):
    target = labkit.GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), covs=0.05)
    torch.manual_seed(0)
    model = mlp_denoiser(2, sigma_data=1.0, hidden=32, depth=2)
    with torch.no_grad():
        model.net.out.weight.normal_(0, 0.1)  # the zero-initialised output layer
    g = torch.Generator().manual_seed(3)
    x0 = target.sample(64, generator=g).float()
    sigma = torch.exp(torch.randn(64, generator=g) * 1.2 - 1.2)
    noise = torch.randn(64, 2, generator=g)
    with torch.no_grad():
        ref = edm_loss(model, x0, sigma, noise=noise)
        out = edm_loss(model.to(device), x0.to(device), sigma.to(device), noise=noise.to(device))
    # a mean of 128 float32 terms: agreement to float32 round-off, 1e-5 relative
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-5, atol=0)
    config = TrainConfig(steps=20, batch_size=64, lr=3e-3, seed=0, checkpoint_every=20)
    result = train(model, target, config, device=torch.device(device), progress=False)
    assert next(result.ema.parameters()).device.type == device
    assert bool(torch.isfinite(result.losses).all())


@pytest.mark.parametrize("device", DEVICES)
def test_fp_penalty_agrees_with_cpu_and_fp_training_runs_on_device(device):
    torch.manual_seed(0)
    model = mlp_denoiser(2, sigma_data=1.0, hidden=32, depth=2)
    with torch.no_grad():
        model.net.out.weight.normal_(0, 0.1)  # the zero-initialised output layer
    g = torch.Generator().manual_seed(4)
    x = torch.randn(32, 2, generator=g)
    sigma = torch.exp(torch.randn(32, generator=g) * 0.8 - 0.5)
    ref = fp_penalty(model, x, sigma)
    out = fp_penalty(model.to(device), x.to(device), sigma.to(device))
    # Third derivatives of a float32 net: each autograd pass adds a few ulps relative to its
    # largest term and the residual's terms cancel to ~1/10 of their size, so ~1e-5 relative;
    # we allow 1e-4 (a lost device transfer or a wrong formula is off by O(1)).
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-4, atol=0)
    target = labkit.GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), covs=0.05)
    config = TrainConfig(steps=5, batch_size=64, lr=3e-3, seed=0, checkpoint_every=5,
                         fp_weight=1.0, fp_rows=16)
    result = train(model, target, config, device=torch.device(device), progress=False)
    assert next(result.ema.parameters()).device.type == device
    assert bool(torch.isfinite(result.losses).all()) and bool((result.fp_losses > 0).all())
