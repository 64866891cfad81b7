"""The machine a benchmark ran on, saved with every result: numbers only compare on like hardware.

`platform.processor()` is empty or just "x86_64" on Linux, so the CPU model comes from `/proc/cpuinfo`
there, from `sysctl` on macOS, and from `platform.processor()` elsewhere (Windows gives the model name).
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import psutil

from lokal.bench.result import PlatformInfo

#: Keys naming the CPU model in /proc/cpuinfo, best first: x86 ("model name"), ARM boards ("Hardware",
#: "Model"), POWER ("cpu"), RISC-V ("uarch"). ARM servers name none (only part numbers).
_CPUINFO_KEYS = ("model name", "hardware", "model", "cpu", "uarch")


def cpu_from_cpuinfo(text: str) -> str | None:
    """The CPU model named in the text of `/proc/cpuinfo`, or None when it names none."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if sep and value and key in _CPUINFO_KEYS and key not in found:
            found[key] = value
    for key in _CPUINFO_KEYS:
        if key in found and not found[key].isdigit():  # "model : 143" on x86 is a number, not a name
            return found[key]
    return None


def cpu_model() -> str:
    """A human-readable CPU model, or the machine architecture when the OS does not say."""
    name: str | None = None
    if sys.platform.startswith("linux"):
        try:
            name = cpu_from_cpuinfo(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))
        except OSError:
            name = None
    elif sys.platform == "darwin":
        try:
            name = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=2, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            name = None
    return name or platform.processor() or platform.machine() or "unknown"


def platform_info() -> PlatformInfo:
    return PlatformInfo(
        system=platform.system(),
        release=platform.release(),
        machine=platform.machine(),
        python=platform.python_version(),
        cpu=cpu_model(),
        logical_cpus=psutil.cpu_count(logical=True),
        physical_cores=psutil.cpu_count(logical=False),
        memory_bytes=psutil.virtual_memory().total,
    )
