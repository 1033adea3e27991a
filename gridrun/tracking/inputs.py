"""The images a cell used, as MLflow dataset inputs (the runs table's Dataset column).

Each cell run gets three inputs, one per split, with MLflow's contexts `training`,
`validation` and `test`. An input names the dataset (`cifar10`), where it came from (the data
directory, or the code that made it), and a digest of exactly which images it holds: the
dataset's pixels and labels, hashed once per launch, and the split's rows. The same images give
the same digest on any machine and at any path; a re-encoded or edited copy, another split seed
or another subset size gives another, so runs can be filtered by the data they saw. Sizes,
image shape, classes and split settings go in the profile.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
from mlflow.data.schema import TensorDatasetSchema
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.types.schema import Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from ..data.images import ImageSet
from ..data.splits import SPLIT_KEYS, Split, split_for

CONTEXTS = (("train", "training"), ("val", "validation"), ("test", "test"))

_content_digests: dict[str, str] = {}  # decode-cache file -> digest of its pixels and labels
_made: dict[tuple, list[DatasetInput]] = {}  # (cache file, dataset, split settings) -> inputs


def content_digest(images: ImageSet) -> str:
    """sha256 of a dataset's images and labels, train then test (about 0.3 s for CIFAR-10),
    once per decode-cache file (whose name changes with its source files) in a process."""
    key = images.cache_file
    if not key or key not in _content_digests:
        h = hashlib.sha256()
        for tensor in (images.train_x, images.train_y, images.test_x, images.test_y):
            h.update(np.ascontiguousarray(tensor.numpy()).data)
        if not key:  # a dataset built in memory, not from the cache: not remembered
            return h.hexdigest()
        _content_digests[key] = h.hexdigest()
    return _content_digests[key]


def dataset_inputs(cfg: dict, images: ImageSet) -> list[DatasetInput]:
    """The cell's three splits as MLflow dataset inputs. Cells with the same data and split
    settings share them: the writer, which shares the cores with the workers, carves each
    split once per process rather than once per cell."""
    settings = {key.split(".", 1)[1]: cfg[key] for key in SPLIT_KEYS}
    key = (images.cache_file, cfg["data.dataset"], *settings.values())
    if images.cache_file and key in _made:
        return _made[key]
    splits = split_for(cfg, images)
    content = content_digest(images)
    made = [DatasetInput(_dataset(cfg["data.dataset"], images, getattr(splits, part), content,
                                  settings),
                         tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
            for part, context in CONTEXTS]
    if images.cache_file:
        _made[key] = made
    return made


def _dataset(name: str, images: ImageSet, split: Split, content: str,
             settings: dict) -> Dataset:
    rows = split.index.cpu().numpy().astype(np.int64)
    digest = hashlib.sha256(content.encode() + rows.tobytes()).hexdigest()[:10]
    shape = list(images.image_shape)
    schema = TensorDatasetSchema(
        features=Schema([TensorSpec(np.dtype(np.uint8), (-1, *shape))]),
        targets=Schema([TensorSpec(np.dtype(np.int64), (-1,))]))
    profile = {"num_rows": len(split), "image_shape": shape, "classes": images.classes,
               "dataset_digest": content[:10], **settings}
    if os.path.isabs(images.source):
        source_type, source = "local", {"uri": images.source}
    else:  # made by code (scikit-learn's digits)
        source_type, source = "code", {"tags": {"mlflow.source.name": images.source}}
    return Dataset(name=name, digest=digest, source_type=source_type, source=json.dumps(source),
                   schema=json.dumps(schema.to_dict()), profile=json.dumps(profile))
