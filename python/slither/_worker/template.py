"""A pool's template process: ``python -m slither._worker.template MODULE...`` (started by the pool, never by hand).

It imports the ``preload`` modules once, says READY (or why an import failed) on its control socket (fd 3,
a SOCK_SEQPACKET pair whose other end only the pool's supervisor holds), then serves three requests::

    fork  {env, places} + fds ─▶ fork; the child places fd k at places[k] and becomes a worker ─▶ {"pid": N}
    status {pid}  (after the host saw it exit)   ─▶ waitid(WNOWAIT): {"code": c} or {"signal": s}
    reap   {pid}  (after the host is done with it) ─▶ waitpid; no reply

A forked child stays a zombie until the host asks for it to be reaped, so its pid and process group id
cannot be reused while the host may still signal them (the same rule the host keeps for workers it started
itself). The child runs exactly the worker of ``python -m slither._worker``: own process group, its
descriptors where the host says (the worker's channel, control channel and started word, and stdout and
stderr when they are forwarded; ``/dev/null`` otherwise), its own ``init``. Standard library only; it starts no thread of its own (an imported module may).
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import socket
import sys
import traceback
import warnings

CONTROL_FD = 3  # the template's own socket to the host
_MAX_REQUEST = 1 << 20


def main(modules: list[str]) -> None:
    ctl = socket.socket(fileno=CONTROL_FD)
    # The host's import path, as every worker gets it with its init (the same order: first entries win).
    for entry in reversed(json.loads(os.environ.pop("SLITHER_TEMPLATE_PATH", "[]") or "[]")):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # any failure to import is reported, never raised here
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            ctl.send(f"E{name}\0{last}".encode())
            os._exit(1)
    # The worker's own modules too, so a forked worker starts serving at once.
    import slither._worker.loop  # noqa: F401

    ctl.send(b"R")
    while True:
        msg, fds, _flags, _addr = socket.recv_fds(ctl, _MAX_REQUEST, 5)
        if not msg:  # the host closed its end: the pool stopped (or the host died)
            os._exit(0)
        req = json.loads(msg)
        op = req["op"]
        if op == "fork":
            ctl.send(json.dumps(_fork(ctl, fds, req["places"], req["env"])).encode())
        elif op == "status":
            ctl.send(json.dumps(_status(req["pid"])).encode())
        elif op == "reap":
            _reap(req["pid"])
        for fd in fds:
            _close(fd)


def _fork(ctl: socket.socket, fds: list[int], places: list[int], env: dict[str, str]) -> dict[str, object]:
    try:
        # Forking after imports that started native threads (BLAS pools) is what multiprocessing's forkserver
        # does too; those libraries reset themselves in the child (pthread_atfork).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError as exc:
        return {"error": f"fork failed: {exc}"}
    if pid == 0:
        code = 70
        try:
            _become_worker(ctl, fds, places, env)
            code = 0
        except BaseException:  # a child must never return into the template's loop
            traceback.print_exc()
        finally:
            os._exit(code)
    try:
        # Also here, so the group exists before the host can signal it, whichever side runs first.
        os.setpgid(pid, pid)
    except OSError:
        pass
    return {"pid": pid}


def _become_worker(ctl: socket.socket, fds: list[int], places: list[int], env: dict[str, str]) -> None:
    os.setpgid(0, 0)
    ctl.detach()  # its fd 3 is placed over below; the socket object must not close it later
    fds, places = list(fds), list(places)
    for out in (1, 2):
        if out not in places:
            fds.append(os.open(os.devnull, os.O_WRONLY))
            places.append(out)
    # Copies above every place first, so that placing one never overwrites another sitting at its place.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, max(places) + 1) for fd in fds]
    for fd in fds:
        _close(fd)
    for fd, place in zip(high, places):
        os.dup2(fd, place)
    for fd in high:
        _close(fd)
    os.environ.update(env)
    _reseed()
    from slither._worker.loop import main as worker_main

    worker_main()


def _reseed() -> None:
    # Forked children share their template's random state; fresh interpreters would each seed their own.
    # `random` reseeds itself after fork; numpy's legacy global generator does not.
    np_random = sys.modules.get("numpy.random")
    if np_random is not None:
        np_random.seed()


def _status(pid: int) -> dict[str, object]:
    try:
        r = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    except (ChildProcessError, OSError) as exc:
        return {"error": str(exc)}
    if r is None:
        return {}
    if r.si_code == os.CLD_EXITED:
        return {"code": r.si_status}
    if r.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
        return {"signal": r.si_status}
    return {}


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except (ChildProcessError, OSError):
        pass


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
