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
# # 5. Results: the reproduction
#
# **Overview.** Both presets against their vanilla twins over three seeds (mean ± standard deviation), a
# sweep of the categorical weight $\lambda$ (the MI/reconstruction trade-off), the `shapes` dataset whose
# generative factors are known (which latent aligns with which factor, MIG), a comparison with published
# numbers, and the list of places where we deviate from the reference code.

# %% tags=["parameters"]
profile = "quick"  # smoke | quick | full
device = "auto"
seeds = [0, 1, 2]
scales = [0.0, 0.1, 1.0, 10.0]  # the sweep multiplies both of the paper's lambdas (joint model, first seed)
workers = 2
runs_dir = "../runs"
figures_dir = "../figures"

# %%
import pandas as pd
from IPython.display import display

from vmivae import plots
from vmivae.evaluation import compare_with_published, contrast, format_summary, summarize
from vmivae.notebook import setup

nb = setup("05", profile, device, seeds[0], workers, runs_dir, figures_dir)  # seeds, run cache, figures/05_<name>.png

# %% [markdown]
# ## What was run
#
# Every run below trains on the profile's dataset and budget; every number is measured on the test split
# with the model in evaluation mode, the MI with a fresh $Q$ on the generation path (notebook 4).

# %%
presets = ["paper-joint", "paper-joint-baseline", "paper-gaussian", "paper-gaussian-baseline"]
specs = [nb.spec(p, seed=s) for p in presets for s in seeds]
sweep = [nb.spec("paper-joint", name=f"sweep-x{s:g}", lambda_cat=0.01 * s, lambda_cont=0.0005 * s)
         for s in scales]  # x0 is the baseline and x1 the paper's model: the run cache reuses both
shapes = [nb.spec(p) for p in ("shapes-joint", "shapes-joint-baseline")]
all_runs, all_results = nb.measured(specs + sweep + shapes)
config = all_runs[0].config
print(f"profile {profile}: {config.steps} steps of batch {config.batch_size} on {config.dataset}; "
      f"{len(all_runs)} runs, seeds {seeds}; MI estimator budget '{nb.estimator}'")

# %% [markdown]
# ## Main table
#
# Mean ± sample standard deviation over the seeds. "MI" is the lower bound in nats from a fresh $Q$;
# accuracies, NMI and ARI score the categorical code as a clustering of the test digits; "linear probe"
# is the test accuracy of a logistic regression on the Gaussian means.

# %%
groups = {p: [r for s, r in zip(specs, all_results) if s.preset == p] for p in presets}
summary = summarize(groups)
format_summary(summary).T  # one column per model, one row per metric

# %% [markdown]
# ## Which differences are real?
#
# Three seeds are few. For each preset, the VMI model minus its vanilla twin per metric, with a Welch 95%
# interval for the difference of the means: `resolved` marks the differences this many seeds separate from
# seed-to-seed noise. Read the unresolved rows as "no measurable effect at this budget", not as a small one.

# %%
for vmi, base in [("paper-joint", "paper-joint-baseline"), ("paper-gaussian", "paper-gaussian-baseline")]:
    if len(seeds) > 1:
        display(contrast(groups, vmi, base).round(3).style.set_caption(f"{vmi} minus {base}"))

# %%
joint_vmi, joint_base = all_results[0], all_results[len(seeds)]
nb.show(plots.mi_profile({"VMI": joint_vmi, "baseline": joint_base}, components=["categorical", "z0", "z1", "z2", "z3"],
                      title=f"joint model, seed {seeds[0]}: MI per component (95% CI)"), "mi_profile_joint")

# %% [markdown]
# ## The MI / reconstruction trade-off
#
# The joint model with both MI weights multiplied by a common factor (0: the vanilla model, 1: the
# paper's $\lambda_{\text{cat}} = 0.01$, $\lambda_{\text{cont}} = 0.0005$), first seed. The weight is a switch
# more than a dial: below the paper's value the code stays nearly unused; from it on the code carries
# most of what it will, and larger weights mostly cost reconstruction. (One seed per point: read the
# shape of the curve, not the third decimal.)

# %%
sweep_results = all_results[len(specs) : len(specs) + len(sweep)]
trade = pd.DataFrame([{"lambda_cat": 0.01 * s, "mi_categorical": r["mi"]["categorical"]["nats"],
                       "recon_mse": r["recon_mse"], "accuracy": r["cluster_accuracy"]["hungarian"]}
                      for s, r in zip(scales, sweep_results)])
nb.show(plots.tradeoff(trade, title="joint model: categorical MI vs test MSE as the MI weights grow"), "tradeoff")
trade.round(4)

