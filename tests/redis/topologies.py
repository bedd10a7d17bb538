"""Real Redis topologies started by the tests on 127.0.0.1 and free ports (Debian's ``redis-server``):

- :class:`ClusterProcesses`: 3 masters joined with ``redis-cli --cluster create`` (16384 slots split), each
  with ``replicas`` replicas of its own when asked (cluster failover: a replica is elected when its master dies);
- :class:`SentinelSet`: a primary, one replica and 3 ``redis-server --sentinel`` processes watching them.

Both are stopped (SIGTERM, then SIGKILL) when their fixture ends; nothing touches the shared server.
"""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import redis as redis_lib

from tests.conftest import free_port
from tests.resilience.harness import wait_until

MASTER = "idpmaster"


def _answers(port: int) -> bool:
    try:
        return bool(redis_lib.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=1).ping())
    except redis_lib.RedisError:
        return False


@dataclass
class Node:
    """One redis-server process (data node or Sentinel) with its own directory."""

    directory: Path
    args: list[str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Node:
        """Start and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 (kept open for the process's life)
        self.process = subprocess.Popen(
            ["redis-server", *self.args, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.directory), "--protected-mode", "no", "--save", ""], stdout=log, stderr=log)
        wait_until(lambda: _answers(self.port), timeout=30, what=f"redis-server on {self.port}")
        return self

    def client(self) -> redis_lib.Redis:
        """A plain client of this process."""
        return redis_lib.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=2)

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as a crashed machine would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class ClusterProcesses:
    """A 3-master Redis Cluster; ``replicas=1`` gives each master a replica (cluster failover tests)."""

    directory: Path
    replicas: int = 0
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """IDP_REDIS_URL of the cluster (every node as a seed)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> ClusterProcesses:
        """Start the nodes, create the cluster, wait until every node says cluster_state:ok (and, with
        replicas, until each master has its replica connected)."""
        for i in range(3 * (1 + self.replicas)):
            self.nodes.append(Node(self.directory / f"node{i}", [
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(free_port()),  # the default bus port (+10000) may be out of range
                "--cluster-node-timeout", "2000", "--appendonly", "yes", "--appendfsync", "everysec",
                "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]).start())
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                        "--cluster-replicas", str(self.replicas), "--cluster-yes"], check=True, capture_output=True,
                       timeout=60)

        def ready() -> bool:
            if not all(n.client().cluster("INFO").get("cluster_state") == "ok" for n in self.alive()):
                return False
            return all(int(m.client().info("replication").get("connected_slaves", 0)) >= self.replicas
                       for m in self.masters())

        wait_until(ready, timeout=60, what="cluster_state:ok" + (" and replicas in sync" if self.replicas else ""))
        return self

    def alive(self) -> list[Node]:
        """The nodes whose process still runs."""
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def masters(self) -> list[Node]:
        """The live nodes that now serve slots as masters."""
        return [n for n in self.alive() if n.client().info("replication").get("role") == "master"]

    def master_of(self, key: str) -> Node | None:
        """The live master that serves ``key``'s hash slot now (None during a failover: nobody yet)."""
        slot = int(self.alive()[0].client().cluster("KEYSLOT", key))
        for node in self.masters():
            if any(int(a) <= slot <= int(b) for a, b in _own_slot_ranges(node)):
                return node
        return None

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


def _own_slot_ranges(node: Node) -> list[tuple[str, str]]:
    """The slot ranges this node serves, from its own ``CLUSTER NODES`` line (``myself``)."""
    raw = node.client().execute_command("CLUSTER", "NODES")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    for line in text.splitlines():
        fields = line.split()
        if "myself" in fields[2]:
            return [tuple(part.split("-")) if "-" in part else (part, part)  # type: ignore[misc]
                    for part in fields[8:] if not part.startswith("[")]
    return []


@dataclass
class SentinelSet:
    """A primary and its replica, watched by 3 Sentinels (quorum 2, down after 1 s)."""

    directory: Path
    primary: Node | None = None
    replica: Node | None = None
    sentinels: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """IDP_REDIS_URL of the set (every Sentinel)."""
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels) + f"/{MASTER}/0"

    def start(self) -> SentinelSet:
        """Start the primary, the replica (in sync) and the Sentinels (each agreeing on the primary)."""
        data = ["--appendonly", "yes", "--appendfsync", "everysec", "--repl-diskless-sync", "yes",
                "--repl-diskless-sync-delay", "0"]
        self.primary = Node(self.directory / "primary", data).start()
        self.replica = Node(self.directory / "replica", [*data, "--replicaof", "127.0.0.1",
                                                         str(self.primary.port)]).start()
        wait_until(lambda: self._in_sync(), timeout=60, what="replica in sync")
        for i in range(3):
            folder = self.directory / f"sentinel{i}"
            folder.mkdir(parents=True, exist_ok=True)
            conf = folder / "sentinel.conf"
            conf.write_text(f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} 2\n"
                            f"sentinel down-after-milliseconds {MASTER} 1000\n"
                            f"sentinel failover-timeout {MASTER} 5000\n"
                            f"sentinel parallel-syncs {MASTER} 1\n")
            self.sentinels.append(Node(folder, [str(conf), "--sentinel"]).start())
        wait_until(lambda: all(self._sentinel_knows(s) for s in self.sentinels), timeout=60,
                   what="sentinels see the replica and each other")
        return self

    def _in_sync(self) -> bool:
        assert self.replica is not None
        info = self.replica.client().info("replication")
        return info.get("master_link_status") == "up"

    @staticmethod
    def _sentinel_knows(sentinel: Node) -> bool:
        fields = sentinel.client().sentinel_master(MASTER)
        return int(fields["num-slaves"]) >= 1 and int(fields["num-other-sentinels"]) >= 2

    def current_primary_port(self) -> int:
        """The port the Sentinels now name as primary."""
        return int(self.sentinels[0].client().sentinel_get_master_addr_by_name(MASTER)[1])

    def stop(self) -> None:
        """Stop the Sentinels first (no failover while the data nodes go), then the data nodes."""
        for node in [*self.sentinels, self.replica, self.primary]:
            if node is not None:
                node.stop()
