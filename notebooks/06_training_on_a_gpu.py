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
# # 6. Training on a GPU
#
# The chapters so far trained for minutes on a CPU. The paper's budget is 150,000 steps on full MNIST,
# which is a job for a GPU. This chapter takes chapter 1's VAE, trains it with a loop written here in
# plain PyTorch, and changes that loop one step at a time: where the data lives, when the host waits for
# the device, bf16, fused kernels, a captured CUDA graph, several runs at once, several GPUs. Every change
# is timed on the machine that runs the chapter, and set beside the tables committed in `benchmarks/`.
#
# The chapter runs everywhere. On a CPU (the book is built on one) it takes about a minute; the cells
# that need a GPU say so, run only where `torch.cuda.is_available()`, and show the committed GPU
# measurements instead, labelled with their hardware and date.
#
# ```{admonition} Learning objectives
# :class: tip
# After this chapter you can
# * put a small dataset on the device once and keep the host from waiting for the device in the loop;
# * read a throughput table: images/s, counted FLOPs, the share of the machine's peak, and say why this
#   model is bound by kernel launches on a GPU, not by arithmetic;
# * say where bf16 autocast, a fused step and a captured CUDA graph help, and what a step must obey to
#   be captured;
# * train several runs as one batched step, and several GPUs as one run with `torchrun`, and say what
#   changes and what stays the same;
# * estimate what the paper's budget costs on a CPU and on a GPU.
# ```

# %% tags=["parameters"]
profile = "quick"  # smoke | quick | full: the budget of the chapters' runs
device = "auto"  # auto | cpu | cuda
seed = 0  # seeds every loop and run of this chapter
workers = 2  # parallel training processes (the GPU section's run)
runs_dir = "../runs"  # the run cache, shared by the chapters
figures_dir = "../figures"  # figures are saved here as 06_<name>.png
benchmarks_dir = "../benchmarks"  # the committed benchmark tables
results_dir = "../results/study"  # the committed study (chapter 5)
loop_steps = 0  # timed steps of each loop below; 0: the profile's (smoke 3, else 10)
bench_steps = 0  # steps per block of the live bench; 0: the profile's (smoke 2, else 5)
gpu_profile = "auto"  # budget of the GPU-only run: auto is full (smoke under smoke)

# %%
import importlib.util
import os
import subprocess
import sys

# In a hosted notebook (Colab) without vmivae: install it, keeping the host's torch.
if importlib.util.find_spec("vmivae") is None:
    url = os.environ.get("VMIVAE_REPOSITORY_URL")  # where this notebook came from
    if not url:
        raise ModuleNotFoundError("no vmivae: set VMIVAE_REPOSITORY_URL, run again")
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--no-deps", f"git+{url}"], check=True)
    subprocess.run([*pip, "mlxtend", "seaborn", "pyyaml", "tqdm"], check=True)

import contextlib
import dataclasses
import json
import re
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from torch.utils._python_dispatch import TorchDispatchMode

import vmivae
from vmivae import plots
from vmivae.batches import BatchSampler
from vmivae.datasets import load
from vmivae.errors import VMIVAEError
from vmivae.perf import bench, bench_group, capture_safe, distributed, graphed
from vmivae.perf.device import native_bf16, resolve_device
from vmivae.presets import make_config
from vmivae.teaching.notebook import setup
from vmivae.teaching.show import show_code
from vmivae.trainer import Trainer

nb = setup("06", profile, device, seed, workers, runs_dir, figures_dir)
loop_steps = loop_steps or {"smoke": 3}.get(profile, 10)
bench_steps = bench_steps or {"smoke": 2}.get(profile, 5)
if gpu_profile == "auto":
    gpu_profile = "smoke" if profile == "smoke" else "full"
dev = resolve_device(device)
on_gpu = dev.type == "cuda"  # the cells marked "GPU only" run when this is True
warmup = 3 if on_gpu else 1  # untimed first steps: they allocate and choose kernels
where = torch.cuda.get_device_name(dev) if on_gpu else f"{dev.type.upper()}"
print(
    f"torch {torch.__version__}; running on {where}, {torch.get_num_threads()} CPU "
    f"threads; CUDA available: {torch.cuda.is_available()}"
)
if not on_gpu:
    print("no GPU here: the cells marked 'GPU only' show committed measurements")

