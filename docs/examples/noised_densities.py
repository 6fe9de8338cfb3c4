# %% [markdown]
# # Noised densities of exact toy targets
#
# Every labkit target knows its noised density `p_sigma = p * N(0, sigma^2 I)` in closed form (or
# by quadrature with a stated error bound, for curves). This notebook-style script (cells marked
# `# %%`, runnable in VS Code / Jupytext, or as a plain script) draws three 2-D targets at several
# noise levels, overlays exact samples, and shows the denoiser as arrows `D(x, sigma) - x`.
#
# Run it: `python docs/examples/noised_densities.py [OUTPUT.png]`.

# %%
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import labkit  # noqa: E402

# %% [markdown]
# ## Three targets
# A Gaussian mixture (one rank-deficient component, a segment), a circle S^1 of radius 1.5, and
# a swiss-roll curve (uniform in arc length), scaled to fit the [-3, 3]^2 frame.

# %%
mixture = labkit.GaussianMixture(
    means=torch.tensor([[-1.5, 0.0], [1.5, 0.5], [0.0, -1.5]]),
    covs=torch.tensor([[[0.15, 0.0], [0.0, 0.15]],
                       [[0.25, 0.25], [0.25, 0.25]],   # rank 1: a segment along (1, 1)
                       [[0.05, 0.0], [0.0, 0.40]]]),
    weights=torch.tensor([0.5, 0.3, 0.2]),
)
circle = labkit.Sphere(k=1, ambient_dim=2, radius=1.5)
roll = labkit.Curve.swiss_roll(scale=0.2)   # radii 0.94 to 2.83: inside the frame
targets = {"Gaussian mixture": mixture, "circle S^1": circle, "swiss roll": roll}
sigmas = [0.05, 0.2, 0.5, 1.0]

# %% [markdown]
# ## Densities on a grid
# `log_prob(x, sigma)` is vectorised over all grid points at once; `denoise` gives the arrows.

# %%
def grid(lim=3.0, n=150):
    u = torch.linspace(-lim, lim, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(u, u, indexing="xy")
    return xx, yy, torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def plot(targets, sigmas, path):
    xx, yy, pts = grid()
    ax_x, ax_y, arrows = grid(n=13)
    fig, axes = plt.subplots(len(targets), len(sigmas), figsize=(3.0 * len(sigmas),
                                                                   3.0 * len(targets)))
    g = torch.Generator().manual_seed(0)
    for row, (name, target) in enumerate(targets.items()):
        clean = target.sample(300, generator=g)
        for col, sigma in enumerate(sigmas):
            ax = axes[row, col]
            density = target.log_prob(pts, sigma).exp().reshape(xx.shape)
            ax.contourf(xx, yy, density, levels=30, cmap="viridis")
            ax.scatter(clean[:, 0], clean[:, 1], s=1, c="white", alpha=0.5)
            step = target.denoise(arrows, sigma) - arrows
            ax.quiver(arrows[:, 0], arrows[:, 1], step[:, 0], step[:, 1], color="red",
                      angles="xy", scale_units="xy", scale=1.0, width=0.004)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_xlim(-3.0, 3.0), ax.set_ylim(-3.0, 3.0)  # the grid; long arrows are clipped
            ax.set_aspect("equal")
            if row == 0:
                ax.set_title(f"sigma = {sigma}")
            if col == 0:
                ax.set_ylabel(name)
    fig.suptitle("p_sigma (colour), clean samples (white), D(x, sigma) - x (red)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# %%
if __name__ == "__main__":
    plot(targets, sigmas, sys.argv[1] if len(sys.argv) > 1 else "noised_densities.png")
