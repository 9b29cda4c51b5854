"""Runnable examples, installed with the package (each is also run by the test suite):

    python -m spiketandem.examples.quickstart            # teacher -> LTL student -> accuracy, SynOps -> NIR file
    python -m spiketandem.examples.nir_in_norse student.nir   # that file in Norse, next to the reference simulator

Copy one to start your own script: ``python -c "import spiketandem.examples.quickstart as m; print(m.__file__)"``
prints where it lies."""
