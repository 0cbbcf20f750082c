"""Where a dataset comes from: a folder the user names, the default cache, a download, or the sample.

A folder the user names must hold the data (an error otherwise, never a silent fallback). Without one,
the default cache is used, filled by a download when the network allows; offline, the small real sample
shipped inside the package is used, with one line saying so.
"""
from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable

from ..errors import DataError, described

SAMPLE_DIR = os.path.join(os.path.dirname(__file__), "sample")


class MissingDataError(DataError):
    """A folder the user named does not hold the data: a usage mistake (exit 2)."""

    exit_code = 2


def default_root() -> str:
    return os.environ.get("TORCHPORT_DATA", os.path.join(os.path.expanduser("~"), ".cache", "torchport"))


def locate(name: str, data_dir: str | None, has_data: Callable[[str], bool], download: Callable[[str], None],
           sample: str, how_to_get: str, log=print) -> str:
    """The folder to read `name` from. `has_data(folder)` says whether a folder holds it."""
    if data_dir is not None:
        if not os.path.isdir(data_dir):
            raise MissingDataError(f"--data-dir {data_dir}: no such folder")
        if not has_data(data_dir):
            raise MissingDataError(f"--data-dir {data_dir}: no {name} data there ({how_to_get})")
        return data_dir
    root = os.path.join(default_root(), name)
    if has_data(root):
        return root
    if os.environ.get("TORCHPORT_OFFLINE") != "1":
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)
        try:
            download(root)
            if has_data(root):
                return root
            reason = f"the download left no readable data in {root}"
        except Exception as e:  # any failure to download: say why in one line, then use the sample
            reason = described(e)
        finally:
            socket.setdefaulttimeout(previous)
        log(f"{name} download failed ({reason})", file=sys.stderr)
    log(f"No {name} data found and it could not be downloaded: using the small sample bundled with "
        f"torchport. For the full set, {how_to_get}.", file=sys.stderr)
    return sample
