"""Real services for the tests: SeaweedFS (S3), PostgreSQL 15 and Label Studio.

Every server is a real process started on 127.0.0.1, on free ports picked at
start, in its own temporary directory, and stopped (with all its children) when
the fixture ends, even when the test failed. Nothing here contacts anything
outside 127.0.0.1.

Use as pytest fixtures (session scope)::

    pytest_plugins = ["tests.services"]          # in a test module or conftest.py

    def test_upload(s3_server):
        bucket = s3_server.create_bucket()
        s3_server.client().put_object(Bucket=bucket, Key="k", Body=b"x")

or as context managers, for a private instance (fault tests)::

    with start_s3_server() as s3:
        ...
        with s3.stopped():            # the server is down inside the block
            ...
        s3.restart()                  # same ports, same data

Install the binaries with ``scripts/install-services.sh``. When one is missing
the fixture skips, or fails when the environment variable ``CI`` is ``true``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import json
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path(os.environ.get("SKITFLOW_PG_BIN", "/usr/lib/postgresql/15/bin"))
INSTALL_HINT = "run scripts/install-services.sh"
HOST = "127.0.0.1"

# Seconds each start took, by service name, in the order they happened.
START_TIMES: dict[str, list[float]] = {}


# --------------------------------------------------------------------------- errors


class ServiceError(RuntimeError):
    """A service could not be started or stopped."""


class PortBusyError(ServiceError):
    """A port the service needs is already taken by another process."""


# --------------------------------------------------------------------------- helpers


def ci_mode() -> bool:
    """True when running in CI (``CI=true``): missing services then fail instead of skipping."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _find_weed() -> Path | None:
    candidates = []
    if os.environ.get("SKITFLOW_WEED_BIN"):
        candidates.append(Path(os.environ["SKITFLOW_WEED_BIN"]))
    candidates += [Path(sys.executable).parent / "weed", REPO_ROOT / ".venv" / "bin" / "weed"]
    which = shutil.which("weed")
    if which:
        candidates.append(Path(which))
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def _find_label_studio() -> Path | None:
    candidates = []
    if os.environ.get("SKITFLOW_LABEL_STUDIO_BIN"):
        candidates.append(Path(os.environ["SKITFLOW_LABEL_STUDIO_BIN"]))
    candidates.append(REPO_ROOT / ".venv-labelstudio" / "bin" / "label-studio")
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


_ALIASES = {
    "s3": "s3",
    "seaweedfs": "s3",
    "weed": "s3",
    "postgres": "postgres",
    "postgresql": "postgres",
    "pg": "postgres",
    "labelstudio": "labelstudio",
    "label-studio": "labelstudio",
    "label_studio": "labelstudio",
}


def service_available(name: str) -> tuple[bool, str]:
    """Whether the binaries for service ``name`` are installed: ``(ok, reason or path)``.

    ``name`` is one of ``s3``/``seaweedfs``, ``postgres``/``postgresql``,
    ``labelstudio``/``label-studio``.
    """
    kind = _ALIASES.get(name.lower())
    if kind is None:
        raise ValueError(f"unknown service {name!r}; expected one of {sorted(_ALIASES)}")
    if kind == "s3":
        weed = _find_weed()
        if weed is None:
            return False, f"SeaweedFS not installed (no `weed` binary): {INSTALL_HINT}"
        return True, str(weed)
    if kind == "postgres":
        missing = [b for b in ("postgres", "initdb") if not (PG_BIN / b).is_file()]
        if missing:
            return (
                False,
                f"PostgreSQL 15 not installed ({PG_BIN}/{missing[0]} missing): {INSTALL_HINT}",
            )
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return (
                    False,
                    f"PostgreSQL needs a 'postgres' user to run as when tests run as root: {INSTALL_HINT}",
                )
        return True, str(PG_BIN / "postgres")
    ls = _find_label_studio()
    if ls is None:
        return (
            False,
            f"Label Studio not installed (no .venv-labelstudio/bin/label-studio): {INSTALL_HINT}",
        )
    return True, str(ls)


def require_service(name: str) -> None:
    """Skip the current test (or fail it when ``CI=true``) if service ``name`` is missing."""
    ok, reason = service_available(name)
    if ok:
        return
    if ci_mode():
        pytest.fail(f"{reason} (CI=true: a missing service is an error, not a skip)", pytrace=False)
    pytest.skip(reason)


