"""A Redis Cluster over TLS with passwords on loopback, and the Envoy and
webdis in front of it, for the end-to-end tests (tests/test_redis_cluster.py),
`make run-cluster` and the load benchmark. Every part runs from the files in
envoy/examples/redis-cluster/, with this run's ports and paths filled in:

    quota filter --HTTP--> webdis --RESP--> Envoy's redis_proxy listener
        --TLS + AUTH--> Redis Cluster (3 masters, a replica each)

    with start_cluster() as cluster:
        node = start_quota_node(cluster, filter_config, upstream_port=upstream.port)
        ...
        cluster.kill(cluster.master_of("quota:{u:ann}drafts"))

Needs Debian's redis-server and redis-tools (7.0, built with TLS), webdis
and openssl (`make setup-redis`).
"""

import base64
import json
import secrets
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

import harness

EXAMPLES = harness.REPO_ROOT / "envoy" / "examples" / "redis-cluster"
HOST = "127.0.0.1"
# Small, so a failover takes about two seconds (see redis-node.conf).
NODE_TIMEOUT_MS = 1000
CLUSTER_TIMEOUT_S = 60.0
SLOTS = 16384


def render(name, **values):
    """envoy/examples/redis-cluster/<name> with its ${...} filled in."""
    return string.Template((EXAMPLES / name).read_text()).substitute(
        {k: str(v) for k, v in values.items()})