# %% [markdown]
# In a hosted notebook the cell above installs `vmivae` without touching the host's `torch` (the host's
# build matches its GPU driver; a `torch` from PyPI might not). On Colab, choose a GPU runtime first
# (*Runtime, Change runtime type*); `CUDA available: True` then says the chapter found it.
#
# ## The device and the data
#
# `vmivae.perf.device.resolve_device` makes the one choice every part of the package shares: `auto` is
# a CUDA GPU if there is one, then Apple's MPS, then the CPU, and an explicit device that is absent is an
# error in one sentence, before any work.

# %%
show_code(resolve_device)

# %% [markdown]
# The training digits take a few MiB (printed below): far less than any GPU's memory. So they go to the
# device once, and every batch is gathered there. The alternative, a batch assembled in host memory and
# copied over at every step, is what a `DataLoader` does by default; for a dataset this small it only
# adds a copy.

# %%
config = nb.config("paper-gaussian-baseline")  # chapter 1's VAE: 32 Gaussian dims
host_images = load(config.dataset, "train", config.data_root).images  # host memory
images = host_images.to(dev)  # one copy, kept on the device for the whole run
image_shape = tuple(images.shape[1:])
print(
    f"{len(images)} training images, {images.numel() * 4 / 2**20:.1f} MiB, "
    f"on {images.device}; batch {config.batch_size}"
)


# %% [markdown]
# The loop is chapter 1's: the VAE (here `vmivae.models.VAE`, the network chapter 1 wrote and checked),
# the paper's loss $\operatorname{MSE} + \beta\,\mathrm{KL}$ and Adam. `elbo_step` is one step;
# `timed_loop` runs a few steps untimed (the first steps allocate memory and choose kernels) and then
# times `steps` more. Its options are the changes this chapter makes, one at a time.


# %%
def say(text):
    """Show a sentence made from this machine's (or a committed table's) numbers."""
    display(Markdown(text))


def sync():
    """Wait until the device has done all it was given: a GPU runs behind the host, so
    a clock read without this times the launches, not the work. A CPU computes as it
    goes."""
    if on_gpu:
        torch.cuda.synchronize(dev)


