"""A Ray-free Grid for MD-GAN tests: delivers messages to ClientApps in-process.

Each node has its own ``Context`` (state persists across messages, as on a
SuperNode); a handler exception becomes an error reply, as in Flower.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator

from flwr.app import Context, Error, Message, Metadata, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity


def set_task_identity(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Let Messages be built outside a running Flower app (tests only)."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 1, raising=False)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1, raising=False)
    monkeypatch.setattr(TaskIdentity, "_node_id", 1, raising=False)


def one_thread_task(monkeypatch) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Body of an autouse fixture: the task identity set, torch on one thread, restored after."""
    import torch

    set_task_identity(monkeypatch)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FakeGrid(Grid):
    """Deliver messages synchronously to in-process ClientApps.

    Parameters
    ----------
    apps : list of ClientApp
        One app per node (node ids 101, 102, ... unless ``node_ids`` says otherwise),
        partition ``i`` of ``len(apps)``.
    silent : set of int
        Node ids that never reply (a timeout).
    """

    def __init__(self, apps: list[ClientApp], silent: set[int] | None = None,
                 node_ids: list[int] | None = None, run_config: dict | None = None) -> None:
        ids = node_ids if node_ids is not None else [101 + i for i in range(len(apps))]
        self.apps = dict(zip(ids, apps, strict=True))
        self.contexts = {
            nid: Context(run_id=1, node_id=nid,
                         node_config={"partition-id": i, "num-partitions": len(apps)},
                         state=RecordDict(), run_config=dict(run_config or {}))
            for i, nid in enumerate(self.apps)
        }
        self.silent = silent or set()
        self.replies: dict[str, Message] = {}
        self.sent: list[Message] = []
        self.on_reply: Callable[[Message, Message], None] | None = None

    # The abstract Grid API --------------------------------------------------
    def set_run(self, run_id: int) -> None:  # pragma: no cover - unused
        """Unused."""

    @property
    def run(self):  # type: ignore[no-untyped-def]  # pragma: no cover - unused
        """Unused."""
        raise NotImplementedError

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        """Build a message with explicit metadata (no running SuperLink needed)."""
        meta = Metadata(run_id=1, message_id=uuid.uuid4().hex, src_node_id=1,
                        dst_node_id=dst_node_id, reply_to_message_id="", group_id=group_id,
                        created_at=time.time(), ttl=ttl or 3600.0, message_type=message_type)
        return Message(metadata=meta, content=content)

    def get_node_ids(self) -> Iterable[int]:
        """All nodes."""
        return list(self.apps)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Run each message's handler now; keep the reply for pulling."""
        ids = []
        for msg in messages:
            self.sent.append(msg)
            if not msg.metadata.message_id:
                msg.metadata.__dict__["_message_id"] = uuid.uuid4().hex
            mid = msg.metadata.message_id
            ids.append(mid)
            node = msg.metadata.dst_node_id
            if node in self.silent:
                continue
            try:
                reply = self.apps[node](msg, self.contexts[node])
            except Exception as err:  # Flower turns handler errors into error replies
                reply = Message(Error(code=0, reason=f"{type(err).__name__}: {err}"),
                                reply_to=msg)
            if self.on_reply is not None:
                self.on_reply(msg, reply)
            self.replies[mid] = reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Return (and forget) the replies to these ids that exist."""
        return [self.replies.pop(m) for m in message_ids if m in self.replies]

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        """Push then pull."""
        return self.pull_messages(self.push_messages(messages))


def mdgan(**values):  # type: ignore[no-untyped-def]
    """MD-GAN settings with some knobs changed (checked like flags)."""
    from flwr_gan.algorithms import make_settings

    return make_settings("mdgan", **values)
