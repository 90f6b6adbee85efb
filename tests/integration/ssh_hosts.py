"""Test hosts for the ssh provider's tests: network namespaces on a bridge of their own,
each running Debian's sshd with keys the test makes; headway reaches them only over SSH.
A host "dies" (every process of it killed, sshd included; unplugged too when asked) and
"reboots" (plugged back, its runtime addresses gone; headway's boot unit run as init would,
then sshd)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from headway.system import netns, procs

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SUBNET = "10.213.246.0/24"


class Hosts:
    """Machines for the test: a namespace each on a bridge of its own, sshd in each."""

    def __init__(self, root: Path, count: int):
        self.root = root
        self.bridge = f"hwsbr{os.getpid() % 10000}"
        self.subnet = netns.Subnet(ipaddress.IPv4Network(SUBNET))
        self.names = [f"hwssh{os.getpid() % 10000}-{i}" for i in range(1, count + 1)]
        self.ips = self.subnet.host_ips()[:count]
        self.sshd: dict[str, subprocess.Popen] = {}
        self.booted: dict[str, bool] = {}  # whether the host's last boot ran headway's boot unit
        self.key = root / "id_ed25519"
        for f in (self.key, root / "host_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(f)], check=True)
        (root / "authorized_keys").write_text((root / "id_ed25519.pub").read_text())
        # What an operator's known_hosts holds: every host's key (they share one here).
        host_pub = " ".join((root / "host_key.pub").read_text().split()[:2])
        self.known_hosts = root / "known_hosts"
        self.known_hosts.write_text("".join(f"{ip} {host_pub}\n" for ip in self.subnet.host_ips()[:count]))
        os.chmod(root / "authorized_keys", 0o600)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir

    def __enter__(self) -> Hosts:
        os.environ["HEADWAY_BRIDGE"] = self.bridge  # netns helpers read it; restored in __exit__
        netns.ensure_bridge(self.subnet)
        for name, ip in zip(self.names, self.ips, strict=True):
            netns.create(name, ip, self.subnet)
            self.boot(name)
        return self

    def boot(self, name: str) -> None:
        """Boot the host (a "reboot" after its processes all died): plugged in, with only its
        own address (a reboot drops an address keepalived had added); then what its init
        would start: headway's boot unit if it has one (run as systemd would, with a clean
        environment, before SSH), and sshd."""
        ip = self.ips[self.names.index(name)]
        if name in self.sshd:
            subprocess.run(["ip", "-n", name, "addr", "flush", "dev", "eth0"], check=True)
            subprocess.run(
                ["ip", "-n", name, "addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", "eth0"], check=True
            )
            netns.set_link(name, True)
        self.booted[name] = self.run_boot_unit(name)
        conf = self.root / f"sshd-{name}.conf"
        # The hosts share this machine's files: a HOME of their own keeps the machine's shell
        # start-up (pyenv's rehash and its lock) out of every command, as on a clean host. A
        # host crashed mid-rehash would otherwise leave that lock for every other "host".
        home = self.root / "home"
        home.mkdir(exist_ok=True)
        conf.write_text(
            f"SetEnv HOME={home}\n"
            f"ListenAddress {ip}\nPort 22\nHostKey {self.root / 'host_key'}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "PidFile none\nPrintMotd no\nSubsystem sftp internal-sftp\n"
        )
        log = open(self.root / f"sshd-{name}.log", "ab")  # noqa: SIM115 - kept by the child
        self.sshd[name] = subprocess.Popen(
            ["ip", "netns", "exec", name, SSHD, "-D", "-e", "-f", str(conf)], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = subprocess.run(["ip", "netns", "exec", name, "ss", "-ltn"], capture_output=True, text=True)
            if f"{ip}:22" in r.stdout:
                return
            time.sleep(0.1)
        raise AssertionError(f"sshd of {name} did not listen")

    def boot_unit(self, name: str) -> Path:
        return self.root / "units" / f"headway-boot-{self.ips[self.names.index(name)].replace('.', '-')}.service"

    def run_boot_unit(self, name: str) -> bool:
        """Run the host's boot unit's command in the host, as systemd would; False when the
        host has none (not written yet)."""
        unit = self.boot_unit(name)
        if not unit.exists():
            return False
        (command,) = [ln.split("=", 1)[1] for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")]
        clean = ["env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        subprocess.run(["ip", "netns", "exec", name, *clean, *shlex.split(command)], check=True, timeout=60)
        return True

    def crash(self, name: str, unplug: bool = False) -> int:
        """The host dies: SIGKILL every process in it, sshd included. ``unplug``: its link
        goes down too, as a dead machine's does (it stops answering even ARP for the
        addresses it held)."""
        if unplug:
            netns.set_link(name, False)
        pids = netns.pids(name)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.sshd[name].wait(timeout=10)
        return len(pids)

    def holds(self, name: str, address: str) -> bool:
        out = subprocess.run(
            ["ip", "-n", name, "-o", "-4", "addr", "show", "dev", "eth0"], capture_output=True, text=True
        ).stdout
        return f" {address}/" in out

    def __exit__(self, *exc: object) -> None:
        for name in self.names:
            procs.kill_pids(netns.pids(name))
            netns.delete(name)
        for p in self.sshd.values():
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait(timeout=10)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        os.environ.pop("HEADWAY_BRIDGE", None)

    def move_hook(self, vip: str) -> Path:
        """The operator's hook for floating mode, as keepalived or a cloud API would do it:
        the address leaves every host, lands on the chosen one, and neighbours forget the
        old owner (what a gratuitous ARP does)."""
        hook = self.root / "move-head"
        by_ip = dict(zip(self.ips, self.names, strict=True))
        lines = ["#!/bin/sh", "set -e", f'[ "$1" = {vip} ] || exit 2', 'case "$2" in']
        lines += [f"  {ip}) target={ns} ;;" for ip, ns in by_ip.items()]
        lines += ["  *) exit 3 ;;", "esac"]
        for ns in self.names:
            lines.append(f"ip -n {ns} addr del {vip}/{self.subnet.prefixlen} dev eth0 2>/dev/null || true")
        lines.append(f'ip -n "$target" addr add {vip}/{self.subnet.prefixlen} dev eth0')
        for ns in self.names:
            lines.append(f"ip -n {ns} neigh flush all 2>/dev/null || true")
        lines.append(f"ip neigh flush dev {self.bridge} 2>/dev/null || true")
        hook.write_text("\n".join(lines) + "\n")
        hook.chmod(0o755)
        return hook

    def config(
        self, venv: str, roles: list[str], head_address: dict | None = None, ingress: dict | None = None
    ) -> dict:
        return {
            "ssh": {
                "venv": venv,
                "known_hosts": str(self.known_hosts),
                "store_address": self.subnet.bridge_ip,
                "head_address": head_address or {"mode": "same_host"},
                "hosts": [
                    {"address": ip, "user": "root", "key": str(self.key), "role": role}
                    for ip, role in zip(self.ips, roles, strict=True)
                ],
                **({"ingress": ingress} if ingress else {}),
                # The hosts' boot entries and units: the test's own folders, not this machine's.
                "boot_dir": str(self.root / "boot"),
                "units_dir": str(self.root / "units"),
            }
        }