def elbo_step(vae, opt, x, amp=None):
    """One step of chapter 1's loss (MSE + beta KL): forward, backward, Adam.

    `amp`: None (fp32) or a dtype for autocast. Returns the loss, left on the device."""
    ctx = torch.autocast(dev.type, dtype=amp) if amp else contextlib.nullcontext()
    with ctx:
        out = vae(x)
    kl = vmivae.latents.gaussian_kl_per_dim(out.mu.float(), out.logvar.float())
    loss = F.mse_loss(out.x_hat.float(), x) + config.kl_weight * kl.sum(1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def timed_loop(steps, data=images, item=False, amp=None, fused=False):
    """Seconds per step of a fresh VAE trained on batches drawn from `data`, and its
    losses. The same weights on every call. `item`: read each loss to the host as it is
    made (loss.item(), what printing or logging every step does)."""
    torch.manual_seed(seed)
    vae = vmivae.models.VAE(image_shape, config.latent).to(dev)
    opt = torch.optim.Adam(vae.parameters(), lr=config.lr, fused=fused)
    losses = []
    for i in range(warmup + steps):
        if i == warmup:
            sync()
            start = time.perf_counter()
        idx = torch.randint(len(data), (config.batch_size,), device=data.device)
        x = data[idx].to(dev)  # copies only if data is not on the device
        loss = elbo_step(vae, opt, x, amp)
        losses.append(loss.item() if item else loss)
    sync()
    seconds = (time.perf_counter() - start) / steps
    return seconds, torch.tensor([float(v) for v in losses])


# %% [markdown]
# ### Host syncs
#
# A GPU runs behind the host: each operation is queued and the host moves on at once. `loss.item()`
# (and `print(loss)`, `float(loss)`, `if loss < best:`) needs the number on the host, so the host
# stops until the GPU has finished everything queued before it, and the GPU then idles while the host
# queues the next step. For a large model the GPU's work hides that; this model's step is so small
# (below) that the waiting can be a large part of it.
#
# Every time in this chapter is this run's, on this machine. On a machine shared with other work (a
# build server, a laptop busy elsewhere) the same loop can take twice as long from one minute to the
# next, so read the committed tables for a machine's capability. Three loops, the same maths:

# %%
loops = {
    "batch copied from host, .item() each step": dict(data=host_images, item=True),
    "data on device, .item() each step": dict(item=True),
    "data on device, no host sync": {},
}
timed = {name: timed_loop(loop_steps, **options) for name, options in loops.items()}
seconds = {name: s for name, (s, _) in timed.items()}
losses = {name: v for name, (_, v) in timed.items()}
# reading the loss does not change it: the same losses, step for step (to the rounding
# of cuDNN's convolution gradients, which are not deterministic on a GPU)
rounding = {"rtol": 1e-3, "atol": 1e-4} if on_gpu else {"rtol": 0, "atol": 0}
torch.testing.assert_close(
    losses["data on device, .item() each step"],
    losses["data on device, no host sync"],
    **rounding,
)
if not on_gpu:  # on a CPU the host copy is no copy: the same batches, the same losses
    assert torch.equal(
        losses["batch copied from host, .item() each step"],
        losses["data on device, .item() each step"],
    )
sync_cost = (
    seconds["data on device, .item() each step"]
    / seconds["data on device, no host sync"]
)
pd.DataFrame(
    {
        "ms per step": {k: 1e3 * s for k, s in seconds.items()},
        "images/s": {k: config.batch_size / s for k, s in seconds.items()},
    }
)

# %%
if on_gpu:
    text = (
        f"On this GPU ({where}) a `.item()` at every step made the loop "
        f"{sync_cost:.2f}x as long as the loop that never waits."
    )
else:
    text = (
        f"On a CPU the device is the host: `.to(dev)` copies nothing and `.item()` "
        f"waits for nothing, so the three loops differ by noise only ({sync_cost:.2f}x "
        f"here, measured on a machine that may be shared). The difference appears on a "
        f"GPU; no GPU run of this chapter is committed yet, so run it on one to see it."
    )
say(text)

# %% [markdown]
# The package's trainer never waits inside its loop: every step writes its metrics into a buffer on the
# device, and the history is read to the host once every `log_every` steps (its one host sync,
# `Trainer._flush`), where the NaN check also happens.
#
# ## How fast, and how far from the machine's peak
#
# `vmivae bench` measures the package's training step: each variant changes one option of the fused
# step, trains on device-resident batches of 124, runs a warm-up and then timed blocks, and reports the
# median images/s. It also counts the step's FLOPs (`torch.utils.flop_counter`) and sets the achieved
# rate beside the machine's practical peak: the faster of a large matrix product and a large
# convolution, measured the same way. Its Python API is `vmivae.perf.bench`: `run_bench(BenchSettings())`
# measures the whole table (`to_markdown` writes it as `benchmarks/` holds it), `bench_variant` one row.
# Here a few rows run on this machine, with short blocks.

# %%
bf16_ok = native_bf16(dev)  # bf16 computed natively (recent GPUs, some CPUs)
live = ["alternating (reference-style)", "fused"] + ["fused + bf16"] * bf16_ok
live += ["fused + cuda-graph", "fused + cuda-graph + bf16"] if on_gpu else []
settings = bench.BenchSettings(
    presets=("paper-joint",),
    batch_size=124,
    warmup=warmup,
    steps=bench_steps,
    repeats=3,
    device=str(dev),
)
bench_data = load("mnist-5k", "train")
measured = {
    v: bench.bench_variant("paper-joint", bench.VARIANTS[v], bench_data, settings, dev)
    for v in live
}
peaks = {
    "fp32": max(bench.matmul_peak(dev, seconds=0.3), bench.conv_peak(dev, seconds=0.3))
}
if bf16_ok:
    peaks["bf16"] = max(
        bench.matmul_peak(dev, torch.bfloat16, seconds=0.3),
        bench.conv_peak(dev, torch.bfloat16, seconds=0.3),
    )
for v, row in measured.items():
    row["peak_fraction"] = (
        row["achieved_gflops"] / peaks["bf16" if "bf16" in v else "fp32"]
    )
print(
    f"peak on {where}: " + ", ".join(f"{k} {g:.0f} GFLOP/s" for k, g in peaks.items())
)


# %% [markdown]
# The committed tables were measured the same way, with longer blocks, by `vmivae bench` on an NVIDIA
# H100 (through `scripts/gpu_check.py`) and on a 2-core CPU with native bf16:


# %%
def committed(name):
    """A committed `vmivae bench` result (benchmarks/): paper-joint's rows, by name."""
    path = Path(benchmarks_dir) / f"{name}.json"
    if not path.is_file():  # a hosted notebook has the package, not the repository
        return None
    result = json.loads(path.read_text())
    rows = {r["variant"]: r for r in result["rows"] if r["preset"] == "paper-joint"}
    dated = re.search(r"(\d{4}-\d{2}-\d{2})\.", path.with_suffix(".md").read_text())
    return {
        "device": result["device"],
        "torch": result["torch"],
        "date": dated.group(1) if dated else "date not in the file",
        "rows": rows,
        "peak": result["peak_gflops"],
    }


today = time.strftime("%Y-%m-%d")
tables = {
    "this machine": {"device": where, "date": today, "rows": measured, "peak": peaks}
}
for label, name in [
    ("H100", "nvidia-h100-80gb-hbm3"),
    ("2-core CPU", "cpu-2core-bf16"),
]:
    tables[label] = committed(name)
    if tables[label] is None:
        print(f"{benchmarks_dir}/{name}.json not found: only this machine is shown")
tables = {label: t for label, t in tables.items() if t is not None}
for label, t in tables.items():
    version = t.get("torch", torch.__version__)
    print(f"{label}: {t['device']}, torch {version}, {t['date']}")


def column(key, scale=1.0):
    """One number of every table, rows: variants of the live bench and the H100's."""
    names = list(dict.fromkeys(live + list(tables.get("H100", {"rows": {}})["rows"])))
    return pd.DataFrame(
        {
            label: {
                v: t["rows"][v][key] * scale if t["rows"].get(v, {}).get(key) else None
                for v in names
            }
            for label, t in tables.items()
        }
    )


throughput = column("images_per_second")
throughput

# %% [markdown]
# The same rows as a percentage of each machine's peak (the H100's "fp32" peak is its TF32 convolution;
# bf16 rows are compared with the bf16 peak):

# %%
column("peak_fraction", 100)

# %%
fig, ax = plt.subplots(figsize=(7.8, 4.2))
throughput.plot.barh(ax=ax, logx=True, width=0.8)
ax.invert_yaxis()
ax.set_xlabel("images per second (log scale), paper-joint, batch 124")
ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
nb.show(
    fig,
    "throughput",
    caption="Training-step throughput of the package's step variants: measured live on "
    f"this machine ({where}) beside the committed tables (an H100 GPU, a 2-core CPU). "
    "A missing bar: the variant does not run there (CUDA graphs need a GPU) or was not "
    "measured.",
    alt="Horizontal bar chart of images per second on a log axis, one group of bars "
    "per step variant, one bar per machine.",
)

# %% [markdown]
# ### Why this model is bound by launches on a GPU
#
# The FLOPs of one step are counted in the table's rows: a fraction of a GFLOP per image, a few tens
# of GFLOP for a batch. A GPU's peak does that arithmetic in a fraction of a millisecond (computed
# below). What it cannot shorten is the number of operations: every convolution, BatchNorm,
# activation, loss term and Adam update is at least one kernel, and the host launches them one at a
# time through Python and PyTorch's dispatcher. Count them in one step:


# %%
class OpCounter(TorchDispatchMode):
    """Counts the tensor operations run inside it (each one kernel or more on a GPU)."""

    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


joint = make_config("paper-joint", "quick", {**bench.BASE, "batch_size": 124})
trainer = Trainer(joint, bench_data, dev)
with OpCounter() as counter:
    trainer.stepper(trainer.images[:124], torch.tensor(1.0, device=dev))
print(f"one fused step of paper-joint: {counter.ops} tensor operations")

# %%
if "H100" in tables:
    h100, h100_peak = tables["H100"]["rows"]["fused"], tables["H100"]["peak"]["fp32"]
    step_ms = 1e3 * 124 / h100["images_per_second"]
    maths_ms = 1e3 * h100["flops_per_image"] * 124 / (h100_peak * 1e9)
    assert (
        maths_ms < 0.05 * step_ms
    )  # the arithmetic is a few percent of the step at most
    say(
        f"On the H100 (committed) the eager fused step took {step_ms:.1f} ms; its "
        f"{h100['flops_per_image'] * 124 / 1e9:.0f} GFLOP at the measured peak take "
        f"{maths_ms:.3f} ms, {maths_ms / step_ms:.1%} of it. The rest is the host "
        f"handing out about {counter.ops} operations: "
        f"{1e3 * step_ms / counter.ops:.0f} µs each. "
        f"A bigger batch or bf16 makes the arithmetic cheaper, not the launches."
    )

# %% [markdown]
# A CPU is different: it is the host, with nothing to launch, and the same step keeps its arithmetic
# units busy. The committed tables say how much of each machine's peak the eager fused step used:

# %%
share = {label: t["rows"]["fused"]["peak_fraction"] for label, t in tables.items()}
if {"H100", "2-core CPU"} <= set(share):
    assert share["2-core CPU"] > 0.3 > 0.1 > share["H100"]
    say(
        f"Eager fused step, committed: {share['2-core CPU']:.0%} of the 2-core CPU's "
        f"peak, {share['H100']:.1%} of the H100's; on this machine, live: "
        f"{share['this machine']:.0%}."
    )

# %% [markdown]
# So on a GPU every improvement below is one of two kinds: fewer launches (a fused step, a captured
# graph) or more work per launch (several runs in one step).
#
# ## What makes it fast
#
# ### bf16 autocast
#
# Under `torch.autocast(device, dtype=torch.bfloat16)` matrix products and convolutions run in bf16,
# half the bytes and, where the hardware has bf16 units, twice the arithmetic rate or more; the loss is
# still computed in fp32 (`elbo_step` casts the outputs back). In the loop it is one argument:

# %%
if bf16_ok:
    seconds["data on device, bf16 autocast"], bf16_losses = timed_loop(
        loop_steps, amp=torch.bfloat16
    )
    fp32_first = losses["data on device, no host sync"][0]
    # the same first batch and weights: bf16 changes the first loss by rounding only
    assert abs(bf16_losses[0] - fp32_first) < 0.02 * fp32_first
    bf16_gain = (
        seconds["data on device, no host sync"]
        / seconds["data on device, bf16 autocast"]
    )
    text = f"Here ({where}) bf16 autocast made the loop {bf16_gain:.2f}x as fast."
else:
    text = (
        f"This {dev.type} computes bf16 only by emulation, which is slower than fp32: "
        f"the loop keeps fp32 (the package's `amp: auto` decides the same)."
    )
say(text)

# %% [markdown]
# Where bf16 does not help: on a GPU, an eager step of this model is bound by launches, and autocast
# adds cast kernels. The committed H100 rows show it:

# %%
if "H100" in tables:
    rate = {v: r["images_per_second"] for v, r in tables["H100"]["rows"].items()}
    eager = rate["fused + bf16"] / rate["fused"]
    graphed_gain = rate["fused + cuda-graph + bf16"] / rate["fused + cuda-graph"]
    assert eager < 1 < graphed_gain
    say(
        f"H100 (committed): bf16 made the eager fused step {eager:.2f}x as fast, and "
        f"the captured step {graphed_gain:.2f}x. bf16 pays only once launches are out "
        f"of the way; `amp: auto` therefore keeps fp32 on CUDA."
    )

# %% [markdown]
# ### Fused kernels and the fused step
#
# Two different fusions. `torch.optim.Adam(..., fused=True)` updates every parameter tensor in one
# kernel instead of a chain of elementwise operations: in the loop, one argument. The package's *fused
# step* (chapter 2) does one VAE forward pass for both the VAE's loss and $Q$'s, where the reference
# code's alternating schedule does two: less arithmetic and fewer launches. The live bench above has
# both steps; the loop gets fused Adam:

# %%
seconds["data on device, fused Adam"], fused_losses = timed_loop(loop_steps, fused=True)
# the same update rule: the losses agree to rounding
torch.testing.assert_close(
    fused_losses, losses["data on device, no host sync"], rtol=1e-3, atol=1e-4
)
ratio = {
    "fused Adam in the loop": seconds["data on device, no host sync"]
    / seconds["data on device, fused Adam"],
    "fused step / alternating (live bench)": measured["fused"]["images_per_second"]
    / measured["alternating (reference-style)"]["images_per_second"],
}
pd.Series(ratio, name=f"speed-up on {where}").to_frame()

# %% [markdown]
# ### The captured step (CUDA graph; GPU only)
#
# The biggest gain on a GPU removes the launches themselves: the whole step is recorded once as a CUDA
# graph and then replayed by a single launch. A step can be captured only if it obeys three rules:
#
# * **static shapes and addresses**: the graph replays the same kernels on the same memory, so the batch
#   is copied into (or gathered inside) a fixed buffer, and every batch has the same size;
# * **no host syncs**: nothing in the step may read a value to the host (`.item()`, `bincount` sizing
#   its output, indexing with a Python list, which copies an index tensor from the host); capture fails
#   loudly if something does;
# * **a capturable optimiser**: Adam keeps its step count on the device (`capturable=True`).
#
# The loop's step already obeys them once the batch is drawn on the device. The cell below captures
# it, warm-up on a side stream first, as PyTorch requires. It needs a GPU; elsewhere it is skipped.


# %%
def captured_loop(steps):
    """The loop's step, batch draw included, captured as one CUDA graph and replayed:
    seconds per step and the losses (GPU only)."""
    torch.manual_seed(seed)
    vae = vmivae.models.VAE(image_shape, config.latent).to(dev)
    opt = torch.optim.Adam(vae.parameters(), lr=config.lr, capturable=True)

    def step():  # static shapes, no host sync: a graph can hold it
        idx = torch.randint(len(images), (config.batch_size,), device=dev)
        return elbo_step(vae, opt, images[idx])

    side = torch.cuda.Stream(dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):  # warm-up: Adam's state, cuDNN's choices
        for _ in range(warmup):
            step()
    torch.cuda.current_stream(dev).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = step()  # recorded, not run
    sync()
    start = time.perf_counter()
    replayed = [(graph.replay(), static_loss.clone())[1] for _ in range(steps)]
    sync()
    return (time.perf_counter() - start) / steps, torch.stack(replayed).cpu()


if on_gpu:  # GPU only
    seconds["data on device, captured (CUDA graph)"], graph_losses = captured_loop(
        loop_steps
    )
    assert torch.isfinite(graph_losses).all()
    graph_gain = (
        seconds["data on device, no host sync"]
        / seconds["data on device, captured (CUDA graph)"]
    )
    say(f"On {where} the captured loop ran {graph_gain:.1f}x as fast.")
elif "H100" in tables:
    rate = {v: r["images_per_second"] for v, r in tables["H100"]["rows"].items()}
    say(
        "No GPU here. Committed, H100 (`benchmarks/nvidia-h100-80gb-hbm3.md`, "
        f"{tables['H100']['date']}): the package's captured fused step ran "
        f"{rate['fused + cuda-graph']:.0f} images/s, "
        f"{rate['fused + cuda-graph'] / rate['fused']:.1f}x its eager fused step."
    )

# %% [markdown]
# The package captures its own step the same way (`capture: cuda-graph`, `vmivae/perf/graphed.py`). Its
# step broke two of the rules in small places, and `vmivae.perf.capture_safe` holds the replacements:
# the Gaussian MI targets `z[:, [0, 1]]` are taken by slices (an earlier H100 check found the list index
# copying from the host during capture; the note in `benchmarks/nvidia-h100-80gb-hbm3.md` names the
# function), and the code counts use a comparison instead of `bincount`:

# %%
show_code(capture_safe.columns, capture_safe.code_counts)

# %%
z, logits = torch.randn(124, 16), torch.randn(124, 10)
torch.testing.assert_close(capture_safe.columns(z, (0, 1, 5)), z[:, [0, 1, 5]])
counts = torch.bincount(logits.argmax(dim=-1), minlength=10)
assert torch.equal(capture_safe.code_counts(logits), counts)
print("the capture-safe forms give the plain forms' values")

# %% [markdown]
# How the package warms up and captures, with Adam made capturable only while capturing:

# %%
show_code(graphed.GraphedStep.__call__, graphed.GraphedStep._capture)

# %% [markdown]
# ### Several runs at once
#
# A study trains the same model with several seeds or weights. On a GPU one run leaves it mostly idle, so
# `vmivae.perf.grouped.GroupTrainer` stacks G runs' weights along a new leading dimension and takes one
# batched step for all of them (`torch.func.vmap`): about the launches of one run for the work of G.
# Each member stays the run it would be alone, to float rounding (`tests/test_grouped.py`). A CPU is
# already busy with one run's arithmetic; whatever a group gains there comes from one process doing
# the work of several. Measured here:

# %%
sizes = (4, 16) if on_gpu else (2,)
group_settings = dataclasses.replace(settings, repeats=2)
groups = {1: measured["fused"]}  # one run: the bench's fused step above
for size in sizes:
    groups[size] = bench_group.bench_group(
        "paper-joint", bench.BASE, size, bench_data, group_settings, dev
    )
gain = groups[sizes[-1]]["images_per_second"] / groups[1]["images_per_second"]
say(
    f"Here ({where}) {sizes[-1]} runs in one step trained {gain:.2f}x the images per "
    f"second of one run alone."
)
pd.DataFrame(
    {
        f"{g} run{'s' * (g > 1)}": {
            "images/s, all runs": r["images_per_second"],
            "images/s per run": r["images_per_second"] / g,
        }
        for g, r in groups.items()
    }
).T

# %%
if "H100" in tables:
    rate = {v: r["images_per_second"] for v, r in tables["H100"]["rows"].items()}
    sixteen, captured = rate["fused, 16 runs grouped"], rate["fused + cuda-graph"]
    assert sixteen < captured
    say(
        f"Committed, H100: 16 grouped runs trained {sixteen:.0f} images/s together, "
        f"{sixteen / 16:.0f} each; one captured run alone trained {captured:.0f}. "
        f"There, capturing each run beats grouping them."
    )

# %% [markdown]
#
# ### All the loop's changes, on this machine

# %%
fig, ax = plt.subplots(figsize=(7.8, 3.6))
per_step = pd.Series({k: 1e3 * s for k, s in seconds.items()})
per_step.plot.barh(ax=ax, color="#4c72b0")
ax.invert_yaxis()
ax.set_xlabel(f"milliseconds per step (batch {config.batch_size}), {where}")
nb.show(
    fig,
    "loop_times",
    caption=f"The chapter's loop, {loop_steps} timed steps of each version, {where}: "
    "from a batch copied from the host with a host sync at every step to the leanest "
    "loop this device runs. On a CPU the first three differ by noise only.",
    alt="Horizontal bar chart of milliseconds per training step for each version of "
    "the loop.",
)

# %% [markdown]
# ## More than one GPU
#
# `torchrun` starts one process per GPU; `vmivae` notices (`WORLD_SIZE` is set) and trains data-parallel
# with PyTorch's DistributedDataParallel, nccl on GPUs and gloo on CPUs:
#
# ```bash
# # one machine, 4 GPUs
# torchrun --standalone --nproc_per_node=4 -m vmivae train --preset vmi-joint \
#     --profile full --out runs/joint-full
# ```
#
# What changes:
#
# * **the batch**: `batch_size` stays the *effective* batch. Every process draws the same global batch
#   from the same seeded sampler and trains on its contiguous share, `batch_size / N` images; DDP
#   averages the gradients, so a step updates the weights as one process with the whole batch would.
# * **what differs from one process**: BatchNorm's statistics are per process (averaged into every
#   checkpoint), and each process draws the sampling noise of its own share.
# * **who writes**: only rank 0 writes the run folder (config, checkpoints, history, metrics); a
#   failure there is raised on every rank, so no process waits forever.
#
# The sampler's shares, put together, are one process's batch:

# %%
one = BatchSampler(len(images), 124, seed)
shares = [BatchSampler(len(images), 124, seed, rank=r, world_size=2) for r in range(2)]
for _ in range(3):
    assert torch.equal(one.next(), torch.cat([s.next() for s in shares]))
try:
    BatchSampler(len(images), 124, seed, rank=0, world_size=8)
except VMIVAEError as exc:
    print(f"8 processes: {exc}")
show_code(BatchSampler.next, distributed.setup)

# %% [markdown]
# What stays the same, checked by `tests/test_distributed.py` with two CPU processes under `torchrun`:
# the gradient DDP applies is the average of the per-process gradients (to $10^{-5}$; both steps, one and
# two MI weights, the Gaussian preset); the two processes end with bit-identical weights and BatchNorm
# statistics; a run stopped and resumed under `torchrun` equals the uninterrupted one bit for bit; and
# two processes land within 10% of one process's loss with the same effective batch (close, not equal:
# the noise and BatchNorm differ, as above). Capture and grouping are one-process features: `capture:
# auto` stays eager under `torchrun`, and an explicit `cuda-graph` with several processes is an error.
#
# ## A real budget
#
# The `full` profile is the paper's budget:

# %%
full = make_config("vmi-joint", "full")
seen = full.steps * full.batch_size
print(
    f"full profile: {full.steps:,} steps of {full.batch_size} on {full.dataset}, lr "
    f"{full.lr:g}:\n{seen / 1e6:.1f} million images, {seen / 60_000:.0f} epochs of the "
    f"60,000 training digits"
)
estimate = {
    f"{label}, {variant}": seen / t["rows"][variant]["images_per_second"] / 3600
    for label, t in tables.items()
    for variant in ("fused", "fused + bf16", "fused + cuda-graph")
    if t["rows"].get(variant, {}).get("images_per_second")
}
if {"H100", "2-core CPU"} <= set(tables):  # minutes on the GPU, hours on the CPU
    assert (
        estimate["H100, fused + cuda-graph"] < 1 < estimate["2-core CPU, fused + bf16"]
    )
pd.Series(estimate, name="hours of training (MI evaluation aside)").to_frame()

# %% [markdown]
# On a GPU the cell below trains the true-bound joint model (`vmi-joint`, chapter 3) at `gpu_profile`
# (`full` by default; `smoke` when the whole chapter runs under the smoke profile) with the captured
# step, measures it, and shows its categories and its clustering accuracy. The run goes into the run
# cache like every chapter's run, so a second execution reuses it. Full MNIST is downloaded on first
# use.

# %%
if on_gpu:  # GPU only: minutes at the full budget
    spec = nb.spec("vmi-joint", capture="cuda-graph")
    (run,), (result,) = nb.measured([dataclasses.replace(spec, profile=gpu_profile)])
    nb.show(
        plots.category_rows(run.vae, n_per_category=10, title="one row per category"),
        f"categories_{gpu_profile}",
        caption=f"vmi-joint at the {gpu_profile} profile, trained on {where}: each row "
        "decodes one category with the same ten Gaussian codes.",
        alt="A 10 by 10 grid of generated digits, one row per category.",
    )
    display(
        pd.Series(
            {
                "steps": run.metrics["steps"],
                "images/s": run.metrics["images_per_second"],
                "accuracy (Hungarian)": result["cluster_accuracy"]["hungarian"],
                "accuracy (majority)": result["cluster_accuracy"]["majority"],
                "NMI": result["nmi"],
                "codes used (test)": result["codes_used"],
            },
            name=f"vmi-joint, {gpu_profile}, {where}",
        ).to_frame()
    )
else:
    say(
        "No GPU here, and no full-budget GPU run is committed in this repository yet: "
        "this section has no numbers of its own until the chapter runs on a GPU. The "
        "longest committed training of this model is chapter 5's study:"
    )

# %%
if not on_gpu and Path(results_dir).is_dir():
    study = pd.read_csv(Path(results_dir) / "runs.csv")
    true_bound = study[study.variant == "true-bound"]
    meta = json.loads((Path(results_dir) / "meta.json").read_text())
    names = {"hungarian": "accuracy (Hungarian)", "nmi": "NMI", "codes_used": "codes"}
    means = true_bound.groupby("dataset")[["steps", *names]].mean()
    display(means.rename(columns=names))
    print(
        f"the true bound on reconstructions (vmi-joint), mean of "
        f"{true_bound.seed.nunique()} seeds,\n{meta['hardware']}, {meta['date']}: "
        f"{true_bound.steps.max() / full.steps:.1%} of the full budget"
    )

# %% [markdown]
# ## Exercises
#
# ````{admonition} Exercise 6.1: find the host syncs
# Which lines of this loop make the host wait for the GPU, and how would you remove each?
# ```python
# for step in range(steps):
#     x = train_images[torch.randint(len(train_images), (124,))].cuda()
#     loss = elbo_step(vae, opt, x)
#     if loss < best:
#         best = loss.item()
#     history.append(float(loss))
# ```
# ````
#
# ```{admonition} Answer
# :class: dropdown
# Three. `.cuda()` copies a batch from pageable host memory: keep the images on the device and draw the
# indices there. `if loss < best:` turns a device tensor into a Python bool, and `.item()` and `float()`
# read it: keep a running minimum on the device (`best = torch.minimum(best, loss)`), append the tensors
# and read them all once, every `log_every` steps or at the end, as the package's trainer does.
# ```
#
# ```{admonition} Exercise 6.2: launches or arithmetic?
# From the committed H100 table: the eager fused step and the captured one do the same arithmetic. What
# does the ratio of their images/s say about how long the GPU spends computing, and why does bf16 help
# only the captured step?
# ```
#
# ```{admonition} Answer
# :class: dropdown
# The captured step replays the same kernels without the host. If it runs $r$ times as fast, at least
# a share $1 - 1/r$ of the eager step is the GPU waiting for the host to launch its kernels (the
# chapter's H100 cells give $r$). bf16 shortens the kernels, which only shows once they no longer wait
# for their launch; eagerly it adds cast kernels to a launch-bound step.
# ```
#
# ```{admonition} Exercise 6.3: eight GPUs
# You run the `full` profile with `torchrun --nproc_per_node=8`. What happens, and which two fixes keep
# the paper's setup as close as possible?
# ```
#
# ```{admonition} Answer
# :class: dropdown
# It stops before training with the sentence printed above: 124 images cannot be split into 8 equal
# shares. Use 4 processes (31 images each), or set `batch_size=128` (16 each) and accept a batch 3%
# larger than the paper's. With 8 GPUs for this model, eight independent runs (or one captured run
# per GPU) use them better than one data-parallel run of 16-image shares.
# ```
#
# ## Key takeaways
#
# * Keep a small dataset on the device and read values to the host once per logging interval, not
#   per step: on a GPU every `.item()` makes the host wait.
# * This model's step is tiny: on a CPU it is bound by arithmetic, on a GPU by kernel launches. What pays
#   on a GPU is fewer launches (the fused step, a captured CUDA graph) or more work per launch (several
#   runs in one step); bf16 pays only once launches are out of the way.
# * `torchrun` trains one run on several GPUs with the same effective batch; only rank 0 writes, and a
#   resumed run continues bit for bit on CPUs.
# * The paper's budget is minutes of a captured step on one H100 and hours on a small CPU.

# %%
nb.timing()
