"""A worker's learning state for checkpoints: ``query.mdgan_state`` and ``train.mdgan_restore``.

The server asks every live worker for its discriminator, Adam state and
counters when it writes a checkpoint, and hands them back after a restart
(matched by device key), so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from flwr_gan.mdgan import client as worker

STATE = "mdgan_state"
RESTORE = "mdgan_restore"
STATE_TYPE = f"query.{STATE}"
RESTORE_TYPE = f"train.{RESTORE}"
_ARRAYS = (worker.STATE_DISC, worker.STATE_OPT)


def mdgan_state(msg: Message, context: Context) -> Message:
    """Reply with this worker's discriminator, Adam state and counters."""
    worker.flush_state(context)
    state = context.state
    content = RecordDict({"meta": ConfigRecord(dict(worker.meta_record(context)))})
    for name in _ARRAYS:
        if name in state.array_records:
            content.array_records[name] = state.array_records[name]
    return Message(content, reply_to=msg)


def mdgan_restore(msg: Message, context: Context) -> Message:
    """Replace this worker's state with the one in the message (after a restart)."""
    meta: Any = msg.content.config_records["meta"]
    context.state.config_records[worker.STATE_META] = ConfigRecord(dict(meta))
    for name in _ARRAYS:
        if name in msg.content.array_records:
            context.state.array_records[name] = msg.content.array_records[name]
        elif name in context.state.array_records:
            del context.state.array_records[name]
    worker.forget_cached_state(context)
    return Message(RecordDict({"meta": ConfigRecord({"restored": 1})}), reply_to=msg)


def register_worker(app: ClientApp) -> ClientApp:
    """Register every MD-GAN worker handler on ``app``: training and checkpoints."""
    worker.register_handlers(app)
    app.query(STATE)(mdgan_state)
    app.train(RESTORE)(mdgan_restore)
    return app