def _crc16(data):
    """CRC-16/XMODEM, Redis Cluster's key hash."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def keyslot(key):
    """The slot of `key`, as Redis Cluster computes it: of its hash tag
    (between the first `{` and the next `}`, when not empty), else of it all."""
    data = key.encode()
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1:end]
    return _crc16(data) % SLOTS


def _free_node_port(taken):
    """A free port for a node whose cluster bus port (the port + 10000) is
    free too, and below 65536."""
    while True:
        port = harness._free_port()
        if port + 10000 < 65536 and port not in taken and port + 10000 not in taken:
            try:
                with socket.socket() as sock:
                    sock.bind((HOST, port + 10000))
                return port
            except OSError:
                pass


def _write_secret(path, value):
    # No newline: Envoy reads the whole file as the password.
    path.write_text(value)
    path.chmod(0o600)


def make_tls(tls_dir):
    """A throwaway CA and one server certificate for 127.0.0.1/localhost,
    signed by it: ca.crt, redis.crt, redis.key in tls_dir."""
    tls_dir.mkdir(parents=True, exist_ok=True)

    def ssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tls_dir, timeout=60)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=quota test CA",
        "-keyout", "ca.key", "-out", "ca.crt")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=redis", "-keyout", "redis.key", "-out", "redis.csr")
    (tls_dir / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl("x509", "-req", "-in", "redis.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "redis.crt")
    # redis-server runs as this user and reads its key.
    (tls_dir / "redis.key").chmod(0o600)
    return tls_dir


class RedisNode:
    """One redis-server of the cluster, from redis-node.conf."""

    def __init__(self, cluster, port):
        self.port = port
        self.dir = cluster.workdir / f"node-{port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "redis.conf"
        self.conf.write_text(render(
            "redis-node.conf", bind=HOST, port=port, tls_dir=cluster.tls_dir,
            node_timeout_ms=cluster.node_timeout_ms, admin_password=cluster.admin_password,
            quota_password=cluster.quota_password, dir=self.dir))
        self.proc = None

    def start(self):
        self.proc = harness._popen(["redis-server", str(self.conf)], stdin=subprocess.DEVNULL)
        harness._wait_for_port(self.port, self.proc, f"redis-server :{self.port}")
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL: no shutdown, no last write to disk or replica."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc is not None:
            harness._terminate(self.proc)

    def __repr__(self):
        return f"RedisNode({self.port})"


class RedisCluster:
    """Six TLS nodes: three masters with a replica each. A context manager;
    use start_cluster."""

    def __init__(self, *, masters=3, replicas=1, workdir=None, node_timeout_ms=NODE_TIMEOUT_MS,
                 ports=None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="redis-cluster-"))
        self._owns_workdir = workdir is None
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls_dir = self.workdir / "tls"
        self.secrets_dir = self.workdir / "secrets"
        self.secrets_dir.mkdir(exist_ok=True)
        self.node_timeout_ms = node_timeout_ms
        self.replicas = replicas
        self.admin_password = secrets.token_hex(16)
        self.quota_password = secrets.token_hex(16)
        # Envoy logs in to the cluster as `quota` with this file's password.
        _write_secret(self.secrets_dir / "redis-password", self.quota_password)
        count = masters * (1 + replicas)
        if not ports:
            ports = []
            for _ in range(count):
                ports.append(_free_node_port({*ports, *(p + 10000 for p in ports)}))
        self.ports = ports
        self.nodes = []
        self._slots_before = {}

    def start(self):
        make_tls(self.tls_dir)
        self.nodes = [RedisNode(self, port) for port in self.ports]
        for node in self.nodes:
            node.start()
        if not self._already_created():
            self._redis_cli("--cluster", "create", *[f"{HOST}:{n.port}" for n in self.nodes],
                            "--cluster-replicas", str(self.replicas), "--cluster-yes", timeout=120)
        self.wait_ok()
        return self

    def _already_created(self):
        # `make run-cluster` keeps its nodes' files: a second start finds the cluster made.
        return self.info(self.nodes[0]).get("cluster_known_nodes", "1") != "1"

    # -- redis-cli --------------------------------------------------------

    def _tls_args(self):
        return ["--tls", "--cacert", str(self.tls_dir / "ca.crt"), "-a", self.admin_password, "--no-auth-warning"]

    def _redis_cli(self, *args, timeout=10):
        return subprocess.run(["redis-cli", *self._tls_args(), *args], check=True, capture_output=True,
                              text=True, timeout=timeout).stdout

    def cli(self, node, *args, user=None, password=None):
        """redis-cli against `node` (a RedisNode or a port) over TLS, as the
        operator (or `user`/`password`); its output as text."""
        port = node.port if isinstance(node, RedisNode) else node
        auth = [] if user is None else ["--user", user, "--pass", password]
        return self._redis_cli("-h", HOST, "-p", str(port), *auth, *args)

    def _any_live(self):
        for node in self.nodes:
            if node.alive():
                return node
        raise RuntimeError("no live node")

    # -- topology ---------------------------------------------------------

    def cluster_nodes(self, via=None):
        """CLUSTER NODES from `via` (default: a live node), as dicts:
        id, port, flags (a set), master (the id or None), slots (ranges)."""
        text = self.cli(via or self._any_live(), "CLUSTER", "NODES")
        out = []
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 8:
                continue
            address = fields[1].split("@")[0]
            out.append({
                "id": fields[0],
                "port": int(address.rsplit(":", 1)[1]),
                "flags": set(fields[2].split(",")),
                "master": None if fields[3] == "-" else fields[3],
                "slots": [tuple(int(x) for x in s.split("-")) if "-" in s else (int(s), int(s))
                          for s in fields[8:] if not s.startswith("[")],
            })
        return out

    def node(self, port):
        return next(n for n in self.nodes if n.port == port)

    def masters(self, via=None):
        """The live masters (RedisNode), by what the cluster says."""
        return [self.node(n["port"]) for n in self.cluster_nodes(via)
                if "master" in n["flags"] and not n["flags"] & {"fail", "fail?"} and n["slots"]]

    def replica_of(self, master, via=None):
        nodes = self.cluster_nodes(via)
        master_id = next(n["id"] for n in nodes if n["port"] == master.port)
        return [self.node(n["port"]) for n in nodes if n["master"] == master_id]

    def keyslot(self, key):
        """CLUSTER KEYSLOT, asked of a live node."""
        return int(self.cli(self._any_live(), "CLUSTER", "KEYSLOT", key).strip())

    def master_of(self, key, via=None):
        """The master (RedisNode) that serves `key`'s slot now."""
        slot = keyslot(key)
        for n in self.cluster_nodes(via):
            if "master" in n["flags"] and any(lo <= slot <= hi for lo, hi in n["slots"]):
                return self.node(n["port"])
        raise RuntimeError(f"no master serves slot {slot} of {key!r}")

    def info(self, node):
        text = self.cli(node, "CLUSTER", "INFO")
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def state_ok(self, via=None):
        """cluster_state ok, all 16384 slots served, every master with its
        replicas, as every live node sees it, and every replica in sync."""
        try:
            for node in [via] if via else [n for n in self.nodes if n.alive()]:
                info = self.info(node)
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                    return False
                nodes = [n for n in self.cluster_nodes(node) if not n["flags"] & {"fail", "fail?"}]
                masters = [n for n in nodes if "master" in n["flags"] and n["slots"]]
                for m in masters:
                    if sum(1 for n in nodes if n["master"] == m["id"]) < self.replicas:
                        return False
                if sum(hi - lo + 1 for m in masters for lo, hi in m["slots"]) != SLOTS:
                    return False
            # Every replica has synced with its master: a replica that never
            # did (or lost its master too long ago) refuses to take over.
            for node in self.nodes:
                if node.alive():
                    replication = self.cli(node, "INFO", "replication")
                    if "role:slave" in replication and "master_link_status:up" not in replication:
                        return False
            return True
        except subprocess.SubprocessError:
            return False

    def wait_ok(self, timeout=CLUSTER_TIMEOUT_S, replicas=True):
        """Wait until state_ok (with replicas=False: only cluster_state ok
        and every slot served by a live master, e.g. after a failover with
        the old master still dead)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.state_ok() if replicas else self._served():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis cluster not ok after {timeout:.0f}s:\n"
                                   + self.cli(self._any_live(), "CLUSTER", "NODES"))
            time.sleep(0.1)

    def _served(self):
        try:
            for node in [n for n in self.nodes if n.alive()]:
                info = self.info(node)
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                    return False
                live = {n.port for n in self.nodes if n.alive()}
                masters = [n for n in self.cluster_nodes(node) if "master" in n["flags"] and n["slots"]]
                if any(m["port"] not in live for m in masters):
                    return False
            return True
        except subprocess.SubprocessError:
            return False

    # -- failure ----------------------------------------------------------

    def kill(self, node):
        """SIGKILL `node`, after noting the slots it served (wait_promoted
        looks for them on another master)."""
        me = next(n for n in self.cluster_nodes() if n["port"] == node.port)
        self._slots_before[node.port] = me["slots"]
        node.kill()

    def wait_promoted(self, old_master, timeout=CLUSTER_TIMEOUT_S):
        """Wait until another node (its replica) serves every slot the killed
        `old_master` served, and every slot is served by a live master;
        that node."""
        old_slots = set(self._slots_before[old_master.port])
        if not old_slots:
            raise ValueError(f"{old_master} served no slots when it was killed")
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._served():
                    for n in self.cluster_nodes():
                        if ("master" in n["flags"] and n["port"] != old_master.port
                                and old_slots <= set(n["slots"])):
                            return self.node(n["port"])
            except subprocess.SubprocessError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"no replica of {old_master} promoted after {timeout:.0f}s:\n"
                                   + self.cli(self._any_live(), "CLUSTER", "NODES"))
            time.sleep(0.1)

    def restart(self, node):
        """Start a killed node again (it rejoins, as a replica if it lost its slots)."""
        node.start()

    def stop(self):
        for node in self.nodes:
            node.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_cluster(**kwargs):
    cluster = RedisCluster(**kwargs)
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        raise


# --------------------------------------------------------------------------
# Envoy's redis_proxy and webdis
# --------------------------------------------------------------------------

class Front:
    """What one Envoy needs in front of the cluster: the ports and secrets
    of its redis_proxy listener and its webdis, the Envoy listeners and
    clusters (envoy-redis.yaml) and the filter's `counters`."""

    def __init__(self, cluster, workdir=None, redis_proxy_port=0, webdis_port=0):
        self.cluster = cluster
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="quota-front-"))
        self._owns_workdir = workdir is None
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis_proxy_port = redis_proxy_port or harness._free_port()
        self.webdis_port = webdis_port or harness._free_port()
        self.proxy_password = secrets.token_hex(16)
        self.webdis_secret = secrets.token_hex(16)
        self.secrets_dir = self.workdir / "secrets"
        self.secrets_dir.mkdir(exist_ok=True)
        _write_secret(self.secrets_dir / "proxy-password", self.proxy_password)
        shutil.copy(cluster.secrets_dir / "redis-password", self.secrets_dir / "redis-password")
        seeds = cluster.ports[:3]
        self.resources = yaml.safe_load(render(
            "envoy-redis.yaml", redis_proxy_port=self.redis_proxy_port, webdis_port=self.webdis_port,
            secrets_dir=self.secrets_dir, tls_dir=cluster.tls_dir, redis_host=HOST,
            seed_port_1=seeds[0], seed_port_2=seeds[1 % len(seeds)], seed_port_3=seeds[2 % len(seeds)]))
        self.webdis = None

    @property
    def listeners(self):
        return self.resources["listeners"]

    @property
    def clusters(self):
        return self.resources["clusters"]

    def authorization(self):
        return "Basic " + base64.b64encode(f"envoy:{self.webdis_secret}".encode()).decode()

    def counters(self, on_error="fail_closed", timeout_ms=200, **redis):
        """The filter's `counters` for this front."""
        return {"store": "redis", "on_error": on_error,
                "redis": {"cluster": "webdis", "timeout_ms": timeout_ms,
                          "authorization": self.authorization(), **redis}}

    def start_webdis(self):
        """webdis from webdis.json, logging in to the redis_proxy listener."""
        conf = self.workdir / "webdis.json"
        conf.write_text(render("webdis.json", redis_proxy_port=self.redis_proxy_port,
                               proxy_password=self.proxy_password, webdis_port=self.webdis_port,
                               webdis_secret=self.webdis_secret, dir=self.workdir))
        self.webdis = harness._popen(["webdis", str(conf)], stdin=subprocess.DEVNULL)
        harness._wait_for_port(self.webdis_port, self.webdis, "webdis")
        return self

    def stop(self):
        if self.webdis is not None:
            harness._terminate(self.webdis)
            self.webdis = None
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def with_counters(filter_config, front, **counters):
    """filter_config (a dict) with its counters in the cluster through `front`."""
    config = json.loads(json.dumps(filter_config))
    config["counters"] = front.counters(**counters)
    return config


