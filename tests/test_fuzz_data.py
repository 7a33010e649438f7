"""fit()'s data argument, as users pass it: it trains, or one VMIVAEError says why and nothing is written."""

import itertools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import vmivae
from vmivae.errors import VMIVAEError

CONFIG = vmivae.make_config("paper-joint", "smoke", {"steps": 1, "batch_size": 2, "log_every": 1})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("finished") / "run"
    vmivae.fit(CONFIG, data=torch.rand(4, 1, 28, 28), out=path, progress=False)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def attempt(data, finished_run: Path) -> str | None:
    """Train on ``data``; on a VMIVAEError check that neither a new folder nor a finished run (--overwrite) was touched."""
    base = Path(tempfile.mkdtemp())
    try:
        out = base / "run"
        try:
            run = vmivae.fit(CONFIG, data=data, out=out, progress=False)
        except VMIVAEError as exc:
            message = str(exc)
            assert message and "\n" not in message
            assert not out.exists(), sorted(p.name for p in out.iterdir())
            before = snapshot(finished_run)
            with pytest.raises(type(exc)):
                vmivae.fit(CONFIG, data=data, out=finished_run, overwrite=True, progress=False)
            assert snapshot(finished_run) == before
            return message
        assert run.metrics["steps"] == 1 and (out / "metrics.json").is_file()
        return None
    finally:
        shutil.rmtree(base, ignore_errors=True)


class NoLength(Dataset):
    def __getitem__(self, i):
        return torch.zeros(1, 28, 28)


class Broken(IterableDataset):
    def __iter__(self):
        yield torch.zeros(1, 28, 28)
        raise FileNotFoundError("img_0001.png")


class Stream(IterableDataset):
    def __iter__(self):
        return iter(torch.rand(8, 1, 28, 28))


def images(n=8, shape=(1, 28, 28)):
    return torch.rand(n, *shape)


BAD = [
    ("empty tensor", lambda: torch.zeros(0, 1, 28, 28), "hold no images"),
    ("empty list", lambda: [], "hold no images"),
    ("NaN pixel", lambda: images().index_put_((torch.tensor([3]),), torch.tensor(float("nan"))), "contain NaN or inf values (the first in image 3)"),
    ("inf pixel", lambda: images().index_put_((torch.tensor([0]),), torch.tensor(float("inf"))), "contain NaN or inf"),
    ("0..255 floats", lambda: images() * 255, "must lie in [0, 1] or [-1, 1]"),
    ("int pixels over 255", lambda: np.full((8, 1, 28, 28), 1000), "integer pixels must lie in 0..255"),
    ("complex", lambda: images().to(torch.complex64), "complex numbers"),
    ("strings", lambda: np.array([["a"] * 28] * 28 * 8).reshape(8, 1, 28, 28), "not numbers"),
    ("flat vectors", lambda: images().reshape(8, 784), "not flat vectors (8, 784); reshape them, e.g. images.reshape(-1, 1, 28, 28)"),
    ("mixed sizes", lambda: [torch.rand(1, 28, 28), torch.rand(1, 32, 32)], "image 0 is (1, 28, 28), image 1 is (1, 32, 32)"),
    ("not square", lambda: images(shape=(1, 28, 32)), "images must be square"),
    ("unsupported side", lambda: images(shape=(1, 30, 30)), "image side 30 cannot be halved twice"),
    ("tiny", lambda: images(shape=(1, 4, 4)), "at least 8x8"),
    ("5 channels", lambda: images(shape=(5, 28, 28)), "1 or 3 channels, got 5"),
    ("string labels", lambda: [(x, "cat") for x in images()], "map class names to integers first"),
    ("fractional labels", lambda: (images(), torch.full((8,), 0.5)), "whole numbers"),
    ("negative labels", lambda: (images(), -torch.ones(8)), "found -1"),
    ("not one-hot", lambda: (images(), torch.ones(8, 3)), "are not one-hot"),
    ("label count", lambda: (images(), torch.zeros(5)), "got 5 labels for 8 images"),
    ("some labels", lambda: [(images()[0], 1)] + [(x,) for x in images()[1:]], "item 1 has no label but item 0 has one"),
    ("a path", lambda: "data/my_images", "takes images, not a path"),
    ("a number", lambda: 42, "cannot read images from a int"),
    ("no len", NoLength, "has no len()"),
    ("failing loader", Broken, "reading item 1 of the dataset failed (FileNotFoundError: img_0001.png)"),
    ("fewer images than a batch", lambda: images(1), "batch_size 2 is larger than the 1 training images"),
    ("pixel just above 1", lambda: images().index_put_((torch.tensor([2]),), torch.tensor(1.0001)), ", 1.0001]; rescale them first"),
    ("endless repeat", lambda: itertools.repeat(torch.rand(1, 28, 28)), "the itertools.repeat given never ends"),
    ("a table", lambda: pandas.DataFrame(np.random.rand(8, 784)), "a pandas DataFrame is a table, not images"),
    ("sparse", lambda: images().to_sparse(), "cannot read the images from a sparse tensor"),
    ("meta", lambda: torch.empty(8, 1, 28, 28, device="meta"), "cannot read the images from a tensor on the meta device"),
    ("images, labels, extra", lambda: (images(), torch.arange(8) % 2, torch.zeros(8)), "a tuple of 3 items was given"),
    ("numbers, not images", lambda: [0.5] * 8, "item 0 of the list is a single float, not an image"),
]


