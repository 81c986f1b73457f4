"""A config update through Envoy keeps the counters while the vm_id stays the
same: the listener is served from a file and replaced (LDS), as a control
plane would replace it."""

import json
import os
import socket
import tempfile
import time

import harness
from conftest import request
from quota_configs import CHAT, chat, one_class


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FileListener:
    """Envoy with its listener in a watched file; replace() swaps the filter config."""

    def __init__(self, upstream, directory):
        self.upstream = upstream
        self.directory = directory
        self.path = os.path.join(directory, "lds.json")
        self.port = free_port()
        self.version = 0
        self.write(one_class(hard=3), vm_id="quota")
        bootstrap = harness.render_bootstrap(upstream_port=upstream.port, filter_config={})
        bootstrap["static_resources"]["listeners"] = []
        bootstrap["node"] = {"id": "quota-test", "cluster": "quota-test"}
        bootstrap["dynamic_resources"] = {"lds_config": {
            "resource_api_version": "V3",
            "path_config_source": {"path": self.path, "watched_directory": {"path": directory}},
        }}
        self.envoy = harness.start_bootstrap(bootstrap)

    def write(self, config, vm_id):
        bootstrap = harness.render_bootstrap(upstream_port=self.upstream.port, filter_config=config,
                                             vm_id=vm_id, listener_port=self.port)
        listener = bootstrap["static_resources"]["listeners"][0]
        listener["@type"] = "type.googleapis.com/envoy.config.listener.v3.Listener"
        self.version += 1
        staging = self.path + ".new"
        with open(staging, "w") as f:
            json.dump({"version_info": str(self.version), "resources": [listener]}, f)
        os.rename(staging, self.path)  # atomic: Envoy sees whole files only

    def replace(self, config, vm_id="quota"):
        self.write(config, vm_id)
        # Done once the new listener has warmed (its VM loaded) and serves:
        # the active listener carries the plugin config and vm_id just written.
        deadline = time.monotonic() + 15
        while not self.serves(config, vm_id):
            assert time.monotonic() < deadline, "Envoy did not take the new listener"
            time.sleep(0.05)

    def serves(self, config, vm_id):
        dump = json.loads(self.envoy.admin_get("/config_dump?resource=dynamic_listeners"))
        for entry in dump.get("configs", []):
            if "warming_state" in entry or "active_state" not in entry:
                continue
            active = json.dumps(entry["active_state"]["listener"])
            return json.dumps(json.dumps(config)) in active and json.dumps(vm_id) in active
        return False


def send(port, user="rio"):
    class Target:
        pass
    target = Target()
    target.port = port
    return request(target, "POST", CHAT, headers={"x-user-id": user}, json=chat())


def test_a_new_filter_config_keeps_the_counters_of_its_vm_id(upstream):
    with tempfile.TemporaryDirectory() as directory:
        served = FileListener(upstream, directory)
        try:
            assert [send(served.port).headers["x-quota-used"] for _ in range(2)] == ["1", "2"]
            served.replace(one_class(hard=5))
            resp = send(served.port)
            assert (resp.headers["x-quota-used"], resp.headers["x-quota-limit"]) == ("3", "5")
            # Another vm_id is another set of counters.
            served.replace(one_class(hard=5), vm_id="quota-v2")
            assert send(served.port).headers["x-quota-used"] == "1"
        finally:
            served.envoy.stop()
