"""The one exception type users see: every message names the problem and the fix."""


class SpiketandemError(Exception):
    """A user-facing error (bad config, missing data, unmappable teacher, corrupt checkpoint)."""
