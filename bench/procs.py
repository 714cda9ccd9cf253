"""Child processes: the `gateway` command as an operator runs it, the relay stand-in, the
floors; their configuration, wall and CPU time, ports and memory.

Everything the benchmark measures runs in a process of its own, started from the
virtualenv the benchmark runs in, so the figures include what an operator pays (start-up,
schema check) and the load generator never shares an interpreter with what it measures.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GATEWAY = str(Path(sys.executable).parent / "gateway")
SUPPORT = "support@editeur.example"
# Children started with this interpreter find the `bench` package wherever they run.
CHILD_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Return once something accepts connections on `port`; raise if `process` died first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:g} s")


def write_config(folder: Path, url: str, *, smtp_port: int = 2525, relay_port: int | None = None,
                 jobs: bool = False) -> Path:
    """A gateway configuration in `folder`: the database `url`, the door on `smtp_port`,
    outbound mail to the relay stand-in on `relay_port` (else a Maildir), the log in a file."""
    folder.mkdir(parents=True, exist_ok=True)
    outbound = (f'transport = "smtp"\nhost = "127.0.0.1"\nport = {relay_port}\n' if relay_port
                else 'transport = "maildir"\nmaildir = "sent"\n')
    path = folder / "gateway.toml"
    path.write_text(
        f'[database]\nurl = "{url}"\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\n'
        f'[support]\naddress = "{SUPPORT}"\n[outbound]\n{outbound}'
        f'[jobs]\nenabled = {"true" if jobs else "false"}\n[log]\nfile = "gateway.log"\n', encoding="utf-8")
    return path


@dataclass(frozen=True)
class Timed:
    """A finished child: wall seconds, CPU seconds (user + system), exit status, output."""
    seconds: float
    cpu: float
    returncode: int
    stdout: str
    stderr: str


def timed(args: list[str], cwd: Path | None = None, timeout: float | None = None) -> Timed:
    """Run `args` to the end (killed after `timeout`); its own CPU time comes from wait4."""
    out, err = (cwd or Path.cwd()) / ".out", (cwd or Path.cwd()) / ".err"
    with open(out, "wb") as o, open(err, "wb") as e:
        t0 = time.perf_counter()
        process = subprocess.Popen(args, cwd=cwd, stdout=o, stderr=e, stdin=subprocess.DEVNULL, env=CHILD_ENV)
        try:
            _pid, status, usage = _wait4(process.pid, timeout)
        except TimeoutError:
            process.kill()
            process.wait()
            raise
        seconds = time.perf_counter() - t0
    process.returncode = os.waitstatus_to_exitcode(status)
    return Timed(seconds, usage.ru_utime + usage.ru_stime, process.returncode,
                 out.read_text(errors="replace"), err.read_text(errors="replace"))


def _wait4(pid: int, timeout: float | None) -> tuple[int, int, object]:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        found, status, usage = os.wait4(pid, os.WNOHANG if deadline else 0)
        if found:
            return found, status, usage
        if deadline and time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} still running after {timeout:g} s")
        time.sleep(0.02)


@dataclass(frozen=True)
class Capped(Timed):
    """A child that may have been cut (killed) at its time cap."""
    cut: bool = False


def capped(args: list[str], cwd: Path, cap: float, sample: Callable[[], None], every: float = 0.5) -> Capped:
    """Run `args`, calling `sample()` every `every` seconds; kill it after `cap` seconds."""
    out = cwd / ".out"
    with open(out, "wb") as o:
        t0 = time.perf_counter()
        process = subprocess.Popen(args, cwd=cwd, stdout=o, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=CHILD_ENV)
        cut = False
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 >= cap:
                process.kill()
                _pid, status, usage = os.wait4(process.pid, 0)
                cut = True
                break
            time.sleep(every)
            sample()
        seconds = time.perf_counter() - t0
    process.returncode = os.waitstatus_to_exitcode(status)
    return Capped(seconds, usage.ru_utime + usage.ru_stime, process.returncode,
                  out.read_text(errors="replace"), "", cut)


def gateway(config: Path, *args: str, timeout: float | None = None) -> Timed:
    """`gateway --config CONFIG ARGS…`, raising when it fails."""
    result = timed([GATEWAY, "--config", str(config), *args], cwd=config.parent, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"gateway {' '.join(args)} exited {result.returncode}: "
                           f"{(result.stderr or result.stdout).strip()[-500:]}")
    return result


@contextmanager
def running(name: str, args: list[str], port: int, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A server child, ready on `port` inside the block, stopped with SIGTERM after it; its
    output goes to `cwd/NAME.out`."""
    with open(cwd / f"{name}.out", "ab") as log:
        process = subprocess.Popen(args, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=CHILD_ENV)
        try:
            wait_for_port(port, process)
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve(config: Path, port: int) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """`gateway serve` on `config` (whose door listens on `port`)."""
    return running("serve", [GATEWAY, "--config", str(config), "serve"], port, config.parent)


def relay(folder: Path, port: int, log: Path) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """The relay stand-in (bench/relay.py) on `port`, writing what it receives to `log`."""
    return running("relay", [PYTHON, "-m", "bench.relay", str(port), str(log)], port, folder)


def memory(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak so far) of a process, in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out