# Ports are picked in 10000-22767 so that port+10000 (SeaweedFS' gRPC convention)
# stays below the kernel's ephemeral range (32768+) where client sockets land.
_PORT_LOW, _PORT_HIGH, _GRPC_OFFSET = 10000, 22767, 10000
_rng = random.Random(int.from_bytes(os.urandom(8), "big"))
_handed_out: set[int] = set()


def port_is_free(port: int, host: str = HOST) -> bool:
    """True if nothing listens on ``host:port`` (TIME_WAIT leftovers do not count, as for servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(*, with_grpc: bool = False) -> int:
    """A free TCP port on 127.0.0.1 (and port+10000 free too when ``with_grpc``)."""
    for _ in range(2000):
        port = _rng.randint(_PORT_LOW, _PORT_HIGH)
        pair = [port, port + _GRPC_OFFSET] if with_grpc else [port]
        if any(p in _handed_out for p in pair) or not all(port_is_free(p) for p in pair):
            continue
        _handed_out.update(pair)
        return port
    raise PortBusyError("could not find a free port on 127.0.0.1")


def _check_ports_free(service: str, ports: dict[str, int]) -> None:
    busy = {name: port for name, port in ports.items() if not port_is_free(port)}
    if busy:
        desc = ", ".join(f"{name}={port}" for name, port in busy.items())
        raise PortBusyError(f"{service}: port(s) already in use on {HOST}: {desc}")


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def _proc_pgid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[2])


def process_group_pids(pgid: int) -> list[int]:
    """All live processes of process group ``pgid`` (each service runs in its own group)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _proc_pgid(int(entry)) == pgid:
            pids.append(int(entry))
    return pids


def _decode_addr(hex_addr: str) -> tuple[str, int]:
    ip_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(ip_hex)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # /proc/net/tcp6 stores four little-endian 32-bit words
        ip = socket.inet_ntop(
            socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        )
    return ip, int(port_hex, 16)


def tcp_sockets(pids: list[int]) -> dict[str, list[tuple[str, int, str, int]]]:
    """TCP sockets of ``pids``: ``{"listen": [(ip, port, '', 0)], "connected": [(lip, lport, rip, rport)]}``."""
    inodes: set[str] = set()
    for pid in pids:
        inodes |= _socket_inodes(pid)
    out: dict[str, list[tuple[str, int, str, int]]] = {"listen": [], "connected": []}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[9] not in inodes:
                    continue
                lip, lport = _decode_addr(parts[1])
                rip, rport = _decode_addr(parts[2])
                if parts[3] == "0A":  # LISTEN
                    out["listen"].append((lip, lport, "", 0))
                else:
                    out["connected"].append((lip, lport, rip, rport))
    return out


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """A minimal environment for a child: nothing of the test's AWS_*, PG*, DJANGO_*, proxies etc."""
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ"}}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    env.update(extra)
    return env


try:  # resolved here, not in the forked child (no dlopen between fork and exec)
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    if _prctl is not None:
        _prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG: die with the test process


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _make_workdir(kind: str) -> Path:
    base = os.environ.get("SKITFLOW_SERVICES_DIR") or tempfile.gettempdir()
    if len(base) > 60:  # unix socket paths must stay under 108 bytes
        base = "/tmp"
    Path(base).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"skitflow-{kind}-", dir=base))


# --------------------------------------------------------------------------- base class

_RUNNING: set[Service] = set()


@atexit.register
def _stop_all_at_exit() -> None:
    for svc in list(_RUNNING):
        with contextlib.suppress(Exception):
            svc.stop(kill=True)


