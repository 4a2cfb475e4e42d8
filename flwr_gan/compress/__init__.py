"""AdaComp compression of what devices upload (Hardy et al., NCA 2017).

>>> from flwr.serverapp.strategy import FedAvg
>>> from flwr_gan.compress import AdaComp, adacomp_mod
>>> strategy = AdaComp(FedAvg(), ratio=0.01)   # devices: ClientApp(mods=[adacomp_mod])
"""

from flwr_gan.compress.adacomp import Sparse, compress, compress_layer, select, staleness_scale
from flwr_gan.compress.mod import adacomp_mod
from flwr_gan.compress.strategy import AdaComp
from flwr_gan.compress.wire import MalformedPayload, decode, encode

__all__ = ["AdaComp", "MalformedPayload", "Sparse", "adacomp_mod", "compress", "compress_layer",
           "decode", "encode", "select", "staleness_scale"]
