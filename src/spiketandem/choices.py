"""The fixed sets of values a run setting can take, declared once each and without importing torch.

The module named beside each list implements it and imports the list from here; ``config.CHOICES``
checks a config against them and the command line offers them (``--neuron {if,lif}``).  Keeping
them free of torch is what lets ``spiketandem --help``, ``train --help`` and every usage error
answer in a fraction of a second: the command line imports torch only when a command runs.
(A rule's own options are declared the same way, in ``rules/catalog.py``.)
"""

NEURON_KINDS = ("if", "lif")                       # neuron.py: neuron_step
RESETS = ("subtract", "zero")                      # neuron.py: reset by subtraction (paper) or to zero
NEURON_BACKENDS = ("auto", "fused", "reference")   # neuron.py: fused when it applies / fused or an error / per-step loop
SURROGATES = ("boxcar", "sigmoid", "atan", "triangle", "dspike")   # surrogate.py (order = kernels/codes.py)
INITS = ("teacher", "random")                      # student.py: build_student
ENCODINGS = ("analog", "rate", "frames")           # student.py: build_student
ATTENTION_TIMES = ("step", "rate", "increment")    # student.py: SpikingAttentionProduct, a transformer's product in time
OPTIMIZERS = ("sgd", "adam", "adamw")              # train.py: make_optimizer
LR_SCHEDULES = ("cosine", "step", "constant", "onecycle")   # train.py: make_scheduler
AMP_MODES = ("off", "bf16")                        # precision.py: autocast
BIN_MODES = ("time", "count")                      # data/events.py: binning events into T frames
SYNOPS_CONVENTIONS = ("exact", "standard")         # metrics/synops.py: events through pooling, or non-zeros x fan-out
NOISE_KINDS = ("mismatch", "quantization", "thermal", "silencing")   # hardware/noise.py: NoiseSpec, chip.py
QUANT_MODES = ("minmax", "symmetric")              # hardware/noise.py: quantize
SILENCE_MODES = ("step", "fixed")                  # hardware/noise.py: step or fixed silencing masks
CALIBRATION_METHODS = ("ltl", "hil")               # hardware/calibrate.py: online LTL or hardware-in-the-loop
# hardware/noise.py: the noise levels of the LTL paper's Fig. 4 (quantization: bits), the `noise` defaults
NOISE_PAPER_LEVELS = {"mismatch": (0.05, 0.1, 0.2, 0.3, 0.4), "quantization": (7, 6, 5, 4, 3),
                      "thermal": (0.01, 0.05, 0.1, 0.15, 0.2), "silencing": (0.1, 0.2, 0.3, 0.4, 0.5)}
