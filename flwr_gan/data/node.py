"""Which images a Flower node trains on.

Two ways, chosen by the node's ``node_config``:

* **Simulation / shared data set** (``partition-id``, ``num-partitions``): the
  node loads the configured data set (from the local cache, fast) and takes
  its partition, computed deterministically from the run's data settings, so
  every node and the server agree without talking.
* **Edge device** (``data-path``): the node trains on everything in its own
  ``.npz`` or image folder (``flower-supernode --node-config
  "data-path=/home/pi/digits"``). No partitioning, nothing shared.

Data settings come from ``run_config`` (``[tool.flwr.app.config]`` or
``--run-config``) with kebab-case keys; every key has a default, because
``run_simulation`` passes an empty run config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any

from flwr_gan.config import ConfigValue, knob, read_group
from flwr_gan.data import ImageDataset, Partition, load_dataset, make_partition
from flwr_gan.data.fegan_engine import FEGAN_DRAWS

PARTITIONS = ("iid", "fegan", "dirichlet")


@dataclass(frozen=True)
class DataConfig:
    """The data set and how it is spread over nodes (a settings group).

    Attributes
    ----------
    dataset : str
        ``mnist``, ``fashion-mnist``, ``cifar10`` or a path.
    data_dir : str
        Folder with the raw data set ("" = cache / offline sources).
    partition : str
        ``iid``, ``fegan`` or ``dirichlet``.
    partition_seed : int
        Seed of the partition (the same on every node).
    max_class, max_samples : int
        FeGAN engine parameters (``partition = "fegan"``).
    fegan_draw : str
        FeGAN engine: ``disjoint`` (no image on two devices) or ``shared`` (the
        paper's text: each device draws from the whole data set).
    alpha : float
        Dirichlet concentration (``partition = "dirichlet"``).
    """

    dataset: str = knob("mnist", "mnist, fashion-mnist, cifar10, or a path to an .npz / "
                        "image folder")
    data_dir: str = knob("", "folder with the raw data set (empty: cache, then offline "
                         "sources); must exist when given")
    partition: str = knob("iid", "how the training set is spread over devices: iid, the FeGAN "
                          "paper's non-iid engine, or Dirichlet", choices=PARTITIONS)
    partition_seed: int = knob(0, "seed of the partition", ge=0)
    max_class: int = knob(3, "FeGAN engine: most classes on one device", ge=1)
    max_samples: int = knob(500, "FeGAN engine: most samples per class on one device", ge=1)
    fegan_draw: str = knob("disjoint", "FeGAN engine: disjoint (no image on two devices) or "
                           "shared (the paper's text: every device draws from the whole data "
                           "set, so devices may hold the same images)", choices=FEGAN_DRAWS)
    alpha: float = knob(0.5, "Dirichlet concentration (smaller: less iid)", gt=0)

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, ConfigValue]) -> DataConfig:
        """Read the data settings (kebab-case keys; other keys are ignored).

        Raises
        ------
        ConfigError
            When a value is malformed or out of range.
        """
        return read_group(cls, run_config)

    def to_run_config(self) -> dict[str, ConfigValue]:
        """Return these settings as kebab-case run-config entries."""
        return {k.replace("_", "-"): v for k, v in asdict(self).items()}

    def partition_params(self) -> dict[str, Any]:
        """Keyword arguments of :func:`flwr_gan.data.make_partition` for this scheme."""
        if self.partition == "fegan":
            return {"max_class": self.max_class, "max_samples": self.max_samples,
                    "draw": self.fegan_draw}
        if self.partition == "dirichlet":
            return {"alpha": self.alpha}
        return {}


@lru_cache(maxsize=4)
def load_training_set(dataset: str, data_dir: str = "") -> ImageDataset:
    """Load (and memoise per process) a data set's training split.

    The memo holds immutable arrays only; it saves simulated nodes sharing a
    process from re-reading the cache file every round.
    """
    return load_dataset(dataset, "train", data_dir=data_dir or None)


@lru_cache(maxsize=8)
def _partition(cfg: DataConfig, num_partitions: int) -> Partition:
    train = load_training_set(cfg.dataset, cfg.data_dir)
    return make_partition(cfg.partition, train.labels, num_partitions, seed=cfg.partition_seed,
                          num_classes=train.num_classes, **cfg.partition_params())


def dataset_partition(cfg: DataConfig, num_partitions: int) -> Partition:
    """Return the partition of ``cfg``'s training set into ``num_partitions`` parts."""
    return _partition(cfg, int(num_partitions))


def node_training_data(
    node_config: Mapping[str, ConfigValue], cfg: DataConfig
) -> ImageDataset:
    """Return the images this node trains on.

    Parameters
    ----------
    node_config : mapping
        ``context.node_config``: ``data-path`` (edge device) or
        ``partition-id`` and ``num-partitions`` (simulation / shared data).
    cfg : DataConfig
        The run's data settings.

    Raises
    ------
    ValueError
        If the node config names neither a ``data-path`` nor a valid partition.
    """
    if "data-path" in node_config:
        return load_dataset(str(node_config["data-path"]), "train")
    try:
        pid = int(node_config["partition-id"])
        num = int(node_config["num-partitions"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            "This node has no data: start it with --node-config \"data-path=/path/to/images\" "
            "(an .npz or an image folder), or \"partition-id=I num-partitions=N\" to take "
            f"part I of the shared data set. Got node config {dict(node_config)}."
        ) from None
    if not 0 <= pid < num:
        raise ValueError(f"partition-id {pid} is outside [0, num-partitions={num}).")
    data_dir = str(node_config.get("data-dir", "")) or cfg.data_dir
    cfg = replace(cfg, data_dir=data_dir)
    part = dataset_partition(cfg, num)
    return load_training_set(cfg.dataset, cfg.data_dir).subset(part.indices[pid])


def device_key(node_config: Mapping[str, ConfigValue], node_id: int) -> str:
    """Return the stable name of this device (``device-id``, partition or data path)."""
    if "device-id" in node_config:
        return str(node_config["device-id"])
    if "partition-id" in node_config:
        return f"partition-{int(node_config['partition-id'])}"
    if "data-path" in node_config:
        return f"path-{node_config['data-path']}"
    return f"node-{node_id}"


def message_data_config(config: Mapping[str, Any],
                        run_config: Mapping[str, ConfigValue]) -> DataConfig:
    """Return the data settings of a message: its data keys over the node's run config.

    Relay protocols (MD-GAN, gossip) send the data settings in every message, so
    a device needs no run config of its own.
    """
    merged: dict[str, Any] = dict(run_config)
    merged.update({k: config[k] for k in DataConfig().to_run_config() if k in config})
    return DataConfig.from_run_config(merged)


@lru_cache(maxsize=16)
def _images(node_items: tuple[tuple[str, Any], ...], cfg: DataConfig) -> Any:
    return node_training_data(dict(node_items), cfg).to_tensor()


def node_images(node_config: Mapping[str, ConfigValue], cfg: DataConfig) -> Any:
    """Return the node's training images as a tensor in ``[-1, 1]``.

    Memoised per process (simulated nodes sharing an actor do not rebuild it);
    callers must not modify it.
    """
    return _images(tuple(sorted((str(k), v) for k, v in node_config.items())), cfg)
