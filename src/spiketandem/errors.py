"""The one exception type users see: every message names the problem and the fix."""


class SpiketandemError(Exception):
    """A user-facing error (bad config, missing data, unmappable teacher, corrupt checkpoint)."""


def describe_os_error(error: OSError) -> str:
    """One line for an operating-system error that reached the command line (a read-only folder, a full
    disk, a file where a folder belongs), naming the path and the fix; a run file's temporary name
    (``.NAME.XXXX.tmp``, written then renamed) is shown as the file it was to become."""
    import errno
    import os
    path = error.filename
    if isinstance(path, (str, os.PathLike)):
        path = os.fspath(path)
        head, name = os.path.split(path)
        if name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3:
            path = os.path.join(head, name[1:-len(".tmp")].rsplit(".", 1)[0])
    where = f" {path}" if path else ""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"cannot write{where}: {reason}; free some space or choose another --out"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write{where}: {reason}; choose a folder you can write to"
    if error.errno in (errno.EEXIST, errno.ENOTDIR):
        return f"cannot create{where}: {reason} (a file is in the way of a folder); choose another --out"
    if error.errno == errno.EISDIR:
        return f"{path} is a folder, not a file"
    return f"{path}: {reason}" if path else reason
