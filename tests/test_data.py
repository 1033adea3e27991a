"""Datasets: both CIFAR-10 layouts, digits, the decode-once cache, splits and data errors."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gridrun import data
from gridrun.errors import GridError

from .helpers import fresh_process_imports


def test_cifar10_image_folder_loads_the_standard_split(cifar):
    assert cifar.train_x.shape == (50_000, 3, 32, 32) and cifar.train_x.dtype == torch.uint8
    assert cifar.test_x.shape == (10_000, 3, 32, 32)
    assert cifar.classes == list(data.sources.CIFAR10_CLASSES)
    assert cifar.train_y.bincount().tolist() == [5000] * 10
    assert cifar.test_y.bincount().tolist() == [1000] * 10
    assert all(0.4 < m < 0.5 for m in cifar.mean)


def test_validation_split_is_stratified_and_fixed(cifar):
    splits = data.make_splits(cifar, val_fraction=0.1)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (45_000, 5_000, 10_000)
    assert splits.val.y.bincount().tolist() == [500] * 10
    again = data.make_splits(cifar, val_fraction=0.1)
    assert torch.equal(splits.val.index, again.val.index)
    assert torch.equal(splits.val.images(slice(0, 50)), again.val.images(slice(0, 50)))
    # the splits index the one dataset tensor: no image is copied
    assert splits.train.x.data_ptr() == splits.val.x.data_ptr() == cifar.train_x.data_ptr()
    # no image is in both train and validation
    assert not set(splits.train.index.tolist()) & set(splits.val.index.tolist())


def test_a_training_subset_is_validated_on_the_same_share_of_what_it_trains_on(cifar):
    small = data.make_splits(cifar, 0.1, train_size=2000, test_size=500)
    # 2,000 train : 222 validation keeps the full set's 9 : 1, so an epoch evaluates 222 images
    assert (len(small.train), len(small.val), len(small.test)) == (2000, 222, 500)
    assert small.train.y.bincount().tolist() == [200] * 10
    assert min(small.val.y.bincount().tolist()) >= 22, "stratified"
    assert not set(small.train.index.tolist()) & set(small.val.index.tolist())
    sized = data.make_splits(cifar, 0.1, train_size=2000, val_size=1000)
    assert (len(sized.train), len(sized.val)) == (2000, 1000)
    with pytest.raises(GridError, match="data.val_size 50000 leaves 0 training"):
        data.check_sizes(cifar, 0.1, None, None, "g.yaml", val_size=50_000)


def test_split_rows_kept_beside_the_cache_are_the_split_itself(digits):
    """A dataset's split rows, kept beside its decode-cache file once found, are what the split
    finds afresh; another process reads them without importing scikit-learn (the launching
    process's cores are the workers'); a broken file is split again and replaced."""
    from gridrun.data.splits import _split_rows

    settings = (0.2, 300, 100, 7, None)
    kept = data.make_splits(digits, *settings)
    fresh = _split_rows(digits, *settings)
    for name in ("train", "val", "test"):
        assert np.array_equal(getattr(kept, name).index.numpy(), fresh[name])
    files = [f for f in Path(f"{digits.cache_file}.splits").glob("*.npz")
             if np.array_equal(np.load(f)["val"], fresh["val"])]
    assert len(files) == 1

    assert not fresh_process_imports(
        "from gridrun import data\n"
        "data.make_splits(data.load_dataset('digits'), 0.2, 300, 100, 7)", "sklearn")

    files[0].write_bytes(b"not an npz")
    again = data.make_splits(digits, *settings)
    assert torch.equal(again.val.index, kept.val.index)
    assert np.array_equal(np.load(files[0])["val"], fresh["val"])


def test_a_launch_keeps_each_splits_rows_before_any_worker_starts(write_grid, tmp_path,
                                                                   monkeypatch):
    """The launch splits once per dataset and split settings, before it starts a worker: the
    workers read the kept rows, so their fork server does without scikit-learn (1.5-1.8 s of
    CPU in every launch on the cores the cells train on)."""
    from gridrun.launch.preflight import prepare_data
    from gridrun.spec.load import load_grid

    monkeypatch.setenv("GRIDRUN_CACHE_DIR", str(tmp_path / "cache"))
    grid = load_grid(write_grid("""
        name: splits
        fixed: {data.dataset: digits}
        grid:
          data.train_size: [300, 600]
          optim.lr: [0.01, 0.02, 0.05]
    """))
    images = prepare_data(grid, grid.cells(), None)
    (digits,) = images.values()
    kept = sorted(Path(f"{digits.cache_file}.splits").glob("*.npz"))
    assert len(kept) == 2  # one file per split settings, not one per cell
    assert sorted(len(np.load(f)["train"]) for f in kept) == [300, 600]
    assert not fresh_process_imports("import gridrun.executors.worker", "sklearn")


def test_second_load_comes_from_the_cache_without_decoding(cifar_dir, cifar, monkeypatch):
    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again")
    monkeypatch.setattr(data.sources, "_decode", no_decode)
    again = data.load_dataset("cifar10", cifar_dir)
    assert torch.equal(again.test_x, cifar.test_x)
    assert again.cache_file and again.cache_file == cifar.cache_file  # mapped from the cache


def _image_tree(root, classes=("cat", "dog"), per_class=3, size=8):
    rng = np.random.default_rng(0)
    for part in ("train", "test"):
        for cls in classes:
            (root / part / cls).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / part / cls / f"{i}.png")


def test_image_folder_cache_notices_changed_files(tmp_path, monkeypatch):
    _image_tree(tmp_path)
    first = data.load_dataset("cifar10", tmp_path)
    assert first.classes == ["cat", "dog"] and first.train_x.shape == (6, 3, 8, 8)
    # PNG pixels round-trip exactly
    assert torch.equal(first.train_x[0].permute(1, 2, 0),
                       torch.from_numpy(np.array(Image.open(tmp_path / "train/cat/0.png"))))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "train" / "dog" / "9.png")
    second = data.load_dataset("cifar10", tmp_path)
    assert second.train_x.shape[0] == 7


def test_loads_that_miss_the_cache_together_decode_once(tmp_path, monkeypatch):
    _image_tree(tmp_path / "images")
    monkeypatch.setenv("GRIDRUN_CACHE_DIR", str(tmp_path / "cache"))
    decodes, real_decode = [], data.sources._decode

    def slow_decode(*args, **kwargs):  # long enough for every load to miss the cache
        decodes.append(1)
        time.sleep(1)
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(data.sources, "_decode", slow_decode)
    with ThreadPoolExecutor(3) as pool:  # each load opens the lock file on its own, as processes do
        loaded = list(pool.map(lambda _: data.load_dataset("cifar10", tmp_path / "images"),
                               range(3)))
    assert len(decodes) == 2  # train and test, once
    assert all(torch.equal(one.train_x, loaded[0].train_x) for one in loaded)
    assert len({one.cache_file for one in loaded}) == 1


@pytest.mark.slow  # kills a process
def test_a_load_killed_while_it_decodes_leaves_the_next_one_to_decode(tmp_path):
    _image_tree(tmp_path / "images")
    env = {**os.environ, "GRIDRUN_CACHE_DIR": str(tmp_path / "cache")}
    stuck = subprocess.Popen([sys.executable, "-c", (
        "import time; from gridrun import data; data.sources._decode = lambda *a, **k: "
        f"time.sleep(600); data.load_dataset('cifar10', {str(tmp_path / 'images')!r})")],
        env=env)
    try:
        deadline = time.monotonic() + 60
        while not _held(tmp_path / "cache") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _held(tmp_path / "cache"), "the stuck load never took the cache's lock"
    finally:
        stuck.kill()
        stuck.wait()
    done = subprocess.run([sys.executable, "-c", (
        "from gridrun import data; print(data.load_dataset("
        f"'cifar10', {str(tmp_path / 'images')!r}).train_x.shape[0])")],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "6", done.stderr


def _held(cache: Path) -> bool:
    """Whether some process holds a dataset's lock in `cache`."""
    import fcntl

    for lock in cache.glob("*.lock"):
        with open(lock) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
    return False


