"""What a worker does with a release: git (git.py), the trusted hook (hook.py), the sandbox
(sandbox.py, reaper.py), running within limits (limits.py), and the run itself (runner.py)."""
