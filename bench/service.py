"""``ttc-serve serve`` as a benchmark's child process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from ttc_serve.models.launcher import die_with_parent


def spawn_service(env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """The service with these environment variables, output discarded. The kernel stops it if the
    benchmark dies (a benchmark stopped with SIGTERM once left its service running)."""
    return subprocess.Popen([str(Path(sys.executable).parent / "ttc-serve"), "serve"], env=dict(env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=die_with_parent)
