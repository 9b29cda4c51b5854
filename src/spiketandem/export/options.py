"""The export command's fixed choices, declared without importing torch (``spiketandem export --help``
answers at once; the modules that implement them import them from here)."""

FORMATS = ("nir",)
TARGETS = ("speck",)                      # speck.py: SynSense Speck through sinabs
FLAVOURS = ("nir", "snntorch")             # nir_export.py: IF as NIR IF (r = 1/dt), or as LIF for snnTorch
DEFAULT_DT = 1e-4                          # seconds; snnTorch's importer hard-codes this step
IMPORTERS = ("reference", "norse", "snntorch", "spikingjelly")   # verify.py
RETARGETS = ("zero-reset",)                # retarget.py
from ..choices import QUANT_MODES  # noqa: E402,F401  (the one list: hardware/noise.py quantize)
WEIGHT_QUANT_DEFAULT = "symmetric"         # export --weight-quant: zero weights stay zero (noise's default: minmax)
SPECK_WEIGHT_BITS = 8                      # export --target speck --weight-bits: sinabs' DYNAPCNN_WEIGHT_PRECISION_BITS
