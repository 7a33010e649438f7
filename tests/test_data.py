"""Datasets: the embedded MNIST split, torchvision loaders offline, CelebA layout, user data, batches."""

import itertools
import re
import struct

import numpy as np
import pytest
import torch

import vmivae
from vmivae.batches import BatchSampler
from vmivae.datasets import as_image_data, is_available, load
from vmivae.errors import DataError


def test_mnist_5k_is_a_fixed_stratified_split():
    train, test = load("mnist-5k", "train"), load("mnist-5k", "test")
    assert train.images.shape == (4000, 1, 28, 28) and test.images.shape == (1000, 1, 28, 28)
    assert train.images.dtype == torch.float32
    assert train.images.min() == -1.0 and train.images.max() == 1.0
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    # no image is in both splits, and the split is the same every time
    flat = lambda d: {bytes(x.numpy().tobytes()) for x in d.images}  # noqa: E731
    assert not flat(train) & flat(test)
    assert torch.equal(load("mnist-5k", "test").images, test.images)
    # shuffled, not sorted by class
    assert len(set(test.labels[:20].tolist())) > 3


def test_unknown_dataset_and_split():
    with pytest.raises(DataError, match="unknown dataset 'mnist5k' .*did you mean 'mnist-5k'"):
        load("mnist5k")
    with pytest.raises(DataError, match="unknown split 'valid'"):
        load("mnist-5k", "valid")


def test_missing_torchvision_dataset_offline_names_the_files(tmp_path):
    """No files and no network: one sentence naming what to put where (download attempt included)."""
    with pytest.raises(DataError) as info:
        load("mnist", "train", root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message and "train-images-idx3-ubyte" in message
    assert "\n" not in message
    assert not is_available("mnist", tmp_path)


def _write_idx(path, array, magic):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes())


def test_mnist_loader_reads_local_idx_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 5)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), 2051)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8), 2049)
    assert is_available("mnist", tmp_path)
    data = load("mnist", "test", root=tmp_path)
    assert data.images.shape == (5, 1, 28, 28) and data.labels.shape == (5,)
    assert -1.0 <= data.images.min() and data.images.max() <= 1.0


