"""Runs one task's command and takes its whole process group down when `skitflow run` dies.

`python task_guard.py COMMAND...` is started by the local runner in a new process group, with the
kernel told to send it SIGTERM when the runner dies (`PR_SET_PDEATHSIG`, which also fires on
SIGKILL). The task's own command (kfp's `sh -ec ...`, which starts Python as its child) runs
unchanged below it, in the same group. On SIGTERM the guard kills the group, so no task process
outlives the runner. SIGINT is left to the task (the runner sends it to the whole group to stop
a run; Python tasks then clean up their temporary files). The exit status is the command's.

Only the standard library is imported, and the runner starts it with `-I -S`: it costs about as
much as starting an empty interpreter.
"""

import os
import signal
import subprocess
import sys


def main(command: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: os.killpg(0, signal.SIGKILL))
    # a caught (not ignored) SIGINT: the command gets the default disposition back at exec
    signal.signal(signal.SIGINT, lambda *_: None)
    child = subprocess.Popen(command)
    while True:
        try:
            code = child.wait()
        except InterruptedError:  # pragma: no cover - wait retries by itself (PEP 475)
            continue
        return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
