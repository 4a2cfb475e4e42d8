"""Real Flower processes for the deployment tests: certificates, SuperLink, SuperNodes.

Every process is started with its own ports and a temporary ``FLWR_HOME`` and stopped
by PID; nothing here is a mock.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """Return a TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_tls(folder: Path) -> dict[str, Path]:
    """Write a CA and a SuperLink certificate for 127.0.0.1 / localhost signed by it."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = (x509.CertificateBuilder().subject_name(_name("flwr-gan test CA"))
          .issuer_name(_name("flwr-gan test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP384R1())
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                       x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1"))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(san, critical=False).sign(ca_key, hashes.SHA256()))
    paths = {"ca": folder / "ca.crt", "cert": folder / "server.pem", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return paths


def make_node_key(folder: Path, name: str) -> tuple[Path, Path]:
    """Write a SuperNode's EC key pair in OpenSSH format (as ``ssh-keygen -t ecdsa``)."""
    key = ec.generate_private_key(ec.SECP384R1())
    private = folder / name
    public = folder / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH))
    return private, public


class Federation:
    """A SuperLink and SuperNodes on localhost, each a separate process."""

    def __init__(self, folder: Path, *, tls: dict[str, Path] | None = None,
                 node_auth: bool = False) -> None:
        self.folder = folder
        self.home = folder / "flwr-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.node_auth = node_auth
        self.port = free_port()
        self.env = dict(os.environ, FLWR_HOME=str(self.home), OMP_NUM_THREADS="1",
                        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
                        PATH=str(BIN) + os.pathsep + os.environ.get("PATH", ""))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._write_connection()

    @property
    def address(self) -> str:
        """The SuperLink's address."""
        return f"127.0.0.1:{self.port}"

    def _write_connection(self) -> None:
        lines = ['[superlink]', 'default = "test"', '', '[superlink.test]',
                 f'address = "{self.address}"']
        lines += ([f'root-certificates = "{self.tls["ca"]}"'] if self.tls
                  else ["insecure = true"])
        (self.home / "config.toml").write_text("\n".join(lines) + "\n")

    def _start(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 - closed by the OS
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_superlink(self) -> None:
        """Start ``flower-superlink`` and wait until it accepts connections."""
        cmd = [str(BIN / "flower-superlink"), "--host", "127.0.0.1", "--port", str(self.port),
               "--disable-runtime-dependency-installation"]
        if self.tls:
            cmd += ["--ssl-ca-certfile", str(self.tls["ca"]), "--ssl-certfile",
                    str(self.tls["cert"]), "--ssl-keyfile", str(self.tls["key"])]
        else:
            cmd.append("--insecure")
        if self.node_auth:
            cmd.append("--enable-supernode-auth")
        self._start("superlink", cmd)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"SuperLink did not listen on {self.address}: {self.log('superlink')}")

    def register(self, public_key: Path) -> str:
        """Register a SuperNode's public key with ``flwr supernode register``."""
        out = subprocess.run([str(BIN / "flwr"), "supernode", "register", str(public_key),
                              "test"], env=self.env, capture_output=True, text=True,
                             timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"register failed: {out.stdout[-800:]} {out.stderr[-800:]}")
        return out.stdout

    def start_supernode(self, index: int, num: int, private_key: Path | None = None) -> None:
        """Start ``flower-supernode`` for partition ``index`` of ``num``."""
        cmd = [str(BIN / "flower-supernode"), "--superlink", self.address,
               "--port", str(free_port()),
               "--node-config", f"partition-id={index} num-partitions={num}"]
        cmd += (["--root-certificates", str(self.tls["ca"])] if self.tls else ["--insecure"])
        if private_key is not None:
            cmd += ["--auth-supernode-private-key", str(private_key)]
        self._start(f"supernode-{index}", cmd)

    def run(self, app: str, run_config: str) -> subprocess.Popen[str]:
        """Start ``flwr run APP test --run-config ... --stream`` (not waited for)."""
        log = open(self.folder / "flwr-run.log", "w")  # noqa: SIM115 - closed by the OS
        proc = subprocess.Popen(
            [str(BIN / "flwr"), "run", app, "test", "--run-config", run_config, "--stream"],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, text=True,
            start_new_session=True)
        self.procs["flwr-run"] = proc  # type: ignore[assignment]
        return proc

    def kill(self, name: str) -> None:
        """SIGKILL a process (and what it started) by PID."""
        proc = self.procs[name]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def log(self, name: str) -> str:
        """The tail of a process's log."""
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        """Stop every process this federation started, and their children, by PID."""
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
        # the SuperLink's and SuperNodes' app processes run in their sessions too
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def read_records(path: Path) -> list[dict]:
    """The records of a run's metrics.jsonl (none if it does not exist yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(predicate, timeout: float, what: str, poll: float = 0.5) -> None:  # type: ignore[no-untyped-def]
    """Wait until ``predicate()`` is true, else raise naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