@pytest.mark.parametrize("name,make,message", BAD, ids=[b[0] for b in BAD])
def test_bad_data_is_one_sentence_and_touches_nothing(finished_run, name, make, message):
    said = attempt(make(), finished_run)
    assert said is not None and message in said, said


GOOD = [
    ("images only dataset", lambda: TensorDataset(images())),
    ("dataloader of pairs", lambda: DataLoader(TensorDataset(images(), torch.arange(8)), batch_size=3)),
    ("dataloader of images", lambda: DataLoader(TensorDataset(images()), batch_size=3)),
    ("iterable dataset", lambda: Stream()),
    ("channels last", lambda: images().permute(0, 2, 3, 1).numpy()),
    ("float64 signed", lambda: (images() * 2 - 1).double()),
    ("float16", lambda: images().half()),
    ("bool", lambda: images() > 0.5),
    ("one-hot labels", lambda: (images(), torch.eye(4)[torch.arange(8) % 4])),
    ("dict items", lambda: [{"image": x, "label": i % 2} for i, x in enumerate(images())]),
    ("3x32x32 list", lambda: list(images(shape=(3, 32, 32)).numpy())),
    ("images and no labels", lambda: (images(), None)),
]


@pytest.mark.parametrize("name,make", GOOD, ids=[g[0] for g in GOOD])
def test_reasonable_data_trains(finished_run, name, make):
    assert attempt(make(), finished_run) is None


@st.composite
def user_data(draw):
    """Arrays of random shapes, dtypes, ranges and labels, in the containers users pass them in."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.sampled_from([4, 6, 3, 2, 1, 0]))  # the first values are the most common (and what shrinking aims for)
    side = draw(st.sampled_from([28, 32, 20, 8, 30, 5, 0]))
    channels = draw(st.sampled_from([1, 3, 2]))
    layout = draw(st.sampled_from(["nchw", "nhw", "nhwc", "flat", "5d"]))
    shape = {"nchw": (n, channels, side, side), "nhw": (n, side, side), "nhwc": (n, side, side, channels),
             "flat": (n, side * side), "5d": (n, 1, 1, side, side)}[layout]
    values = draw(st.sampled_from(["unit", "signed", "bytes", "nan", "inf", "wide"]))
    low, high = {"unit": (0, 1), "signed": (-1, 1), "bytes": (0, 255), "wide": (-1e6, 1e6), "nan": (0, 1), "inf": (0, 1)}[values]
    array = rng.uniform(low, high, size=shape)
    if values in ("nan", "inf") and array.size:
        array.flat[rng.integers(array.size)] = np.nan if values == "nan" else -np.inf
    dtype = draw(st.sampled_from(["float32", "uint8", "float64", "float16", "int64", "bool", "complex64"]))
    with np.errstate(invalid="ignore", over="ignore"):  # NaN, inf and 1e6 cast to integers: garbage, which is the point
        array = array.astype(dtype) if dtype != "bool" else array > (low + high) / 2
    label_form = draw(st.sampled_from([None, "int", "float", "str", "one-hot", "bad one-hot", "short", "negative"]))
    labels = {None: None, "int": rng.integers(0, 3, n), "float": rng.integers(0, 3, n).astype(float), "str": np.array(["x"] * n),
              "one-hot": np.eye(3)[rng.integers(0, 3, n)], "bad one-hot": rng.uniform(size=(n, 3)), "short": np.zeros(max(n - 1, 0)),
              "negative": -np.ones(n)}[label_form]
    container = draw(st.sampled_from(["array", "tensor", "list", "tuple", "pairs", "dataloader"]))
    tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    if container == "array" or labels is None and container in ("tuple", "pairs"):
        return array
    if container == "tensor":
        return tensor(array)
    if container == "list":
        return list(array)
    if container == "tuple":
        return (array, labels)
    if container == "pairs":
        return [(x, y) for x, y in zip(array, labels)]
    if labels is None or labels.dtype.kind not in "biuf" or len(labels) != n or array.dtype.kind == "c":
        return DataLoader(TensorDataset(tensor(array)), batch_size=4)
    return DataLoader(TensorDataset(tensor(array), tensor(labels)), batch_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=user_data())
def test_fuzzed_data_trains_or_is_refused_cleanly(finished_run, data):
    message = attempt(data, finished_run)
    if message is None:  # it trained: then the images were usable
        assert vmivae.datasets.as_image_data(data if not isinstance(data, DataLoader) else data.dataset).image_shape[1] in (8, 20, 28, 32)