def start_quota_node(start_envoy, cluster, filter_config, *, workdir=None, counters=None, **envoy_kwargs):
    """An Envoy with the filter (filter_config's counters replaced by the
    cluster's, `counters` the keyword arguments of Front.counters) and the
    redis_proxy listener, then its webdis. start_envoy: harness.start_envoy
    or the tests' `envoy` fixture. Returns (envoy, front); stop the front
    after the Envoy."""
    front = Front(cluster, workdir=workdir)
    config = with_counters(filter_config, front, **(counters or {}))
    try:
        envoy = start_envoy(config, extra_listeners=front.listeners,
                            extra_clusters=[*envoy_kwargs.pop("extra_clusters", ()), *front.clusters],
                            **envoy_kwargs)
        front.start_webdis()
        wait_discovered(envoy)
    except BaseException:
        front.stop()
        raise
    return envoy, front


def wait_discovered(envoy, timeout=CLUSTER_TIMEOUT_S):
    """Wait until Envoy has the cluster's slot map (its masters are members
    of redis_cluster): Envoy serves before (wait_for_warm_on_init false),
    with every call failing until then."""
    name = "cluster.redis_cluster.membership_healthy"
    deadline = time.monotonic() + timeout
    while envoy.stats(filter="^" + name.replace(".", r"\.") + "$").get(name, 0) < 3:
        if time.monotonic() > deadline:
            raise RuntimeError(f"envoy has no slot map of the redis cluster after {timeout:.0f}s")
        time.sleep(0.05)