@dataclasses.dataclass(eq=False, kw_only=True)
class Service:
    """A server process in its own process group, with its logs in ``workdir``."""

    name: ClassVar[str] = "service"
    stop_signal: ClassVar[int] = signal.SIGTERM
    ready_timeout: ClassVar[float] = 60.0

    workdir: Path
    ports: dict[str, int] = dataclasses.field(default_factory=dict)
    start_seconds: float | None = None  # how long the first start took
    start_history: list[float] = dataclasses.field(
        default_factory=list
    )  # every start, restarts too
    log_path: Path = dataclasses.field(init=False)
    _proc: subprocess.Popen | None = dataclasses.field(default=None, init=False, repr=False)
    _log_file: Any = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"{self.name}.log"

    # -- to implement -------------------------------------------------------
    def _pick_ports(self) -> dict[str, int]:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        raise NotImplementedError

    def _wait_ready(self, deadline: float) -> None:
        """Return when the service really works; raise ServiceError when not by ``deadline``."""
        raise NotImplementedError

    def _popen_kwargs(self) -> dict[str, Any]:
        return {}

    def _main_port(self) -> int:
        return next(iter(self.ports.values()))

    def _all_ports(self) -> dict[str, int]:
        """Every TCP port the process will listen on, by name."""
        return dict(self.ports)

    def _port_conflict(self) -> bool:
        """True if the log says a port was taken (to retry a first start on other ports)."""
        text = _tail(self.log_path, 200).lower()
        return any(
            m in text for m in ("address already in use", "is in use", "port allocation failed")
        )

    # -- lifecycle ----------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def pids(self) -> list[int]:
        """The live processes of this service (its process group)."""
        return process_group_pids(self._proc.pid) if self._proc else []

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)

    def _failure(self, message: str) -> ServiceError:
        cls = PortBusyError if self._port_conflict() else ServiceError
        return cls(
            f"{self.name}: {message}\n"
            f"  workdir (kept): {self.workdir}\n"
            f"  ports: {self.ports}\n"
            f"--- last lines of {self.log_path} ---\n{self.log_tail()}"
        )

    def _check_alive(self) -> None:
        if not self.is_running:
            code = self._proc.returncode if self._proc else None
            raise self._failure(f"process exited with code {code} before it was ready")

    def _check_owns_port(self) -> None:
        """The port answering must be ours (not another server that was already there)."""
        port = self._main_port()
        listening = {(ip, p) for ip, p, _, _ in tcp_sockets(self.pids())["listen"]}
        if (HOST, port) not in listening:
            raise self._failure(
                f"our process does not listen on {HOST}:{port}; it listens on {sorted(listening)}"
            )

    def start(self) -> float:
        """Start the process and wait until it is really usable; returns the seconds it took.

        The first start picks free ports (retrying on a port race); later starts reuse
        the same ports and data, and raise PortBusyError if a port was taken meanwhile.
        """
        if self.is_running:
            raise ServiceError(f"{self.name} is already running (pid {self.pid})")
        first = not self.ports
        for attempt in range(3 if first else 1):
            if first:
                self.ports = self._pick_ports()
            try:
                return self._start_once()
            except PortBusyError:
                self.stop(kill=True)
                if not first or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self) -> float:
        _check_ports_free(self.name, self._all_ports())
        t0 = time.monotonic()
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file.write(f"\n===== starting {self.name} at {time.ctime()} =====\n".encode())
        self._log_file.flush()
        cmd = self._command()
        self._proc = subprocess.Popen(
            cmd,
            cwd=self.workdir,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_set_pdeathsig,
            **self._popen_kwargs(),
        )
        _RUNNING.add(self)
        try:
            self._wait_ready(t0 + self.ready_timeout)
            self._check_owns_port()
        except BaseException:
            self.stop(kill=True)
            raise
        seconds = time.monotonic() - t0
        if self.start_seconds is None:
            self.start_seconds = seconds
        self.start_history.append(seconds)
        START_TIMES.setdefault(self.name, []).append(seconds)
        return seconds

    def stop(self, *, kill: bool = False, timeout: float = 20.0) -> None:
        """Stop the process and all its children.

        ``kill=True`` sends SIGKILL at once (a crash); otherwise the service's own
        graceful signal, then SIGKILL after ``timeout`` seconds.
        """
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    if kill:
                        os.killpg(proc.pid, signal.SIGKILL)
                    else:
                        os.kill(proc.pid, self.stop_signal)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            # children left in the group (if any) go too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while process_group_pids(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        _RUNNING.discard(self)

    def restart(self, *, kill: bool = False) -> float:
        """Stop (gracefully, or SIGKILL with ``kill=True``) and start again on the same ports and data."""
        self.stop(kill=kill)
        return self.start()

    @contextlib.contextmanager
    def stopped(self, *, kill: bool = False) -> Iterator[None]:
        """Inside the block the server is down; it is started again (same ports, same data) after."""
        self.stop(kill=kill)
        try:
            yield
        finally:
            self.start()

    def cleanup(self, *, keep: bool = False) -> None:
        """Stop, and remove the workdir unless ``keep`` or SKITFLOW_KEEP_SERVICE_DIRS=1."""
        self.stop()
        if not keep and os.environ.get("SKITFLOW_KEEP_SERVICE_DIRS") not in {"1", "true"}:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _running(svc: Service) -> Iterator[Any]:
    try:
        svc.start()
    except BaseException:
        svc.stop(kill=True)
        raise  # the workdir and its logs are kept for a look
    try:
        yield svc
    finally:
        svc.cleanup()


