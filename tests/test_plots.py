"""Every figure function returns a Figure with content, from a real smoke run."""

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from vmivae import load, load_run, plots


@pytest.fixture(scope="module")
def run(smoke_runs):
    return load_run(smoke_runs["paper-joint"])


def _check(fig):
    assert isinstance(fig, Figure) and fig.axes
    fig.canvas.draw()
    matplotlib.pyplot.close(fig)


def test_image_figures(run):
    x = load("mnist-5k", "test").images[:12]
    _check(plots.reconstructions(run.vae, x, n=6))
    _check(plots.samples(run.vae, n=16))
    _check(plots.traversal(run.vae, "z0", values=[-2, 0, 2], n_rows=2))
    _check(plots.traversal(run.vae, "categorical", n_rows=2))
    _check(plots.grid_2d(run.vae, (0, 1), values=[-1, 0, 1]))
    _check(plots.category_rows(run.vae, n_per_category=3))


def test_measurement_figures(run):
    rng = np.random.default_rng(0)
    _check(plots.confusion(rng.integers(0, 10, 200), rng.integers(0, 10, 200)))
    result = {"mi": {"categorical": {"nats": 1.0, "ci95": [0.9, 1.1]}, "z0": {"nats": 0.5, "ci95": [0.4, 0.6]}}}
    _check(plots.mi_profile({"VMI": result, "baseline": result}))
    _check(plots.mi_curves({"VMI": run.history, "baseline": run.history}, "ce_cat", entropy=np.log(10)))
    _check(plots.loss_curves({"VMI": run.history}))
    _check(plots.kl_per_dim({"VMI": [0.1, 0.5], "baseline": [0.2, 0.0]}))
    _check(plots.temperature_schedules())
    frame = pd.DataFrame({"recon_mse": [0.05, 0.06], "mi_categorical": [0.1, 1.2], "lambda_cat": [0.0, 0.01]})
    _check(plots.tradeoff(frame))
    _check(plots.factor_mi_heatmap({"nats": [[0.1, 0.2]], "latents": ["z0"], "factors": ["x", "y"]}))
    frame = pd.DataFrame({"channel": ["a"], "truth": [1.0], "estimate": [0.9], "lo": [0.8], "hi": [1.0]})
    _check(plots.estimate_vs_truth(frame))


def test_traversal_of_a_missing_code_is_an_error(smoke_runs):
    gaussian = load_run(smoke_runs["paper-gaussian"])
    with pytest.raises(ValueError, match="no categorical code"):
        plots.category_rows(gaussian.vae)


def test_figure_saver_writes_the_stable_name_and_displays_once(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    fig = plots.kl_per_dim({"VMI": [0.1, 0.5]})
    plots.figure_saver(tmp_path / "figures", "07")(fig, "kl")
    assert [p.name for p in (tmp_path / "figures").iterdir()] == ["07_kl.png"]
    assert shown == [fig]
    assert not matplotlib.pyplot.get_fignums()  # the pyplot handle is closed: no second inline copy
