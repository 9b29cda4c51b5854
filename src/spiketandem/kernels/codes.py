"""Integer codes shared by the Python, C++ and Triton sides of the fused neuron."""
SURROGATE_NAMES = ("boxcar", "sigmoid", "atan", "triangle", "dspike")   # index = code in the kernels
NOTHING, MASK, U_TRACE = 0, 1, 2   # what forward saves: nothing (no grad), bit mask (uint8), membrane U[t]