def test_official_cifar10_batches_layout(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 3)]:
        batch = {"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
                 "labels": list(rng.integers(0, 10, n))}
        with open(root / name, "wb") as f:
            pickle.dump(batch, f)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(data.sources.CIFAR10_CLASSES)}, f)
    images = data.load_dataset("cifar10", tmp_path)
    assert images.train_x.shape == (20, 3, 32, 32) and images.test_x.shape == (3, 3, 32, 32)
    with open(root / "data_batch_1", "rb") as f:
        first = pickle.load(f)
    assert torch.equal(images.train_x[0].flatten(), torch.from_numpy(first["data"][0]))


class _RunsACommand:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_a_tampered_cifar10_batch_is_refused_in_one_line_and_never_runs(tmp_path, write_grid):
    """The official layout is read with pickle; a batch that names anything but numpy arrays,
    lists, bytes, str and int (here: a command) is refused before anything is built."""
    import subprocess
    import sys

    root = tmp_path / "data" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    marker = tmp_path / "pwned"
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 255, (2, 3072), dtype=np.uint8), "labels": [0, 1],
                 "filenames": [b"a.png", b"b.png"], "batch_label": "training batch"}
        if name == "data_batch_3":
            batch["labels"] = _RunsACommand(marker)
        with open(root / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with pytest.raises(GridError, match="refused CIFAR-10 batch data_batch_3: it names "
                                        "posix.system"):
        data.load_dataset("cifar10", tmp_path / "data")
    grid = write_grid("""
        name: tampered
        fixed: {data.dataset: cifar10, model.name: lenet}
    """)
    done = subprocess.run([sys.executable, "-m", "gridrun.cli", "launch", str(grid),
                           "--data-dir", str(tmp_path / "data")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    assert "refused CIFAR-10 batch data_batch_3" in done.stderr
    assert not marker.exists()
    assert not (tmp_path / "mlflow.db").exists()


def test_digits_are_upscaled_rgb():
    images = data.load_dataset("digits")
    assert images.train_x.shape == (1437, 3, 32, 32) and images.test_x.shape == (360, 3, 32, 32)
    assert images.classes == [str(i) for i in range(10)]
    assert torch.equal(images.train_x[:, 0], images.train_x[:, 2])


@pytest.mark.parametrize("make, message", [
    (lambda root: (root / "train" / "cat").mkdir(parents=True), "needs both train/ and test/"),
    (lambda root: [(root / p / "cat").mkdir(parents=True) for p in ("train", "test")],
     "class folder has no images"),
])
def test_malformed_data_dir_is_a_clear_error(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(GridError, match=message):
        data.load_dataset("cifar10", tmp_path)


def test_missing_data_dir_tries_download_and_fails_cleanly(tmp_path, monkeypatch):
    from torchvision import datasets

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")
    monkeypatch.setattr(datasets, "CIFAR10", offline)
    target = tmp_path / "nothing-here"
    with pytest.raises(GridError, match="CIFAR-10 not found .* download failed: OSError"):
        data.load_dataset("cifar10", target)
    assert not target.exists()


def test_data_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GRIDRUN_DATA_DIR", str(tmp_path))
    assert data.resolve_data_dir(None) == tmp_path
    monkeypatch.delenv("GRIDRUN_DATA_DIR")
    assert data.resolve_data_dir(None) == Path("data")
    assert data.resolve_data_dir(tmp_path / "x") == tmp_path / "x"


def test_subset_larger_than_the_data_is_an_input_error(digits):
    with pytest.raises(GridError, match="data.train_size 5,000 exceeds the 1,293 training images"):
        data.check_sizes(digits, 0.1, 5000, None, "g.yaml")
    with pytest.raises(GridError, match="data.test_size 400 exceeds the 360 test images"):
        data.check_sizes(digits, 0.1, None, 400, "g.yaml")


def test_any_image_folder_with_mixed_sizes_is_resized(tmp_path):
    _image_tree(tmp_path, classes=("a", "b", "c"), per_class=2, size=10)
    Image.fromarray(np.zeros((20, 14, 3), np.uint8)).save(tmp_path / "train" / "a" / "big.png")
    with pytest.raises(GridError, match="differs from .* set data.image_size"):
        data.load_dataset("imagefolder", tmp_path)
    images = data.load_dataset("imagefolder", tmp_path, image_size=16)
    assert images.train_x.shape == (7, 3, 16, 16) and images.classes == ["a", "b", "c"]


def _cub_tree(root, n_classes=3, per_class=4):
    """A tiny CUB-200-2011 tree: every other image of a class is in the training split."""
    rng = np.random.default_rng(0)
    lines = {"images": [], "labels": [], "split": [], "classes": []}
    image_id = 0
    for c in range(1, n_classes + 1):
        folder = f"{c:03d}.Bird_{c}"
        lines["classes"].append(f"{c} {folder}")
        (root / "images" / folder).mkdir(parents=True)
        for k in range(per_class):
            image_id += 1
            size = (int(rng.integers(20, 40)), int(rng.integers(20, 40)))
            Image.fromarray(rng.integers(0, 255, size + (3,), dtype=np.uint8)).save(
                root / "images" / folder / f"img_{k}.jpg")
            lines["images"].append(f"{image_id} {folder}/img_{k}.jpg")
            lines["labels"].append(f"{image_id} {c}")
            lines["split"].append(f"{image_id} {1 if k % 2 == 0 else 0}")
    for name, file in (("images", "images.txt"), ("labels", "image_class_labels.txt"),
                       ("split", "train_test_split.txt"), ("classes", "classes.txt")):
        (root / file).write_text("\n".join(lines[name]) + "\n")


def test_cub200_layout_uses_its_own_split(tmp_path):
    _cub_tree(tmp_path / "CUB_200_2011")
    images = data.load_dataset("cub200", tmp_path, image_size=24)
    assert images.classes == ["001.Bird_1", "002.Bird_2", "003.Bird_3"]
    assert images.train_x.shape == (6, 3, 24, 24) and images.test_x.shape == (6, 3, 24, 24)
    assert images.train_y.tolist() == [0, 0, 1, 1, 2, 2]
    (tmp_path / "CUB_200_2011" / "train_test_split.txt").unlink()
    with pytest.raises(GridError, match="CUB-200-2011 layout needs train_test_split.txt"):
        data.load_dataset("cub200", tmp_path, image_size=24)


def test_cub200_grid_trains_end_to_end(tmp_path, write_grid, tracking_uri):
    from gridrun.launch import launch
    from gridrun.spec.load import load_grid

    _cub_tree(tmp_path / "cub", per_class=6)
    grid = load_grid(write_grid("""
        name: cub
        fixed: {data: {dataset: cub200, image_size: 32, val_fraction: 0.2, batch_size: 4},
                model.name: lenet, train.max_epochs: 1}
    """))
    report = launch(grid, data_dir=str(tmp_path / "cub"), tracking_uri=tracking_uri)
    assert report.ran == 1 and report.failed == 0


@pytest.mark.parametrize("n, drop_last, sizes", [
    (45, True, [16, 16]),        # the 13 left over are skipped
    (45, False, [16, 16, 13]),   # ... or trained on as a small last batch
    (48, True, [16, 16, 16]),    # nothing to drop
    (10, True, [10]),            # smaller than one batch: one batch of all, never zero steps
])
def test_drop_last_skips_only_a_partial_last_training_batch(n, drop_last, sizes):
    split = data.Split(torch.zeros(n, 3, 2, 2, dtype=torch.uint8), torch.arange(n), torch.arange(n))
    got = [len(y) for _, y in data.batches(split, 16, torch.Generator().manual_seed(0), drop_last)]
    assert got == sizes and data.batch_count(n, 16, drop_last) == len(sizes)
    seen = torch.cat([y for _, y in data.batches(split, 16, torch.Generator().manual_seed(0),
                                                 drop_last)])
    assert len(set(seen.tolist())) == sum(sizes), "no image twice in an epoch"
