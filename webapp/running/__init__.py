"""What a worker does with a release: git (git.py), the trusted hook (hook.py), the sandbox
(sandbox.py, reaper.py), running within limits (limits.py), riding out a database outage
(outage.py), and the run itself (runner.py)."""

import tempfile
from pathlib import Path

# Where workers write each run's workspace (checkout, payload, HOME, the trusted hook folder).
WORK_ROOT = Path(tempfile.gettempdir()) / "releasegate-work"
