"""The ready Flower apps: one device ClientApp for every family, one ServerApp.

* ``clientapp = "flwr_gan.apps:client_app"``: a device started once with
  ``flower-supernode`` answers every family's messages (FL-GAN/FeGAN ``train``
  and ``query.metadata``, MD-GAN ``train.mdgan_step`` / ``query.mdgan_info``,
  gossip ``train.gossip_step`` / ``query.gossip_info`` / ``query.gossip_generator``),
  whichever ServerApp is submitted.
* ``serverapp = "flwr_gan.apps:server_app"``: runs the family named by the
  ``algorithm`` key of ``[tool.flwr.app.config]`` / ``--run-config``, with every
  other key read strictly by that family's settings schema (an unknown key or a
  malformed value stops the run with one line naming it), and writes the
  standard run directory to ``out``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from flwr_gan.algorithms import device_handlers, get_algorithm
from flwr_gan.compress.mod import adacomp_mod
from flwr_gan.config import ConfigValue
from flwr_gan.fl.failures import failure_mod
from flwr_gan.privacy.mods import dp_adaptiveclipping_mod, dp_fixedclipping_mod
from flwr_gan.runtime.experiment import prepare

log = logging.getLogger(__name__)

Mod = Callable[[Message, Context, Callable[[Message, Context], Message]], Message]


def fixed_run_config(run_config: Mapping[str, ConfigValue]) -> Mod:
    """Return a client mod giving every node ``run_config`` as its run config.

    ``flwr.simulation.run_simulation`` hands apps an empty run config; with this
    mod simulated nodes read the run's settings exactly as real ones do.
    """
    fixed = dict(run_config)

    def mod(msg: Message, context: Context,
            call_next: Callable[[Message, Context], Message]) -> Message:
        original = context.run_config
        context.run_config = dict(fixed)
        try:
            return call_next(msg, context)
        finally:  # Flower refuses a context whose run config changed
            context.run_config = original

    return mod


def device_app(run_config: Mapping[str, ConfigValue] | None = None) -> ClientApp:
    """Return a ClientApp with every family's device handlers.

    Parameters
    ----------
    run_config : mapping, optional
        Settings to give every node (simulation); default: the run config Flower
        delivers (``flwr run``, ``flower-supernode``).
    """
    mods: list[Mod] = [fixed_run_config(run_config)] if run_config is not None else []
    # Outermost first: the run config, then AdaComp, which compresses what the
    # handler and the clipping mods produced, then failure / attack injection (a
    # hostile device skips clipping), then Flower's DP clipping mods (docs/privacy.md),
    # which clip the handler's update; all act only when asked to.
    mods += [adacomp_mod, failure_mod, dp_fixedclipping_mod, dp_adaptiveclipping_mod]
    app = ClientApp(mods=mods)
    for register in device_handlers():
        register(app)
    return app


def make_server_app() -> ServerApp:
    """Return the ServerApp running the family named by the run config's ``algorithm``."""
    server = ServerApp()

    @server.main()
    def _main(grid: Grid, context: Context) -> None:
        values = dict(context.run_config)
        algo = get_algorithm(str(values.pop("algorithm", "fegan")))
        settings = algo.settings(values)
        exp = prepare(settings, unit=algo.unit, total=int(settings.get(algo.total)),
                      federated=algo.federated)
        try:
            algo.load("server")(grid, exp)
        finally:
            exp.close()

    return server


#: ``clientapp = "flwr_gan.apps:client_app"``
client_app = device_app()
#: ``serverapp = "flwr_gan.apps:server_app"``
server_app = make_server_app()

__all__ = ["client_app", "device_app", "fixed_run_config", "make_server_app", "server_app"]
