"""gridrun: run hyperparameter grids of image-classification CNNs, tracked in MLflow.

The modules, in the order data flows through them:
  grid      read and validate a YAML grid, expand it into cells
  config    the keys of one cell: types, ranges, defaults, when each applies
  data      datasets as in-memory uint8 tensors, decoded once and cached; splits and batches
  models    the model registry
  train     the training loop: early stopping, divergence, best weights, test score
  tracking  MLflow: experiments, parent and child runs, params, metrics, tags
  execute   run a grid's cells, skipping finished ones, recording failures
  cli       the `gridrun` command, a thin layer over the above
"""
__version__ = "0.1.0"
