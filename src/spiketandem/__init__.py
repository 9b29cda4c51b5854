"""spiketandem: Local Tandem Learning and the field's learning rules for deep spiking neural networks.

The public names below are imported on first use (PEP 562), so that ``import spiketandem`` — and with
it the ``spiketandem`` command's ``--help``, ``--version`` and usage errors — does not import torch.
"""
from __future__ import annotations

from .lazy import lazy_exports
from typing import TYPE_CHECKING

from .errors import SpiketandemError

__version__ = "0.1.0"

# public name -> the submodule that defines it
_EXPORTS = {
    "load_student": "model_file", "save_student": "model_file", "load_teacher": "teachers",
    "NeuronConfig": "neuron", "SpikingNeuron": "neuron", "neuron_step": "neuron", "run_neuron": "neuron",
    "Student": "student", "TeacherTaps": "student", "build_student": "student",
    "Surrogate": "surrogate", "spike": "surrogate",
}
__all__ = ["SpiketandemError", *_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from .model_file import load_student, save_student
    from .neuron import NeuronConfig, SpikingNeuron, neuron_step, run_neuron
    from .student import Student, TeacherTaps, build_student
    from .surrogate import Surrogate, spike
    from .teachers import load_teacher


__getattr__ = lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