# --------------------------------------------------------------------------- S3 (SeaweedFS)


@dataclasses.dataclass(eq=False, kw_only=True)
class S3Server(Service):
    """SeaweedFS ``weed mini`` with credentials set, so signatures are really checked."""

    name: ClassVar[str] = "s3"
    ready_timeout: ClassVar[float] = 90.0

    weed: Path
    access_key: str = dataclasses.field(default_factory=lambda: "skitflow" + secrets.token_hex(6))
    secret_key: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(24))
    region: str = "us-east-1"

    @property
    def port(self) -> int:
        return self.ports["s3"]

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.ports['s3']}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def _main_port(self) -> int:
        return self.ports["s3"]

    def _pick_ports(self) -> dict[str, int]:
        return {c: free_port(with_grpc=True) for c in ("s3", "master", "volume", "filer", "admin")}

    def _all_ports(self) -> dict[str, int]:
        ports = dict(self.ports)
        ports.update({f"{name}.grpc": port + _GRPC_OFFSET for name, port in self.ports.items()})
        return ports

    def _command(self) -> list[str]:
        (self.workdir / "logs").mkdir(exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        p = self.ports
        cmd = [str(self.weed), f"-logdir={self.workdir / 'logs'}", "mini", f"-dir={self.data_dir}"]
        cmd += [f"-ip={HOST}", f"-ip.bind={HOST}", "-webdav=false", "-admin.ui=false"]
        cmd += ["-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false"]
        for comp in ("s3", "master", "volume", "filer", "admin"):
            cmd += [f"-{comp}.port={p[comp]}", f"-{comp}.port.grpc={p[comp] + _GRPC_OFFSET}"]
        cmd += [
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
        ]
        return cmd

    def _env(self) -> dict[str, str]:
        return _clean_env(
            {
                "HOME": str(self.workdir),
                "TMPDIR": str(self.workdir),
                "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key,
            }
        )

    def client(
        self, *, access_key: str | None = None, secret_key: str | None = None, **config: Any
    ) -> Any:
        """A boto3 S3 client for this server (path-style; other credentials to test refusal)."""
        import boto3
        from botocore.config import Config

        cfg = Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            retries={"max_attempts": config.pop("max_attempts", 2), "mode": "standard"},
            connect_timeout=config.pop("connect_timeout", 5),
            read_timeout=config.pop("read_timeout", 30),
            proxies={},
            **config,
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.region,
            config=cfg,
        )

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh unique name when ``name`` is None) and return its name."""
        name = name or f"test-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        """AWS_* variables that point a subprocess (or boto3's default chain) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    @property
    def storage_options(self) -> dict[str, Any]:
        """``storage_options`` for pandas / s3fs ``s3://`` paths."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": self.region},
            "config_kwargs": {"s3": {"addressing_style": "path"}},
        }

    def _wait_ready(self, deadline: float) -> None:
        # The port answers before writes work: wait for an authenticated put to succeed.
        last: Exception | None = None
        probe = "skitflow-readiness-probe"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                c = self.client(max_attempts=1, connect_timeout=1, read_timeout=5)
                with contextlib.suppress(
                    c.exceptions.BucketAlreadyOwnedByYou, c.exceptions.BucketAlreadyExists
                ):
                    c.create_bucket(Bucket=probe)
                c.put_object(Bucket=probe, Key="probe", Body=b"ok")
                if c.get_object(Bucket=probe, Key="probe")["Body"].read() != b"ok":
                    raise ServiceError("probe object read back wrong")
                c.delete_object(Bucket=probe, Key="probe")
                c.delete_bucket(Bucket=probe)
                return
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                last = exc
                time.sleep(0.3)
        raise self._failure(f"not ready after {self.ready_timeout:.0f} s (last error: {last!r})")

    def stop(self, *, kill: bool = False, timeout: float = 20.0) -> None:
        super().stop(kill=kill, timeout=timeout)
        # a killed weed leaves its gRPC unix sockets in /tmp (named by port; it ignores TMPDIR)
        for comp, port in self.ports.items():
            with contextlib.suppress(OSError):
                Path(f"/tmp/seaweedfs-{comp}-grpc-{port + _GRPC_OFFSET}.sock").unlink()

    def _port_conflict(self) -> bool:
        if super()._port_conflict():
            return True
        return "address already in use" in _tail(self.workdir / "logs" / "weed.INFO", 200).lower()

    def log_tail(self, lines: int = 60) -> str:
        out = super().log_tail(lines)
        warn = self.workdir / "logs" / "weed.WARNING"
        if warn.exists():
            out += f"\n--- last lines of {warn} ---\n{_tail(warn, lines // 2)}"
        return out


@contextlib.contextmanager
def start_s3_server() -> Iterator[S3Server]:
    """A private SeaweedFS server for the duration of the block."""
    ok, reason = service_available("s3")
    if not ok:
        raise ServiceError(reason)
    yield from _running(S3Server(workdir=_make_workdir("s3"), weed=Path(reason)))


# --------------------------------------------------------------------------- PostgreSQL


@dataclasses.dataclass(eq=False, kw_only=True)
class PostgresServer(Service):
    """A throw-away PostgreSQL 15 cluster with password (scram) auth over TCP."""

    name: ClassVar[str] = "postgres"
    stop_signal: ClassVar[int] = signal.SIGINT  # "fast" shutdown
    ready_timeout: ClassVar[float] = 60.0

    host: str = HOST
    user: str = "skitflow"
    password: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(16))
    database: str = "skitflow"
    superuser: str = "postgres"
    superuser_password: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(16))
    _initialised: bool = dataclasses.field(default=False, init=False, repr=False)

    @property
    def port(self) -> int:
        return self.ports["postgres"]

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def url_for(
        self, database: str | None = None, *, user: str | None = None, password: str | None = None
    ) -> str:
        """SQLAlchemy URL (``postgresql+psycopg://``) for a database / user on this server."""
        from urllib.parse import quote

        user = user or self.user
        if password is None:
            password = self.superuser_password if user == self.superuser else self.password
        return (
            f"postgresql+psycopg://{quote(user, safe='')}:{quote(password, safe='')}"
            f"@{self.host}:{self.port}/{database or self.database}"
        )

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the test user's own database."""
        return self.url_for()

    @property
    def admin_url(self) -> str:
        """SQLAlchemy URL of the superuser on the ``postgres`` database."""
        return self.url_for("postgres", user=self.superuser)

    @property
    def dsn(self) -> str:
        """libpq conninfo for ``psycopg.connect`` as the test user."""
        return f"host={self.host} port={self.port} dbname={self.database} user={self.user} password={self.password}"

    def create_database(self, name: str | None = None) -> str:
        """Create a database owned by the test user (fresh unique name if None); returns its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        name = name or f"test_{secrets.token_hex(5)}"
        with psycopg.connect(self._admin_dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(self.user)
                )
            )
        return self.url_for(name)

    def _admin_dsn(self, dbname: str = "postgres") -> str:
        return (
            f"host={self.host} port={self.port} dbname={dbname} "
            f"user={self.superuser} password={self.superuser_password} connect_timeout=3"
        )

    def _pick_ports(self) -> dict[str, int]:
        return {"postgres": free_port()}

    def _popen_kwargs(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        pw = pwd.getpwnam("postgres")  # the server refuses to run as root
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def _initdb(self) -> None:
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        kwargs = self._popen_kwargs()
        if kwargs:
            for path in (self.workdir, pwfile):
                os.chown(path, kwargs["user"], kwargs["group"])
        cmd = [
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.superuser,
            f"--pwfile={pwfile}",
            "--auth-local=trust",  # the unix socket is in our private 0700 workdir
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]
        with open(self.workdir / "initdb.log", "wb") as log:
            rc = subprocess.run(
                cmd,
                cwd=self.workdir,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
                **kwargs,
            ).returncode
        pwfile.unlink()
        if rc != 0:
            raise ServiceError(
                f"initdb failed ({rc}); workdir kept: {self.workdir}\n{_tail(self.workdir / 'initdb.log')}"
            )

    def _command(self) -> list[str]:
        if not self._initialised:
            self._initdb()
            self._initialised = True
        return [
            str(PG_BIN / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-k",
            str(self.workdir),
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]

    def _env(self) -> dict[str, str]:
        return _clean_env({"HOME": str(self.workdir), "LC_ALL": "C.UTF-8"})

    def _wait_ready(self, deadline: float) -> None:
        import psycopg
        from psycopg import sql

        last: Exception | None = None
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with psycopg.connect(self._admin_dsn(), autocommit=True) as conn:
                    conn.execute("SELECT 1").fetchone()
                    if not conn.execute(
                        "SELECT 1 FROM pg_roles WHERE rolname = %s", (self.user,)
                    ).fetchone():
                        conn.execute(
                            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                                sql.Identifier(self.user), sql.Literal(self.password)
                            )
                        )
                    if not conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
                    ).fetchone():
                        conn.execute(
                            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                                sql.Identifier(self.database), sql.Identifier(self.user)
                            )
                        )
                with psycopg.connect(self.dsn + " connect_timeout=3") as conn:
                    if conn.execute("SELECT 1").fetchone() != (1,):
                        raise ServiceError("SELECT 1 returned something else")
                return
            except Exception as exc:  # noqa: BLE001
                last = exc
                time.sleep(0.1)
        raise self._failure(f"not ready after {self.ready_timeout:.0f} s (last error: {last!r})")


@contextlib.contextmanager
def start_postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster for the duration of the block."""
    ok, reason = service_available("postgres")
    if not ok:
        raise ServiceError(reason)
    workdir = _make_workdir("pg")
    yield from _running(PostgresServer(workdir=workdir))


# --------------------------------------------------------------------------- Label Studio


@dataclasses.dataclass(eq=False, kw_only=True)
class LabelStudioServer(Service):
    """Label Studio 1.23.2 from its own virtualenv, with a user and a legacy API token."""

    name: ClassVar[str] = "labelstudio"
    stop_signal: ClassVar[int] = signal.SIGINT
    ready_timeout: ClassVar[float] = (
        240.0  # the first start on a new data dir runs migrations (~30 s)
    )

    label_studio: Path
    username: str = "skitflow@example.com"
    password: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(16))
    django_secret_key: str = dataclasses.field(
        default_factory=lambda: secrets.token_urlsafe(40), repr=False
    )
    token: str = dataclasses.field(
        default_factory=lambda: secrets.token_hex(20)
    )  # 40 chars, the maximum
    _pat: str = dataclasses.field(default="", repr=False)

    @property
    def port(self) -> int:
        return self.ports["http"]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    def session(self, token: str | None = None) -> Any:
        """A requests.Session with the API token set (ignores proxy variables)."""
        import requests

        s = requests.Session()
        s.trust_env = False
        s.headers["Authorization"] = f"Token {token or self.token}"
        return s

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """One authenticated call, e.g. ``api("POST", "/api/projects", json={...})``; returns the Response."""
        kwargs.setdefault("timeout", 60)
        with self.session() as s:
            return s.request(method, self.url + path, **kwargs)

    def personal_access_token(self, *, fresh: bool = False) -> str:
        """The test user's personal access token (a JWT refresh token), made when first asked for.

        Label Studio allows one per user and answers 409 to a second `POST /api/token/`: any
        token already there (an earlier module, a restarted session) is revoked through
        `POST /api/token/blacklist/` and a new one is made, so a test never has to skip.
        `fresh=True` replaces the current token the same way.
        """
        if self._pat and not fresh:
            return self._pat
        r = self.api("POST", "/api/jwt/settings",
                     json={"api_tokens_enabled": True, "legacy_api_tokens_enabled": True})
        assert r.status_code == 200, r.text
        r = self.api("POST", "/api/token/")
        if r.status_code == 409:
            listed = self.api("GET", "/api/token/")
            assert listed.status_code == 200, listed.text
            for existing in listed.json():  # header.payload only: enough to revoke, not to use
                revoked = self.api("POST", "/api/token/blacklist/", json={"refresh": existing["token"]})
                assert revoked.status_code == 204, revoked.text
            r = self.api("POST", "/api/token/")
        assert r.status_code == 201, r.text
        self._pat = str(r.json()["token"])
        return self._pat

    def _pick_ports(self) -> dict[str, int]:
        return {"http": free_port()}

    def _command(self) -> list[str]:
        self.data_dir.mkdir(exist_ok=True)
        return [
            str(self.label_studio),
            "start",
            "--no-browser",
            "--internal-host",
            HOST,
            "-p",
            str(self.port),
            "--log-level",
            "WARNING",
        ]

    def _env(self) -> dict[str, str]:
        bindir = str(self.label_studio.parent)
        env = _clean_env(
            {
                "HOME": str(self.workdir),
                "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
                "LABEL_STUDIO_USERNAME": self.username,
                "LABEL_STUDIO_PASSWORD": self.password,
                "LABEL_STUDIO_USER_TOKEN": self.token,
                # must be set on the data dir's first start, or `Token` auth is refused (401)
                "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
                # nothing may phone home: version check, server-side analytics, Sentry
                "LATEST_VERSION_CHECK": "false",
                "COLLECT_ANALYTICS": "false",
                "SENTRY_DSN": "",
                "FRONTEND_SENTRY_DSN": "",
                "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
                "SECRET_KEY": self.django_secret_key,  # stable across restarts
                # belt and braces: any stray outbound HTTP goes to a dead local port
                "HTTP_PROXY": "http://127.0.0.1:9",
                "HTTPS_PROXY": "http://127.0.0.1:9",
                "http_proxy": "http://127.0.0.1:9",
                "https_proxy": "http://127.0.0.1:9",
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        env["PATH"] = bindir + os.pathsep + env["PATH"]
        env["VIRTUAL_ENV"] = str(self.label_studio.parent.parent)
        return env

    def _wait_ready(self, deadline: float) -> None:
        import requests

        last: Exception | str | None = None
        with requests.Session() as s:
            s.trust_env = False
            while time.monotonic() < deadline:
                self._check_alive()
                if "is in use" in self.log_tail(200):  # it silently moves to another port
                    raise self._failure(f"port {self.port} was taken; label-studio moved elsewhere")
                try:
                    r = s.get(self.url + "/health", timeout=5)
                    if r.status_code == 200:
                        r = s.get(self.url + "/api/projects", headers=self.headers, timeout=30)
                        if r.status_code == 200:
                            return
                        last = f"GET /api/projects -> {r.status_code}: {r.text[:300]}"
                    else:
                        last = f"GET /health -> {r.status_code}"
                except requests.RequestException as exc:
                    last = exc
                time.sleep(0.5)
        raise self._failure(f"not ready after {self.ready_timeout:.0f} s (last: {last!r})")


@contextlib.contextmanager
def start_labelstudio_server() -> Iterator[LabelStudioServer]:
    """A private Label Studio for the duration of the block (first start ~30 s)."""
    ok, reason = service_available("labelstudio")
    if not ok:
        raise ServiceError(reason)
    yield from _running(LabelStudioServer(workdir=_make_workdir("ls"), label_studio=Path(reason)))


# --------------------------------------------------------------------------- pytest fixtures


def _fixture(kind: str, factory: Any) -> Iterator[Any]:
    require_service(kind)
    with factory() as svc:
        yield svc


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A SeaweedFS S3 server on 127.0.0.1 with credentials (shared by the session)."""
    yield from _fixture("s3", start_s3_server)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL 15 server on 127.0.0.1 with password auth (shared by the session)."""
    yield from _fixture("postgres", start_postgres_server)


@pytest.fixture(scope="session")
def labelstudio_server() -> Iterator[LabelStudioServer]:
    """A Label Studio 1.23.2 server on 127.0.0.1 with an API token (shared by the session)."""
    yield from _fixture("labelstudio", start_labelstudio_server)


SERVICE_FIXTURES = frozenset({"s3_server", "postgres_server", "labelstudio_server"})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: `make test-fast` runs the pure tests
def pytest_collection_modifyitems(items: list[Any]) -> None:
    """Mark `services` each test that uses a server fixture, directly or through another fixture.

    Marking per test, not per module, keeps the pure tests of a server module in `make test-fast`.
    """
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


def service_start_times() -> dict[str, list[float]]:
    """Seconds each service start took in this process, by service name."""
    return {k: list(v) for k, v in START_TIMES.items()}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """When loaded as a plugin, report how long the services took to start."""
    if not START_TIMES:
        return
    out = os.environ.get("SKITFLOW_SERVICE_TIMES_FILE")
    if out:  # e.g. for CI to report how long the services took to start
        Path(out).write_text(json.dumps(service_start_times(), indent=2) + "\n")
    terminalreporter.section("service start times")
    for name, times in START_TIMES.items():
        detail = ", ".join(f"{t:.1f}s" for t in times)
        terminalreporter.write_line(f"{name}: first start {times[0]:.1f}s (all starts: {detail})")
