"""Time limits of the tests that start processes or servers.

They are hang guards, not performance assertions: a test's verdict must not depend on how
busy the machine is. On an idle 2-core machine every guarded step finishes in well under a
tenth of its limit; the limits leave room for a machine loaded several times over (the
suite has been run beside a CPU-burning process), and only a real hang reaches them.
"""

HANG_GUARD_S = 1800.0
"""Longest wait for a child process (training, tuning, torchrun, dvc) to finish."""

SERVER_START_S = 600.0
"""Longest wait for a server (``mlflow server``) to answer its health check."""