# %% [markdown]
# ## Shapes: latents against known factors
#
# On the procedural `shapes` sprites (3 shapes x 4 scales x 8 rotations x 8 x 8 positions, 32x32 pixels)
# the generative factors are known. The heat maps give the MI (nats) between each latent (Gaussian means
# discretised into 20 bins, and the argmax category) and each factor; the mutual information gap (MIG,
# Chen et al. 2018) is the gap between the two most informative latents per factor, normalised by the
# factor's entropy and averaged.

# %%
shape_results = dict(zip(["VMI", "baseline"], all_results[len(specs) + len(sweep) :]))
for name, r in shape_results.items():
    title = f"shapes, {name}: MI(latent; factor), nats"
    nb.show(plots.factor_mi_heatmap(r["factor_mi"], title=title), f"shapes_factor_mi_{name.lower()}")
pd.DataFrame({name: {"MIG": r["mig"], **{f"MIG {k}": v for k, v in r["mig_per_factor"].items()},
                     "MI(code; x~)": r["mi"]["categorical"]["nats"],
                     "shape accuracy (Hungarian)": r["cluster_accuracy"]["hungarian"]}
              for name, r in shape_results.items()}).round(3)

# %% [markdown]
# Two rows answer different questions. "MI(code; x~)" says whether the categorical code controls the
# generated sprite; "shape accuracy" says whether what it controls is the *shape* (chance is 1/3, with
# three shapes). The MI term can only deliver the first: it makes the chosen code informative, and leaves
# to the data and the architecture which factor that information is about. In our `quick`-profile builds
# the VMI code became informative while its shape accuracy stayed near chance, and MIG stayed small for
# both models, with the $x$ position the one factor that got a latent of its own. One seed per model: read
# the heat maps for the pattern rather than the table for the third decimal.

# %% [markdown]
# ## Against published numbers
#
# Unsupervised classification accuracy of a 10-way code on MNIST. The published numbers come from full
# MNIST (60,000 training digits) and long training; ours come from the profile above, so the comparison
# shows the gap a budget makes, not a ranking of methods.

# %%
budget = f"{config.dataset}, {config.steps} steps of {config.batch_size}, test split, {len(seeds)} seeds"
compare_with_published(summary, {"VMI-VAE joint, this book": "paper-joint", "vanilla joint VAE, this book": "paper-joint-baseline"}, budget)

# %% [markdown]
# ## Deviations from the reference code
#
# | what | reference code (aserdega/VMI-VAE) | here | why |
# |---|---|---|---|
# | temperature schedule | returns $\tau_0 = 1$ on almost every step | $\max(\tau_0 e^{-rt}, \tau_{\min})$, refreshed every interval | the schedule the paper describes |
# | VAE/Q update | alternating: VAE step, then a second VAE forward for the Q step | fused: one forward, exact same gradients (tested); the alternating step is `step_mode: alternating` | fewer FLOPs per step |
# | decoding prior codes | separate decoder call | one decoder call on reconstructions and prior codes together (BatchNorm sees both) | one pass |
# | clustering accuracy | training set, BatchNorm in training mode, majority vote | test split, evaluation mode, Hungarian and majority vote | an honest held-out number |
# | MI reported | "2 - CE" from the training-time Q | $H(c) - \mathrm{CE}$ in nats from a fresh Q, with 95% intervals | a true lower bound |
# | quick profile | 150k steps, lr $10^{-4}$, fp32 | 600 steps, lr $10^{-3}$, bf16 autocast where native, compressed temperature schedule | minutes on a CPU; `full` restores the paper's budget |
# | data | full MNIST / Fashion-MNIST | the 5,000 embedded MNIST digits by default | works offline |
#
# ## Summary
#
# * **The regulariser does what it promises on the categorical code.** With the paper's weights the code
#   of the VMI model controls the generated digit (its MI bound is a sizeable fraction of $\log 10$), while
#   the vanilla model's code is nearly ignored by its decoder; the contrast table says whether that holds
#   across seeds. The sweep shows the price: once the weight is large enough to switch the
#   code on, raising it further adds little information and more reconstruction error.
# * **The two regularised Gaussian dimensions** carry information in both models; the regulariser makes it
#   reliable across seeds (a much smaller spread) rather than a matter of which dimensions happen to stay
#   active. Three seeds do not resolve the difference of the means; the spread is what they show.
# * **Clustering is where the budget shows.** The categorical code becomes *informative* long before it
#   becomes *class-aligned*: at this profile's budget, on 4,000 digits, accuracy and NMI move much less than
#   the MI does, and are far from the published full-MNIST numbers. `./run_all.sh --profile full` reruns
#   everything at the paper's budget on a GPU; these tables are regenerated with whatever it measures.
