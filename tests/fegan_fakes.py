"""Ray-free stand-ins for Flower's runtime: a Grid that calls ClientApps in-process."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity


def set_task_identity(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Let Messages be built outside a running Flower app (tests only)."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 1, raising=False)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1, raising=False)
    monkeypatch.setattr(TaskIdentity, "_node_id", 1, raising=False)


class InProcessGrid(Grid):
    """Delivers messages to ClientApps in this process, one Context per node.

    ``tamper(node_id, reply) -> reply`` may corrupt replies; ``drop`` lists
    nodes that never answer train messages (a timeout).
    """

    def __init__(self, client: ClientApp, num_nodes: int, *, run_config: dict | None = None,
                 node_configs: dict[int, dict] | None = None,
                 tamper: Callable[[int, Message], Message] | None = None,
                 drop: Iterable[int] = (), node_ids: list[int] | None = None) -> None:
        self.client = client
        self.nodes = list(node_ids) if node_ids is not None else list(range(101, 101 + num_nodes))
        self.contexts = {
            nid: Context(run_id=1, node_id=nid,
                         node_config=(node_configs or {}).get(
                             nid, {"partition-id": i, "num-partitions": num_nodes}),
                         state=RecordDict(), run_config=dict(run_config or {}))
            for i, nid in enumerate(self.nodes)
        }
        self.tamper = tamper
        self.drop = set(drop)
        self.sent: list[Message] = []

    # Grid's abstract API --------------------------------------------------
    @property
    def run(self):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def set_run(self, run_id: int) -> None:
        pass

    def create_message(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def get_node_ids(self) -> list[int]:
        return list(self.nodes)

    def push_messages(self, messages):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def pull_messages(self, message_ids):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None
                         ) -> list[Message]:
        replies = []
        for msg in messages:
            self.sent.append(msg)
            nid = msg.metadata.dst_node_id
            if nid in self.drop and msg.metadata.message_type == "train":
                continue
            try:
                reply = self.client(msg, self.contexts[nid])
            except Exception as err:  # noqa: BLE001 - mirror Flower: error reply
                reply = Message(Error(code=0, reason=str(err)), reply_to=msg)
            if self.tamper is not None:
                reply = self.tamper(nid, reply)
            replies.append(reply)
        return replies


def run_fl_in_process(settings, client: ClientApp  # type: ignore[no-untyped-def]
                      ) -> tuple[list[dict], InProcessGrid]:
    """Run the FL-GAN / FeGAN server loop of ``settings`` over an :class:`InProcessGrid`.

    The caller sets the task identity first (:func:`set_task_identity`).
    """
    from flwr_gan.fl.server import run_federated
    from flwr_gan.runtime.experiment import prepare

    exp = prepare(settings, unit="round", total=settings.rounds, federated=True)
    grid = InProcessGrid(client, settings.num_clients, run_config=settings.to_run_config())
    records = run_federated(grid, exp)
    exp.close()
    return records, grid


def train_device(c: Context, arrays: ArrayRecord, rnd: int,  # type: ignore[no-untyped-def]
                 data=None, **cfg) -> ArrayRecord:
    """Send one FL ``train`` message of 3 steps of batch 8 (``small``) to device ``c``.

    ``data`` defaults to a small FeGAN split (3 classes x 100 samples at most).
    """
    from flwr_gan.data.node import DataConfig
    from flwr_gan.fl.client import ClientSettings, handle_train

    data = data or DataConfig(partition="fegan", max_class=3, max_samples=100)

    config = {"model": "small", "local-steps": 3, "batch-size": 8, "server-round": rnd,
              "num-threads": 1} | cfg
    msg = Message(RecordDict({"arrays": arrays, "config": ConfigRecord(config)}),
                  message_type="train", dst_node_id=c.node_id)
    return handle_train(msg, c, ClientSettings(data=data)).content.array_records["arrays"]
