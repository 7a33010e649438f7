# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (vmivae)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. The mutual information regulariser
#
# **Overview.** We derive the variational lower bound on the mutual information between chosen latent
# components and the decoder's output, build it into the VAE loss through an auxiliary network $Q$, and
# train the paper's Gaussian model with the bound on dimensions $z_0, z_1$ next to its vanilla twin.
# Then we look at what the two informative dimensions do, and measure the information they carry.

# %% tags=["parameters"]
profile = "quick"  # smoke | quick | full
device = "auto"
seed = 0
workers = 2
runs_dir = "../runs"
figures_dir = "../figures"

# %%
import numpy as np

from vmivae import plots
from vmivae.latents import STANDARD_NORMAL_ENTROPY
from vmivae.notebook import setup

nb = setup("02", profile, device, seed, workers, runs_dir, figures_dir)  # seeds, run cache, figures/02_<name>.png

# %% [markdown]
# ## A lower bound on the information in a code
#
# Let $c$ be some latent components (here the Gaussian dimensions $z_0, z_1$) and
# $\tilde x = \mathrm{Dec}(z)$ the image decoded from a code that contains them. The mutual information
# $I(c; \tilde x) = H(c) - H(c \mid \tilde x)$ measures how much the image reveals about $c$. It involves the
# intractable posterior $p(c \mid \tilde x)$, but for *any* distribution $Q(c \mid \tilde x)$
#
# $$
# \begin{aligned}
# I(c; \tilde x) &= H(c) + \mathbb E_{c, \tilde x}\big[\log p(c \mid \tilde x)\big] \\
#   &= H(c) + \mathbb E_{c, \tilde x}\big[\log Q(c \mid \tilde x)\big]
#       + \mathbb E_{\tilde x}\big[\mathrm{KL}\big(p(c \mid \tilde x)\,\|\,Q(c \mid \tilde x)\big)\big] \\
#   &\ge H(c) + \mathbb E_{c, \tilde x}\big[\log Q(c \mid \tilde x)\big] \;=\; H(c) - \mathrm{CE},
# \end{aligned}
# $$
#
# with equality when $Q$ is the true posterior (Barber & Agakov, 2003; the same trick drives InfoGAN).
# $Q$ is a network: the encoder's two convolutions, a convolution over the whole $7 \times 7$ map and a
# $1 \times 1$ head that outputs a mean and a log standard deviation for every component, so that
# $-\log Q(c \mid \tilde x)$ is a Gaussian negative log-likelihood.
#
# Training alternates two roles for the one cross-entropy $\mathrm{CE}$:
#
# * $Q$ minimises $\mathrm{CE}$ on *detached* images: it tightens the bound.
# * the VAE minimises $\mathcal L_{\text{VAE}} + \lambda\,\mathrm{CE}$ with $Q$ fixed: the decoder is pushed
#   to draw images from which $c$ can be read back, i.e. to make $c$ informative.
#
# $H(c)$ does not depend on the networks, so training drops it. The reference code feeds $Q$ both the
# reconstructions $\mathrm{Dec}(\mathrm{Enc}(x))$ (targets: the encoder's samples) and generations
# $\mathrm{Dec}(z)$, $z \sim \mathcal N(0, I)$ (targets: those prior draws); the `paper-gaussian` preset
# does the same (`mi_source: both`) with $\lambda = 0.0005$.
#
# `vmivae` computes both updates from **one** forward pass (the "fused" step; notebook 5 and the
# benchmark compare it with the reference's alternating schedule): $Q$ reads the decoded images once,
# and the gradient flowing back from $Q$ into the decoder is scaled by $\lambda$ while $Q$'s own weights
# receive the unscaled gradient. A test checks that these gradients equal the two separate computations.

# %%
(vmi, baseline), measured = nb.measured([nb.spec("paper-gaussian"), nb.spec("paper-gaussian-baseline")])
runs = {"VMI": vmi, "baseline": baseline}
print({name: f"{r.metrics['images_per_second']:.0f} images/s" for name, r in runs.items()})

# %% [markdown]
# ## The bound during training
#
# Both runs train a $Q$, but only the VMI run lets $Q$'s cross-entropy shape the decoder. The curves show
# the bound that the training-time $Q$ achieves on the two components,
# $H(z_0, z_1) - \mathrm{CE}$ with $H = 2 \cdot \tfrac12 \log(2\pi e) = 2.84$ nats for two $\mathcal N(0, 1)$
# dimensions. (During training the images mix reconstructions and generations, so this is a
# diagnostic, not the measurement: that comes below, with a fresh $Q$.)

# %%
nb.show(plots.mi_curves({k: r.history for k, r in runs.items()}, "ce_cont", entropy=2 * STANDARD_NORMAL_ENTROPY,
                     title="bound on I(z0, z1; x~) from the training-time Q"), "training_mi_curves")

# %% [markdown]
# ## What the informative dimensions do
#
# Traversals of $z_0$ and $z_1$ in both models, then a 2-D grid over $(z_0, z_1)$ with every other
# dimension fixed.

# %%
for name, r in runs.items():
    for dim in (0, 1):
        nb.show(plots.traversal(r.vae, f"z{dim}", n_rows=3, title=f"{name}: traversal of z{dim}"), f"traversal_{name.lower()}_z{dim}")

# %%
for name, r in runs.items():
    nb.show(plots.grid_2d(r.vae, (0, 1), values=np.linspace(-2.5, 2.5, 7), title=f"{name}: z0 (rows) x z1 (columns)"), f"grid_{name.lower()}")

# %% [markdown]
# ## Measuring the information in every dimension
#
# To *measure* $I(z_j; \tilde x)$ for a fixed, trained model we freeze it, train a fresh $Q$ on images
# generated from prior codes and report $H(z_j) - \mathrm{CE}$ on held-out samples, with $H(z_j)$ exact
# (notebook 4 validates this estimator on channels with known MI). Bars are 95% bootstrap intervals.

# %%
results = dict(zip(runs, measured))
nb.show(plots.mi_profile(results, title="I(z_j; x~) lower bound per Gaussian dim (95% CI)"), "mi_profile")
for name, result in results.items():
    mi = result["mi"]
    others = np.mean([mi[f"z{j}"]["nats"] for j in range(2, len(mi))])
    print(f"{name:>8}: z0 {mi['z0']['nats']:.3f}, z1 {mi['z1']['nats']:.3f}, mean of the other dims {others:.3f} nats; "
          f"test MSE {result['recon_mse']:.4f}")

# %% [markdown]
# ## Summary
#
# * The MI term is a cross-entropy through an auxiliary network $Q$; minimised by $Q$ it tightens a lower
#   bound on $I(c; \tilde x)$, minimised by the VAE it makes $c$ informative about the images.
# * With the regulariser, $z_0$ and $z_1$ are among the most informative dimensions of the model (the
#   profile above). A vanilla VAE may also use them, or not: which of its dimensions stay active is decided
#   by the initialisation, and notebook 5 shows how much that varies over seeds. What the MI term buys
#   is that the *chosen* dimensions reliably control the image.
# * With $\lambda = 0.0005$ against a mean-squared error the term is weak; the reconstruction error of the
#   two models is nearly the same.
