"""Describe the machine a benchmark ran on (printed beside every figure)."""

from __future__ import annotations

import os
import platform
import sys


def machine() -> str:
    import numpy as np

    return (
        f"{platform.machine()} {os.cpu_count()} cores, python {sys.version.split()[0]}, numpy {np.__version__}, "
        f"{platform.system()} {platform.release()}"
    )
