"""Several real processes at once: `python -m worker` processes, gunicorn servers, `make run`'s
launcher; invariants under concurrency and the soak."""
