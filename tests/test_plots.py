"""Every figure function returns a Figure with content, from a real smoke run."""

import base64
import re
import struct

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.collections import LineCollection, QuadMesh
from matplotlib.figure import Figure

from vmivae import load, load_run, plots


@pytest.fixture(scope="module")
def run(smoke_runs):
    return load_run(smoke_runs["paper-joint"])


SNAKE_CASE = re.compile(r"\b[a-z0-9]+_[a-z0-9_]+\b")  # a raw column name such as kl_cont


def _check(fig, tmp_path=None):
    """A figure with content, labelled in words, that fits the book's column when saved."""
    assert isinstance(fig, Figure) and fig.axes
    fig.canvas.draw()
    texts = [t for ax in fig.axes for t in (ax.get_xlabel(), ax.get_ylabel(), ax.get_title())]
    texts += [fig._suptitle.get_text()] if fig._suptitle else []
    assert not [t for t in texts if SNAKE_CASE.search(t)], texts
    if tmp_path is not None:
        plots.save(fig, tmp_path, "figure")
        width = struct.unpack(">II", (tmp_path / "figure.png").read_bytes()[16:24])[0]
        assert width <= 860, f"{width} px wide at {plots.DPI} dpi"
    matplotlib.pyplot.close(fig)


def test_image_figures(run, tmp_path):
    x = load("mnist-5k", "test").images[:32]
    _check(plots.image_grid(x, ncol=16, title="32 digits"), tmp_path)  # 16 columns shrink to the page's width
    _check(plots.reconstructions(run.vae, x, n=6), tmp_path)
    _check(plots.samples(run.vae, n=16), tmp_path)
    _check(plots.traversal(run.vae, "z0", values=[-2, 0, 2], n_rows=2), tmp_path)
    _check(plots.traversal(run.vae, "categorical", n_rows=2), tmp_path)
    _check(plots.grid_2d(run.vae, (0, 1), values=[-1, 0, 1]), tmp_path)
    _check(plots.category_rows(run.vae, n_per_category=3), tmp_path)


def _component(rng):
    nats = rng.uniform(0, 2)
    return {"nats": nats, "ci95": [nats - 0.1, nats + 0.1]}


def test_measurement_figures(run, tmp_path):
    rng = np.random.default_rng(0)
    _check(plots.confusion(rng.integers(0, 10, 200), rng.integers(0, 10, 200)), tmp_path)
    result = {"mi": {"categorical": {"nats": 1.0, "ci95": [0.9, 1.1]}, "z0": {"nats": 0.5, "ci95": [0.4, 0.6]}}}
    _check(plots.mi_profile({"VMI": result, "baseline": result}), tmp_path)
    _check(plots.mi_curves({"VMI": run.history, "baseline": run.history}, "ce_cat", entropy=np.log(10)), tmp_path)
    _check(plots.loss_curves({"VMI": run.history}), tmp_path)
    _check(plots.loss_curves({"VMI": run.history, "baseline": run.history}, columns=("recon", "kl_cat", "tau", "recon_mse")), tmp_path)
    _check(plots.kl_per_dim({"VMI": [0.1, 0.5], "baseline": [0.2, 0.0]}), tmp_path)
    _check(plots.kl_per_dim({"VMI": rng.uniform(0, 1, 32), "baseline": rng.uniform(0, 1, 32)}), tmp_path)
    _check(plots.temperature_schedules(), tmp_path)
    _check(plots.gumbel_softmax_samples(), tmp_path)
    frame = pd.DataFrame({"recon_mse": [0.05, 0.06], "mi_categorical": [0.1, 1.2], "lambda_cat": [0.0, 0.01]})
    _check(plots.tradeoff(frame), tmp_path)
    _check(plots.factor_mi_heatmap({"nats": [[0.1, 0.2]], "latents": ["z0"], "factors": ["x", "y"]}), tmp_path)
    frame = pd.DataFrame({"channel": ["a"], "truth": [1.0], "estimate": [0.9], "lo": [0.8], "hi": [1.0]})
    _check(plots.estimate_vs_truth(frame), tmp_path)


def test_a_long_mi_profile_wraps_into_rows_that_fit_the_page(tmp_path):
    """32 Gaussian dims and the category of two models: rows of at most 12 groups, not a 3000 px strip."""
    rng = np.random.default_rng(0)
    results = {m: {"mi": {"categorical": _component(rng), **{f"z{j}": _component(rng) for j in range(32)}}} for m in ("VMI", "baseline")}
    fig = plots.mi_profile(results)
    assert len(fig.axes) == 3 and [len(ax.get_xticks()) for ax in fig.axes] == [12, 12, 9]
    assert len({ax.get_ylim() for ax in fig.axes}) == 1  # one shared scale
    _check(fig, tmp_path)


