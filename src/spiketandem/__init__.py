"""spiketandem: Local Tandem Learning and the field's learning rules for deep spiking neural networks."""
from .errors import SpiketandemError
from .model_file import load_student, save_student
from .neuron import NeuronConfig, SpikingNeuron, neuron_step, run_neuron
from .student import Student, TeacherTaps, build_student
from .surrogate import Surrogate, spike

__version__ = "0.1.0"
__all__ = ["SpiketandemError", "load_student", "save_student", "NeuronConfig", "SpikingNeuron", "neuron_step", "run_neuron", "Student",
           "TeacherTaps", "build_student", "Surrogate", "spike", "__version__"]
