"""Datasets: shapes, standardization, determinism, caching, and reading real on-disk formats.

The torchvision datasets are exercised with tiny files written in the real formats (IDX for
MNIST, pickled batches for CIFAR-10), so the real torchvision loading code runs offline.
"""

from __future__ import annotations

import pickle
import random
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from gradatlas.datasets import (
    DATASETS,
    DataSplits,
    clear_cache,
    dataset_title,
    load_dataset,
    mnist1d_cache_path,
    split_sizes,
)
from gradatlas.errors import UserInputError
from gradatlas.registry import Registry

SMALL_MNIST1D = {"num_samples": 500}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test gets its own disk cache and an empty in-process cache."""
    monkeypatch.setenv("GRADATLAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GRADATLAS_DATA", raising=False)
    clear_cache()
    yield
    clear_cache()


def assert_standardized(x: torch.Tensor, dims: tuple[int, ...]) -> None:
    assert torch.allclose(x.mean(dim=dims), torch.zeros(()), atol=1e-4)
    assert torch.allclose(x.std(dim=dims), torch.ones(()), atol=1e-3)


def test_registry_has_all_datasets_with_one_line_docs() -> None:
    expected = {"mnist1d", "digits", "teacher", "mnist", "fashion_mnist", "cifar10"}
    assert expected <= set(DATASETS.names())
    for name in expected:
        assert DATASETS.doc(name)
        assert "data_seed" not in DATASETS.options(name)


# -- mnist1d --------------------------------------------------------------------------------------
def test_mnist1d_shapes_and_standardization() -> None:
    d = load_dataset("mnist1d", 0, SMALL_MNIST1D)
    assert (d.name, d.task, d.input_shape, d.num_outputs, d.num_classes) == (
        "mnist1d",
        "classification",
        (1, 40),
        10,
        10,
    )
    # The generator's 400/100 train/test split; validation is 20% of its train split.
    assert d.x_train.shape == (320, 1, 40) and d.x_val.shape == (80, 1, 40)
    assert d.x_test.shape == (100, 1, 40)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert set(d.y_train.tolist()) == set(range(10))
    assert_standardized(d.x_train, (0, 2))


def test_mnist1d_determined_by_seed_and_leaves_global_rng_alone() -> None:
    random.seed(123)
    np.random.seed(123)
    expected_py, expected_np = random.random(), np.random.rand()
    random.seed(123)
    np.random.seed(123)
    a = load_dataset("mnist1d", 0, SMALL_MNIST1D)
    assert (random.random(), np.random.rand()) == (expected_py, expected_np)

    clear_cache()
    b = DATASETS.build("mnist1d", 0, **SMALL_MNIST1D)
    c = load_dataset("mnist1d", 1, SMALL_MNIST1D)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)


def test_mnist1d_disk_cache_is_written_and_reused(tmp_path: Path) -> None:
    path = mnist1d_cache_path(3, 500, 0.8)
    assert path.parent == tmp_path / "cache" and not path.exists()
    first = load_dataset("mnist1d", 3, SMALL_MNIST1D)
    assert path.exists()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left behind

    # Prove the second build reads the file: alter the cached labels and see them come back.
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["y"] = np.full_like(arrays["y"], 7)
    np.savez(path, **arrays)
    clear_cache()
    second = load_dataset("mnist1d", 3, SMALL_MNIST1D)
    assert (second.y_train == 7).all() and (second.y_val == 7).all()
    assert torch.equal(first.x_train, second.x_train)

    # A damaged file is regenerated, not trusted.
    path.write_bytes(b"not an npz")
    clear_cache()
    third = load_dataset("mnist1d", 3, SMALL_MNIST1D)
    assert torch.equal(first.y_train, third.y_train)


def test_in_process_cache_keys_on_resolved_options() -> None:
    a = load_dataset("digits", 0, {})
    assert load_dataset("digits", 0, {"val_fraction": 0.2}) is a
    assert load_dataset("digits", 1, {}) is not a


# -- digits and teacher ---------------------------------------------------------------------------
def test_digits() -> None:
    d = load_dataset("digits", 0, {"val_fraction": 0.25})
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    assert len(d.x_train) + len(d.x_val) + len(d.x_test) == 1797
    assert len(d.x_val) == round(1797 * 0.25) and len(d.x_test) == round(1797 * 0.2)
    assert d.x_train.shape[1:] == (1, 8, 8) and d.x_train.dtype == torch.float32
    assert_standardized(d.x_train, (0, 2, 3))
    again = DATASETS.build("digits", 0, val_fraction=0.25)
    other = DATASETS.build("digits", 1, val_fraction=0.25)
    assert torch.equal(d.x_val, again.x_val) and torch.equal(d.y_train, again.y_train)
    assert torch.equal(d.x_test, again.x_test)
    assert not torch.equal(d.y_train, other.y_train)


def test_teacher() -> None:
    opts = {"n_train": 300, "n_val": 100, "in_dim": 5, "out_dim": 3, "depth": 3, "width": 16}
    d = load_dataset("teacher", 0, opts)
    assert (d.task, d.input_shape, d.num_outputs, d.num_classes) == ("regression", (5,), 3, None)
    assert d.x_train.shape == (300, 5) and d.y_train.shape == (300, 3) and d.y_val.shape == (100, 3)
    assert d.y_test.shape == (1000, 3)
    assert d.y_train.dtype == torch.float32
    assert_standardized(d.x_train, (0,))
    assert_standardized(d.y_train, (0,))
    again = DATASETS.build("teacher", 0, **opts)
    other = DATASETS.build("teacher", 1, **opts)
    assert torch.equal(d.y_val, again.y_val)
    assert not torch.equal(d.y_val, other.y_val)


def test_teacher_without_noise_is_a_function_of_the_inputs() -> None:
    d = DATASETS.build("teacher", 0, n_train=200, n_val=10, noise=0.0)
    noisy = DATASETS.build("teacher", 0, n_train=200, n_val=10, noise=1.0)
    assert torch.equal(d.x_train, noisy.x_train)
    assert not torch.allclose(d.y_train, noisy.y_train)


def test_to_returns_a_moved_copy() -> None:
    d = load_dataset("digits", 0, {})
    moved = d.to("cpu")
    assert isinstance(moved, DataSplits) and moved is not d
    assert moved.x_train.device.type == "cpu" and moved.input_shape == d.input_shape


# -- torchvision datasets from tiny files in the real formats -------------------------------------
def write_idx_images(path: Path, images: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def tiny_images(n: int, shape: tuple[int, ...], offset: int) -> np.ndarray:
    """A known, non-constant pixel pattern per image."""
    return ((np.arange(n * int(np.prod(shape))) * 7 + offset) % 256).reshape(n, *shape)


def write_mnist(root: Path, folder: str) -> dict[str, np.ndarray]:
    raw = root / folder / "raw"
    arrays = {
        "train_x": tiny_images(20, (28, 28), 0),
        "train_y": np.arange(20) % 10,
        "test_x": tiny_images(10, (28, 28), 3),
        "test_y": (np.arange(10) * 3) % 10,
    }
    write_idx_images(raw / "train-images-idx3-ubyte", arrays["train_x"])
    write_idx_labels(raw / "train-labels-idx1-ubyte", arrays["train_y"])
    write_idx_images(raw / "t10k-images-idx3-ubyte", arrays["test_x"])
    write_idx_labels(raw / "t10k-labels-idx1-ubyte", arrays["test_y"])
    return arrays


def expected_standardized(train: np.ndarray, other: np.ndarray) -> torch.Tensor:
    """What per-channel standardization on the train split should give for (N, C, H, W) uint8."""
    t = torch.from_numpy(train).double() / 255
    mean = t.mean(dim=(0, 2, 3), keepdim=True)
    std = t.std(dim=(0, 2, 3), keepdim=True)
    return ((torch.from_numpy(other).double() / 255 - mean) / std).float()


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")]
)
def test_mnist_family_reads_idx_files(tmp_path: Path, name: str, folder: str) -> None:
    arrays = write_mnist(tmp_path, folder)
    d = load_dataset(name, 0, {"data_dir": str(tmp_path), "val_size": 5})
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert d.x_train.shape == (15, 1, 28, 28) and d.x_val.shape == (5, 1, 28, 28)
    assert d.x_test.shape == (10, 1, 28, 28)
    assert d.y_test.tolist() == arrays["test_y"].tolist()
    # Validation and train partition the official train split; test is the official test split.
    assert sorted(d.y_train.tolist() + d.y_val.tolist()) == sorted(arrays["train_y"].tolist())
    assert_standardized(d.x_train, (0, 2, 3))


def test_mnist_limit_train_is_a_seeded_subset(tmp_path: Path) -> None:
    arrays = write_mnist(tmp_path, "MNIST")
    opts = {"data_dir": str(tmp_path), "limit_train": 8}
    opts["val_size"] = 5
    a = load_dataset("mnist", 0, opts)
    b = DATASETS.build("mnist", 0, **opts)
    c = DATASETS.build("mnist", 5, **opts)
    assert a.x_train.shape == (8, 1, 28, 28) and len(a.x_val) == 5 and len(a.x_test) == 10
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.y_train, c.y_train)
    assert set(a.y_train.tolist()) <= set(arrays["train_y"].tolist())
    with pytest.raises(UserInputError, match="limit_train"):
        load_dataset("mnist", 0, {"data_dir": str(tmp_path), "limit_train": 16, "val_size": 5})
    with pytest.raises(UserInputError, match="val_size"):
        load_dataset("mnist", 0, {"data_dir": str(tmp_path), "val_size": 20})


def test_data_dir_defaults_to_gradatlas_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mnist(tmp_path, "MNIST")
    monkeypatch.setenv("GRADATLAS_DATA", str(tmp_path))
    assert len(load_dataset("mnist", 0, {"val_size": 4}).x_train) == 16


def write_cifar(root: Path) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for i in range(1, 6):  # five batches of 4 images, rows laid out R plane, G plane, B plane
        x = tiny_images(4, (3072,), 11 * i).astype(np.uint8)
        y = [(4 * i + k) % 10 for k in range(4)]
        # Real batches are Python 2 pickles whose str keys unpickle (latin1) as str.
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": x, "labels": y, "batch_label": f"batch {i}"}, f)
        train_x.append(x)
        train_y += y
    test_x, test_y = tiny_images(6, (3072,), 5).astype(np.uint8), [9, 8, 7, 6, 5, 4]
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": test_x, "labels": test_y}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{k}" for k in range(10)]}, f)
    return {
        "train_x": np.concatenate(train_x).reshape(-1, 3, 32, 32),
        "train_y": np.array(train_y),
        "test_x": test_x.reshape(-1, 3, 32, 32),
        "test_y": np.array(test_y),
    }


def test_cifar10_reads_pickled_batches(tmp_path: Path) -> None:
    arrays = write_cifar(tmp_path)
    d = load_dataset("cifar10", 0, {"data_dir": str(tmp_path), "verify": False, "val_size": 4})
    assert d.input_shape == (3, 32, 32) and d.num_classes == 10
    assert d.x_train.shape == (16, 3, 32, 32) and d.x_val.shape == (4, 3, 32, 32)
    assert d.x_test.shape == (6, 3, 32, 32)
    assert sorted(d.y_train.tolist() + d.y_val.tolist()) == sorted(arrays["train_y"].tolist())
    assert d.y_test.tolist() == arrays["test_y"].tolist()


def test_cifar10_verifies_checksums_by_default(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    with pytest.raises(UserInputError, match="verify: false") as info:
        load_dataset("cifar10", 0, {"data_dir": str(tmp_path)})
    assert info.value.field == "dataset.options.data_dir"


@pytest.mark.parametrize(
    ("name", "expected_file"),
    [
        ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
        ("fashion_mnist", "FashionMNIST/raw/t10k-labels-idx1-ubyte"),
        ("cifar10", "cifar-10-batches-py/data_batch_1"),
    ],
)
def test_missing_files_name_the_directory_and_files(
    tmp_path: Path, name: str, expected_file: str
) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(UserInputError) as info:
        load_dataset(name, 0, {"data_dir": str(missing)})
    err = info.value
    assert err.field == "dataset.options.data_dir"
    assert str(missing) in err.message and str(missing / expected_file) in err.message
    assert "download: true" in err.message


# -- option validation ----------------------------------------------------------------------------
def test_unknown_option_is_named() -> None:
    with pytest.raises(UserInputError, match="num_sample") as info:
        load_dataset("mnist1d", 0, {"num_sample": 100})
    assert "did you mean 'num_samples'" in info.value.message
    assert info.value.field == "dataset.options.num_sample"


@pytest.mark.parametrize(
    ("name", "options", "field"),
    [
        ("mnist1d", {"num_samples": "many"}, "num_samples"),
        ("mnist1d", {"train_split": 1.5}, "train_split"),
        ("digits", {"val_fraction": 0.0}, "val_fraction"),
        ("teacher", {"depth": -1}, "depth"),
        ("mnist", {"val_size": 0}, "val_size"),
        ("mnist1d", {"val_fraction": 1.0}, "val_fraction"),
        ("cifar10", {"verify": "perhaps"}, "verify"),
    ],
)
def test_bad_option_values(name: str, options: dict, field: str) -> None:
    with pytest.raises(UserInputError) as info:
        load_dataset(name, 0, options)
    assert info.value.field == f"dataset.options.{field}"


def test_unknown_dataset_and_bad_seed() -> None:
    with pytest.raises(UserInputError, match="did you mean 'mnist'"):
        load_dataset("mnsit", 0, {})
    with pytest.raises(UserInputError, match="data_seed"):
        load_dataset("digits", -1, {})


# -- what the registration says without loading: split sizes, the title -------------------------
def test_split_sizes_follow_the_dataset_options() -> None:
    assert split_sizes("mnist1d", {"num_samples": 5000, "train_split": 0.8}) == (3200, 800)
    assert split_sizes("digits", {"val_fraction": 0.2}) == (1079, 359)
    assert split_sizes("mnist", {"limit_train": 0}) == (55_000, 5000)
    assert split_sizes("fashion_mnist", {"limit_train": 5000, "val_size": 1000}) == (5000, 1000)
    assert split_sizes("cifar10", {}) == (45_000, 5000)
    assert split_sizes("teacher", {"n_train": 300, "n_val": 50}) == (300, 50)
    with pytest.raises(UserInputError, match="unknown dataset 'imagenet'"):
        split_sizes("imagenet", {})


def test_every_registered_dataset_has_split_sizes() -> None:
    for name in DATASETS.names():
        n_train, n_val = split_sizes(name, DATASETS.check_options(name, {}))
        assert n_train > 0 and n_val > 0


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("digits", {"val_fraction": 0.1, "test_fraction": 0.3}),
        ("teacher", {"n_train": 64, "n_val": 16, "n_test": 8}),
        ("mnist1d", {"num_samples": 1000, "train_split": 0.7, "val_fraction": 0.25}),
    ],
)
def test_registered_split_sizes_are_the_loaded_ones(name: str, options: dict) -> None:
    data = load_dataset(name, 0, options)
    resolved = DATASETS.check_options(name, options)
    assert split_sizes(name, resolved) == (len(data.x_train), len(data.x_val))


def test_a_dataset_registered_without_split_sizes_fails_at_registration() -> None:
    reg: Registry = Registry("dataset", fixed=1, required=DATASETS.required)
    shape = {"input_shape": lambda o: (3,), "num_outputs": lambda o: 1}
    with pytest.raises(ValueError, match="'bare' registered without split_sizes"):

        @reg.register("bare", task="regression", **shape)
        def bare(data_seed: int = 0) -> None:
            """No split sizes."""

    assert "split_sizes" in DATASETS.required and "bare" not in reg


def test_titles_are_on_the_registration() -> None:
    assert dataset_title("mnist1d") == "MNIST-1D" and dataset_title("cifar10") == "CIFAR-10"
    assert dataset_title("digits") == "digits"  # no title: the registered name
    assert dataset_title("not-registered") == "not-registered"
