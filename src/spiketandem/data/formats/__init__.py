"""Decoders for the on-disk formats: each turns a dataset folder into :class:`~spiketandem.data.arrays.RawSplits`."""
