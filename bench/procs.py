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


def compile_gateway(root: Path = ROOT) -> None:
    """Compile the measured gateway's modules once (those of the checkout at `root`), as
    installing its wheel does: an environment that writes no bytecode
    (PYTHONDONTWRITEBYTECODE) would otherwise have each `gateway` command compile every
    module it imports again (0.1 to 0.15 s of CPU each)."""
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(root / "gateway")], check=True)


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
    """A finished child: wall seconds, CPU seconds (user + system), exit status, output,
    and whether it was cut (killed) at its time cap."""
    seconds: float
    cpu: float
    returncode: int
    stdout: str
    stderr: str
    cut: bool = False


def timed(args: list[str], cwd: Path, cap: float | None = None,
          sample: Callable[[], None] | None = None, every: float = 0.5,
          env: dict[str, str] | None = None) -> Timed:
    """Run `args` in `cwd` (in `env`, default `CHILD_ENV`) to its end, or kill it after
    `cap` seconds, calling `sample()` every `every` seconds meanwhile. Its CPU time comes
    from wait4; the wall time is read within 10 ms of its end."""
    out, err = cwd / ".out", cwd / ".err"
    with open(out, "wb") as o, open(err, "wb") as e:
        t0 = time.perf_counter()
        process = subprocess.Popen(args, cwd=cwd, stdout=o, stderr=e, stdin=subprocess.DEVNULL,
                                   env=CHILD_ENV if env is None else env)
        cut, next_sample = False, t0 + every
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            now = time.perf_counter()
            if pid:
                break
            if cap is not None and now - t0 >= cap:
                process.kill()
                _pid, status, usage = os.wait4(process.pid, 0)
                cut = True
                break
            if sample is not None and now >= next_sample:
                sample()
                next_sample += every
            time.sleep(0.01)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Timed(now - t0, usage.ru_utime + usage.ru_stime, process.returncode,
                 out.read_text(errors="replace"), err.read_text(errors="replace"), cut)


def gateway(config: Path, *args: str, env: dict[str, str] | None = None) -> Timed:
    """`gateway --config CONFIG ARGS…` (in `env`, default `CHILD_ENV`), raising when it fails."""
    result = timed([GATEWAY, "--config", str(config), *args], config.parent, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"gateway {' '.join(args)} exited {result.returncode}: "
                           f"{(result.stderr or result.stdout).strip()[-500:]}")
    return result


@contextmanager
def running(name: str, args: list[str], port: int, cwd: Path,
            env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A server child, ready on `port` inside the block, stopped with SIGTERM after it; its
    output goes to `cwd/NAME.out`. `env`: its environment (default: `CHILD_ENV`)."""
    with open(cwd / f"{name}.out", "ab") as log:
        process = subprocess.Popen(args, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=CHILD_ENV if env is None else env)
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


def serve(config: Path, port: int, env: dict[str, str] | None = None) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """`gateway serve` on `config` (whose door listens on `port`), in `env` (default `CHILD_ENV`)."""
    return running("serve", [GATEWAY, "--config", str(config), "serve"], port, config.parent, env)


def relay(folder: Path, port: int, log: Path) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """The relay stand-in (bench/relay.py) on `port`, writing what it receives to `log`."""
    return running("relay", [PYTHON, "-m", "bench.relay", str(port), str(log)], port, folder)


FIELDS = ("VmRSS", "VmHWM", "Pss")


def memory(pid: int) -> dict[str, int]:
    """VmRSS (now), VmHWM (the peak so far) and Pss (now) of a process and of its children
    (`serve` runs its pipeline and its sender in worker processes), each summed over them,
    in bytes. The peaks of several processes need not fall at the same moment: their sum is
    an upper bound of the peak of the whole; and a page the processes share (a forked
    child's pages it has not written to, a shared library) counts once in each VmRSS and
    VmHWM, but once in all in the sum of Pss (the proportional set size: each process
    counts a shared page's share)."""
    out = dict.fromkeys(FIELDS, 0)
    for values in members(pid).values():
        for key in FIELDS:
            out[key] += values[key]
    return out


def members(pid: int) -> dict[str, dict[str, int]]:
    """`memory` per process: "name pid" -> VmRSS, VmHWM and Pss in bytes."""
    out = {}
    for member in [pid, *descendants(pid)]:
        try:
            status = Path(f"/proc/{member}/status").read_text()
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        values = dict.fromkeys(FIELDS, 0)
        name = ""
        for line in (*status.splitlines(), *rollup.splitlines()):
            key, _, value = line.partition(":")
            if key == "Name":
                name = value.strip()
            elif key in values:
                values[key] = int(value.split()[0]) * 1024
        out[f"{name} {member}"] = values
    return out


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs (multiprocessing's resource tracker included)."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []
    return [c for child in children for c in (child, *descendants(child))]