def test_tradeoff_labels_never_sit_on_the_data():
    frame = pd.DataFrame({"recon_mse": [0.05, 0.0501, 0.0502], "mi_categorical": [0.1, 0.11, 1.2], "lambda_cat": [0.0, 0.001, 0.01]})
    fig = plots.tradeoff(frame)
    ax = fig.axes[0]
    assert not ax.texts  # no annotations next to points (they overlapped where points crowd)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["λ = 0", "λ = 0.001", "λ = 0.01"]
    assert ax.get_xlabel() == "reconstruction MSE (per pixel, images in [-1, 1])" and ax.get_ylabel() == "MI of the categorical code (nats)"
    matplotlib.pyplot.close(fig)


def test_loss_curves_are_labelled_in_words():
    history = pd.DataFrame({"step": [0, 1, 2], "recon": [1.0, 0.9, 0.8], "kl_cont": [0.1, 0.2, 0.3]})
    fig = plots.loss_curves({"VMI": history})
    assert [ax.get_title() for ax in fig.axes] == ["reconstruction loss (training objective)", "KL of the Gaussian code (nats)"]
    assert {ax.get_xlabel() for ax in fig.axes} == {"training step"}
    matplotlib.pyplot.close(fig)


def test_heat_maps_compared_side_by_side_share_one_colour_scale(tmp_path):
    a = {"nats": [[0.1, 2.0], [0.3, 0.4]], "latents": ["z0", "z1"], "factors": ["x", "y"]}
    b = {"nats": [[0.1, 0.2], [0.3, 0.5]], "latents": ["z0", "z1"], "factors": ["x", "y"]}
    vmax = plots.factor_mi_vmax(a, b)
    assert vmax == 2.0
    single = plots.factor_mi_heatmap(b, vmax=vmax)
    assert single.axes[0].collections[0].get_clim() == (0, 2.0)  # not b's own maximum, 0.5
    matplotlib.pyplot.close(single)
    both = plots.factor_mi_heatmaps({"VMI": a, "baseline": b})
    meshes = [c for ax in both.axes if ax.get_title() in ("VMI", "baseline") for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 2 and {m.get_clim() for m in meshes} == {(0, 2.0)}
    _check(both, tmp_path)


@pytest.fixture
def seed_frame():
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"dataset": d, "variant": v, "seed": s, "hungarian": rng.uniform(0.4, 0.9)}
                         for d in ("mnist-5k", "mnist") for v in ("baseline", "paper", "true-bound") for s in range(3)])


def test_seed_points_draw_every_seed_and_the_mean_with_its_interval(seed_frame, tmp_path):
    from vmivae.measure.stats import mean_interval

    fig = plots.seed_points(seed_frame, x="variant", y="hungarian", hue="dataset")
    ax = fig.axes[0]
    dots = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets()) == 3])
    assert len(dots) == len(seed_frame) == 18
    assert sorted(dots[:, 1]) == pytest.approx(sorted(seed_frame["hungarian"]))  # jittered sideways, never in value
    values = seed_frame[(seed_frame.variant == "paper") & (seed_frame.dataset == "mnist")]["hungarian"].to_numpy()
    ci = mean_interval(values)  # the bootstrap interval of the mean: inside [min, max] of the seeds
    means = [line for line in ax.lines if len(line.get_xdata()) == 1]
    assert any(line.get_ydata()[0] == pytest.approx(values.mean()) for line in means)
    bars = [np.asarray(seg) for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()]
    assert any(seg[:, 1].min() == pytest.approx(ci.low) and seg[:, 1].max() == pytest.approx(ci.high) for seg in bars)
    assert values.min() <= ci.low < ci.high <= values.max()
    assert ax.get_ylabel() == "accuracy (Hungarian matching)"
    _check(fig, tmp_path)
    labels = {"baseline": "baseline (lambda = 0)", "paper": "paper: -CE on reconstructions", "true-bound": "true bound: H(c) - CE"}
    wide = plots.seed_points(seed_frame, labels=labels, interval="sd")  # long names: categories on the y axis
    assert [t.get_text() for t in wide.axes[0].get_yticklabels()] == list(labels.values())
    _check(wide, tmp_path)
    with pytest.raises(ValueError, match="interval"):
        plots.seed_points(seed_frame, interval="iqr")


