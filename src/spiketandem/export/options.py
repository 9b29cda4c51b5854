"""The export command's fixed choices, declared without importing torch (``spiketandem export --help``
answers at once; the modules that implement them import them from here)."""

FORMATS = ("nir",)
FLAVOURS = ("nir", "snntorch")             # nir_export.py: IF as NIR IF (r = 1/dt), or as LIF for snnTorch
DEFAULT_DT = 1e-4                          # seconds; snnTorch's importer hard-codes this step
IMPORTERS = ("reference", "norse", "snntorch", "spikingjelly")   # verify.py
RETARGETS = ("zero-reset",)                # retarget.py
QUANT_MODES = ("symmetric", "minmax")      # hardware/noise.py quantize (symmetric first: zero stays zero)