def _fake_celeba(root, n=6, attributes=True):
    from PIL import Image

    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    for name in names:
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(folder / "img_align_celeba" / name)
    (folder / "list_eval_partition.txt").write_text("".join(f"{name} {0 if i < n - 2 else 2}\n" for i, name in enumerate(names)))
    if attributes:
        lines = [str(n), "Smiling Young"] + [f"{name} {1 if i % 2 else -1} 1" for i, name in enumerate(names)]
        (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_celeba_reads_the_torchvision_layout(tmp_path):
    folder = _fake_celeba(tmp_path)
    train = load("celeba", "train", root=tmp_path)
    test = load("celeba", "test", root=tmp_path)
    assert train.images.shape == (4, 3, 64, 64) and test.images.shape == (2, 3, 64, 64)
    assert train.factor_names == ("Smiling", "Young") and train.factors[:, 0].tolist() == [0, 1, 0, 1]
    assert (folder / "vmivae-64-train.pt").is_file()  # cached; a second load reads the cache
    torch.testing.assert_close(load("celeba", "train", root=tmp_path).images, train.images)


def test_celeba_missing_folder_describes_the_layout(tmp_path):
    with pytest.raises(DataError, match=r"CelebA is not in .*img_align_celeba.*list_eval_partition.txt"):
        load("celeba", "train", root=tmp_path)


def test_celeba_missing_image_is_named(tmp_path):
    folder = _fake_celeba(tmp_path, attributes=False)
    (folder / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(DataError, match="000002.jpg is missing"):
        load("celeba", "train", root=tmp_path)


def test_data_root_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VMIVAE_DATA", str(tmp_path))
    with pytest.raises(DataError, match=str(tmp_path)):
        load("celeba")


@pytest.mark.parametrize("make,expected", [
    (lambda: torch.full((3, 1, 8, 8), 0.5), 0.0),  # [0, 1] floats are rescaled
    (lambda: torch.full((3, 1, 8, 8), -0.5), -0.5),  # [-1, 1] floats kept
    (lambda: np.full((3, 8, 8), 255, dtype=np.uint8), 1.0),  # uint8 and missing channel axis
])
def test_as_image_data_normalises_ranges(make, expected):
    data = as_image_data(make())
    assert data.images.shape == (3, 1, 8, 8) and data.images.unique().tolist() == [expected]


def test_as_image_data_accepts_a_dataset_of_pairs():
    ds = torch.utils.data.TensorDataset(torch.rand(5, 1, 8, 8), torch.arange(5))
    data = as_image_data(ds)
    assert data.images.shape == (5, 1, 8, 8) and data.labels.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("bad,message", [
    (torch.full((2, 1, 8, 8), 3.0), r"must lie in \[0, 1\] or \[-1, 1\]"),
    (torch.zeros(2, 8), r"must be \[N, C, H, W\]"),
    (torch.full((2, 1, 8, 8), float("nan")), "must lie in"),
])
def test_as_image_data_rejects_bad_images(bad, message):
    with pytest.raises(DataError, match=message):
        as_image_data(bad)


def test_as_image_data_checks_label_count():
    with pytest.raises(DataError, match="got 3 labels for 2 images"):
        as_image_data(torch.rand(2, 1, 8, 8), labels=[0, 1, 2])


def test_batch_sampler_is_seeded_and_covers_each_epoch():
    a, b = BatchSampler(10, 3, seed=5), BatchSampler(10, 3, seed=5)
    first = [a.next() for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(first, (b.next() for _ in range(3))))
    assert len(set(torch.cat(first).tolist())) == 9  # one epoch: 3 full batches, no repeats, remainder dropped
    state = a.state_dict()
    after = a.next()
    c = BatchSampler(10, 3, seed=0)
    c.load_state_dict(state)
    assert torch.equal(c.next(), after)


def test_batch_sampler_shards_the_global_batch():
    full = BatchSampler(20, 4, seed=1).next()
    shards = [BatchSampler(20, 4, seed=1, rank=r, world_size=2).next() for r in range(2)]
    assert torch.equal(torch.cat(shards), full)
    with pytest.raises(DataError, match="divisible"):
        BatchSampler(20, 5, seed=1, world_size=2)
    with pytest.raises(DataError, match="larger than the 4 training images"):
        BatchSampler(4, 8, seed=1)


def test_image_data_helpers():
    data = vmivae.ImageData(torch.zeros(6, 1, 8, 8), torch.arange(6))
    assert len(data.subset(slice(0, 2))) == 2 and data.image_shape == (1, 8, 8) and data.n_classes == 6


# ---------------------------------------------------------------------------- containers that never end, or are not images


def test_an_endless_itertools_iterator_is_refused_before_reading():
    image = torch.rand(1, 28, 28)
    for endless in (itertools.repeat(image), itertools.cycle([image]), itertools.count()):
        with pytest.raises(DataError, match=f"the itertools.{type(endless).__name__} given never ends; .*itertools.islice"):
            as_image_data(endless)
    assert as_image_data(itertools.repeat(image, 3)).images.shape == (3, 1, 28, 28)  # a bounded repeat is fine


def test_an_endless_generator_stops_at_the_memory_budget(monkeypatch):
    """The bound is a quarter of the memory this process can still allocate; here 100 images' worth."""
    from vmivae.datasets import user_data

    per_image = 4 * 28 * 28 + 128
    monkeypatch.setattr(user_data, "max_bytes", lambda: 100 * per_image)
    read = []

    def endless():
        while True:
            read.append(1)
            yield torch.rand(1, 28, 28)

    with pytest.raises(DataError, match=r"the generator given has yielded 101 images \(.* GiB as float32 pixels, a quarter of the free "
                                        r"memory\) and has not ended; if it is endless, give a finite one"):
        as_image_data(endless())
    assert len(read) == 101
    monkeypatch.setattr(user_data, "max_bytes", lambda: 4 * per_image)  # a loader's batches count the same way
    with pytest.raises(DataError, match="the DataLoader given has yielded 6 images"):
        as_image_data(torch.utils.data.DataLoader(torch.rand(9, 1, 28, 28), batch_size=3))


def test_the_memory_budget_is_a_quarter_of_what_this_process_may_allocate():
    import resource

    from vmivae.datasets import user_data

    free = user_data._free_memory()
    with open("/proc/meminfo") as f:
        available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    assert 0 < free <= available * 1.1 and user_data.max_bytes() == free // 4
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as f:
        used = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    try:  # an address-space limit 1 GiB above what is mapped now leaves about 1 GiB
        resource.setrlimit(resource.RLIMIT_AS, (used + 2**30, hard))
        assert 0.8 * 2**30 < user_data._free_memory() <= 2**30
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class HugeDataset(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n, self.read = n, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.read += 1
        return torch.rand(1, 28, 28)


def test_a_dataset_too_large_for_memory_is_refused_after_its_first_item():
    dataset = HugeDataset(10**12)
    with pytest.raises(DataError, match=r"the dataset given holds 1000000000000 images, .* GiB as float32 pixels, more than a quarter "
                                        r"of the free memory; give fewer images, e.g. torch.utils.data.Subset"):
        as_image_data(dataset)
    assert dataset.read == 1


@pytest.mark.parametrize("length,message", [(-1, r"len\(\) that fails \(ValueError: __len__\(\) should return >= 0\)"),
                                            ("8", r"len\(\) that fails \('str' object cannot be interpreted as an integer\)")])
def test_a_dataset_whose_len_fails_is_named(length, message):
    class Odd(HugeDataset):
        def __len__(self):
            return length

    with pytest.raises(DataError, match=message):
        as_image_data(Odd(0))


def test_tables_sparse_and_meta_tensors_are_refused_with_the_fix():
    pandas = pytest.importorskip("pandas")
    with pytest.raises(DataError, match=r"a pandas DataFrame is a table, not images; .*table.to_numpy\(\).reshape\(-1, 1, 28, 28\)"):
        as_image_data(pandas.DataFrame(np.random.rand(8, 784)))
    series = as_image_data(pandas.Series(list(np.random.rand(8, 1, 28, 28))))  # a Series of images is a list of images
    assert series.images.shape == (8, 1, 28, 28)
    with pytest.raises(DataError, match=r"item 0 of the Series is a single float, not an image"):
        as_image_data(pandas.Series(np.random.rand(784)))
    with pytest.raises(DataError, match=r"cannot read the images from a sparse tensor \(torch.sparse_coo\); .*\.to_dense\(\)"):
        as_image_data(torch.rand(8, 1, 28, 28).to_sparse())
    with pytest.raises(DataError, match=r"cannot read the images from a tensor on the meta device, which has a shape but no values"):
        as_image_data(torch.empty(8, 1, 28, 28, device="meta"))
    with pytest.raises(DataError, match=r"cannot read image 0 from a sparse tensor"):
        as_image_data([torch.rand(1, 28, 28).to_sparse()])


def test_a_tuple_with_more_than_images_and_labels_is_refused():
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8) % 2
    with pytest.raises(DataError, match=r"a tuple of 3 items was given, which reads as \(images, labels, and 1 more\); give \(images, "
                                        r"labels\) or the images alone"):
        as_image_data((x, y, torch.zeros(8)))
    assert torch.equal(as_image_data((x, y)).labels, y)
    assert as_image_data((x, None)).labels is None and torch.equal(as_image_data((x, None)).images, x * 2 - 1)
    three_images = as_image_data(tuple(torch.rand(3, 1, 28, 28)))  # a tuple of images stays a tuple of images
    assert three_images.images.shape == (3, 1, 28, 28)


@pytest.mark.parametrize("value,dtype,shown", [(1.0001, torch.float32, "1.0001"), (1.0000001, torch.float32, "1.0000001"),
                                               (1 + 2**-40, torch.float64, "1.0000000000009095"), (1.001, torch.float16, "1.001"),
                                               (3.0, torch.float32, "3"), (1e30, torch.float64, "1e+30"), (255.0, torch.float32, "255")])
def test_an_out_of_range_pixel_is_shown_with_the_digits_that_put_it_out(value, dtype, shown):
    x = torch.rand(8, 1, 28, 28).to(dtype) * 0.5 + 0.25
    x[3, 0, 5, 5] = value
    with pytest.raises(DataError) as info:
        as_image_data(x)
    assert f", {shown}]; rescale them first" in str(info.value), str(info.value)
    assert float(shown) > 1  # what is printed is itself out of range
    low = torch.rand(8, 1, 28, 28).to(dtype) * 2 - 1
    low[0, 0, 0, 0] = -value
    with pytest.raises(DataError, match=re.escape(f"found [-{shown}, ")):
        as_image_data(low)