def test_codes_used_curves(tmp_path):
    rows = [{"dataset": d, "variant": v, "seed": s, "step": t, "codes_used": 2 + t // 100 + s}
            for d in ("mnist-5k", "mnist") for v in ("baseline", "paper") for s in range(3) for t in range(0, 500, 100)]
    fig = plots.codes_used_curves(pd.DataFrame(rows), n_codes=10)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["mnist-5k", "mnist"]
    curves = [line for line in panels[0].lines if line.get_linestyle() != ":"]  # not the dotted line at K
    widths = sorted({line.get_linewidth() for line in curves})
    assert len(widths) == 2  # light lines per seed, a bold mean
    bold = [line for line in curves if line.get_linewidth() == widths[-1]]
    assert len(bold) == 2 and list(bold[0].get_ydata()) == [3, 4, 5, 6, 7]  # the mean over seeds 0, 1, 2
    assert len([line for line in curves if line.get_linewidth() == widths[0]]) == 6  # 2 variants x 3 seeds
    assert panels[0].get_xlabel() == "training step" and panels[0].get_ylabel() == "categories used (of the code's K)"
    _check(fig, tmp_path)
    one = plots.codes_used_curves(pd.DataFrame(rows).query("dataset == 'mnist'").drop(columns="dataset"))
    assert len([ax for ax in one.axes if ax.get_visible()]) == 1
    _check(one, tmp_path)


def test_traversal_of_a_missing_code_is_an_error(smoke_runs):
    gaussian = load_run(smoke_runs["paper-gaussian"])
    with pytest.raises(ValueError, match="no categorical code"):
        plots.category_rows(gaussian.vae)


def test_figure_saver_writes_the_stable_name_and_displays_once_with_caption_and_alt(tmp_path, monkeypatch):
    matplotlib.pyplot.close("all")
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append((obj, kw)))
    fig = plots.kl_per_dim({"VMI": [0.1, 0.5]})
    plots.figure_saver(tmp_path / "figures", "07")(fig, "kl", caption="KL per dim: z1 carries more.", alt="Bar chart of KL <per> dim.")
    png = (tmp_path / "figures" / "07_kl.png").read_bytes()
    assert [p.name for p in (tmp_path / "figures").iterdir()] == ["07_kl.png"]
    assert len(shown) == 1 and shown[0][1] == {"raw": True}
    bundle = shown[0][0]
    assert base64.b64decode(bundle["image/png"]) == png and bundle["text/plain"] == "KL per dim: z1 carries more."
    html = bundle["text/html"]
    width = struct.unpack(">II", png[16:24])[0]
    assert html.startswith('<figure class="vmivae-figure"><img src="data:image/png;base64,') and f'width="{width}"' in html
    assert 'alt="Bar chart of KL &lt;per&gt; dim."' in html and "<figcaption>KL per dim: z1 carries more.</figcaption>" in html
    assert not matplotlib.pyplot.get_fignums()  # the pyplot handle is closed: no second inline copy


@pytest.mark.parametrize("caption, alt", [(None, "a"), ("a", None), ("  ", "a"), ("a", "")])
def test_a_figure_needs_a_caption_and_alt_text(tmp_path, caption, alt):
    show = plots.figure_saver(tmp_path, "07")
    fig = plots.kl_per_dim({"VMI": [0.1, 0.5]})
    with pytest.raises(ValueError, match="caption|alt text"):
        show(fig, "kl", caption=caption, alt=alt)
    matplotlib.pyplot.close(fig)
    with pytest.raises(TypeError):
        show(plots.kl_per_dim({"VMI": [0.1]}), "kl")  # both are required keyword arguments
    matplotlib.pyplot.close("all")


def test_learning_curves_draw_each_seed_and_the_mean_on_a_doubling_budget_axis(tmp_path):
    rows = [{"variant": v, "seed": s, "step": b, "hungarian": 0.2 + 0.1 * i + 0.01 * s + 0.02 * j, "codes_used": 10,
             "mi_categorical": 1.0, "recon_mse": 0.06}
            for i, v in enumerate(("baseline", "true-bound")) for s in range(3) for j, b in enumerate((500, 1000, 2000, 4000))]
    fig = plots.learning_curves(pd.DataFrame(rows))
    first = fig.axes[0]
    bottom = fig.axes[2]  # the panels share the budget axis, labelled on the bottom row
    assert len(fig.axes) == 4 and first.get_xscale() == "log" and [t.get_text() for t in bottom.get_xticklabels()] == ["500", "1,000", "2,000", "4,000"]
    assert len(first.lines) == 2 * (3 + 1)  # per variant: a line per seed and the mean
    mean = first.lines[3]  # baseline's mean, drawn after its three seeds
    assert np.allclose(mean.get_ydata(), [0.21, 0.23, 0.25, 0.27])
    _check(fig, tmp_path)


def test_digit_rows_put_the_code_matched_to_digit_d_in_row_d():
    per, k = 2, 10
    grid = torch.stack([torch.full((1, 4, 4), code / 10.0) for code in range(k) for _ in range(per)])  # row k: value k/10
    labels = np.repeat(np.arange(k), 20)
    clusters = (labels + 3) % k  # digit d is coded as d + 3
    fig = plots.digit_rows(grid, clusters, labels, per)
    names = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert names[0] == "0 (code 3, 100%)" and names[9] == "9 (code 2, 100%)"
    mosaic = fig.axes[0].images[0].get_array()
    assert mosaic[1 + 2, 1 + 2] == pytest.approx((3 / 10.0 + 1) / 2, abs=1e-6)  # row 0 shows code 3 (as [0, 1] grey)
    _check(fig)
