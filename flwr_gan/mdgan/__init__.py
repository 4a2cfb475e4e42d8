"""MD-GAN (Hardy, Le Merrer, Sericola, IPDPS 2019) over Flower.

One generator on the server, one discriminator per worker. Building blocks:

* :mod:`~flwr_gan.mdgan.assignment` — kappa, the ``(X_g, X_d)`` assignment,
  derangements for swaps, the crash schedule, worker sampling (pure).
* :mod:`~flwr_gan.mdgan.aggregation` — feedback validation and the generator
  update (mean / median / trimmed mean).
* :mod:`~flwr_gan.mdgan.client` — the worker's ClientApp handlers
  (``register_handlers(app)``, a ready ``client_app``).
* :mod:`~flwr_gan.mdgan.settings` — the knobs only MD-GAN has.
* :mod:`~flwr_gan.mdgan.server` — :class:`MDGANServer` and :func:`run_mdgan`,
  the Grid loop usable from any ServerApp ``main(grid, context)``.
* :mod:`~flwr_gan.mdgan.experiment` — checkpoints, resume and the run
  directory (MD-GAN's entry in :mod:`flwr_gan.algorithms`).
"""

from flwr_gan.mdgan.aggregation import (
    AGGREGATIONS,
    Feedback,
    InvalidFeedbackError,
    check_feedback,
    generator_update,
)
from flwr_gan.mdgan.assignment import (
    assign_batches,
    crash_iterations,
    derangement,
    is_swap_iteration,
    kappa_for,
    real_batch_indices,
    sample_workers,
    swap_period,
)
from flwr_gan.mdgan.client import (
    INFO_TYPE,
    STEP_TYPE,
    WorkerCrashedError,
    client_app,
    make_client_app,
    mdgan_info,
    mdgan_step,
    register_handlers,
)
from flwr_gan.mdgan.server import MDGANServer, run_mdgan
from flwr_gan.mdgan.settings import MODES, MDGANSettings

__all__ = [
    "AGGREGATIONS", "INFO_TYPE", "MODES", "STEP_TYPE", "Feedback", "InvalidFeedbackError",
    "MDGANServer", "MDGANSettings", "WorkerCrashedError", "assign_batches", "check_feedback",
    "client_app", "crash_iterations", "derangement", "generator_update", "is_swap_iteration",
    "kappa_for", "make_client_app", "mdgan_info", "mdgan_step", "real_batch_indices",
    "register_handlers", "run_mdgan", "sample_workers", "swap_period",
]
