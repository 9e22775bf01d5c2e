"""The Kubernetes deployment (:mod:`respkv.launcher.kube`): the pod entrypoint's
decisions as tables, and the manifests rendered and checked for the invariants
Kubernetes itself enforces or the entrypoint relies on.  No Kubernetes here: the
API calls and ``exec`` are the thin shell around these."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from respkv.launcher import kube

NAME, NS = "respkv", "store"


def host(i: int) -> str:
    return f"respkv-{i}.respkv-nodes.store.svc.cluster.local:6379"


@pytest.mark.parametrize("pod, index", [("respkv-0", 0), ("respkv-12", 12), ("my-store-3", 3)])
def test_ordinal(pod, index):
    assert kube.ordinal(pod) == index


@pytest.mark.parametrize("pod", ["respkv", "respkv-", "-3", "respkv-x"])
def test_ordinal_rejects_names_that_are_not_statefulset_pods(pod):
    with pytest.raises(ValueError):
        kube.ordinal(pod)


@pytest.mark.parametrize("index, replicas, has_membership, others_exist, seeds", [
    (0, 3, False, False, []),  # the first pod of a new set forms the cluster
    (0, 3, True, False, [host(1), host(2)]),  # restarted: the others' IPs may have changed
    (0, 3, False, True, [host(1), host(2)]),  # its volume was lost while the others run
    (0, 1, False, True, []),  # alone in the set
    (1, 3, False, False, [host(0), host(2)]),
    (2, 3, True, False, [host(0), host(1)]),
    (4, 3, False, False, [host(0), host(1), host(2), host(3)]),  # scaled up past the manifest's count
])
def test_join_seeds(index, replicas, has_membership, others_exist, seeds):
    assert kube.join_seeds(NAME, index, replicas, NS, has_membership=has_membership,
                           resolves=lambda name: others_exist) == seeds


def test_server_argv_without_and_with_a_password():
    env = {"POD_NAME": "respkv-1", "POD_IP": "10.1.2.3", "POD_NAMESPACE": NS, "RESPKV_REPLICAS": "3",
           "RESPKV_RF": "3"}
    argv = kube.server_argv(env, has_membership=False, resolves=lambda name: False)
    assert argv == ["respkv", "server", "--cluster", "--bind", "0.0.0.0", "--port", "6379", "--dir", "/data",
                    "--cluster-announce-ip", "10.1.2.3", "--cluster-secret-file", "/etc/respkv/cluster-secret",
                    "--rf", "3", "--join", host(0), "--join", host(2), "--protected-mode", "no"]
    argv = kube.server_argv({**env, "RESPKV_PASSWORD": "s3cret"}, has_membership=False, resolves=lambda n: False)
    # the password goes in a private file kube run writes, never on the command line
    assert argv[-2:] == ["--requirepass-file", kube.PASSWORD_FILE] and "--protected-mode" not in argv
    assert not any("s3cret" in arg for arg in argv)


@pytest.mark.parametrize("index, replicas, leaves", [(2, 3, False), (3, 3, True), (4, 3, True), (0, 0, True)])
def test_a_terminating_pod_leaves_only_when_the_set_no_longer_counts_it(index, replicas, leaves):
    assert kube.leaving(index, replicas) is leaves


@pytest.mark.parametrize("state, slots, ok", [("ok", 4000, True), ("ok", 0, False), ("fail", 4000, False)])
def test_ready(state, slots, ok):
    assert kube.ready({"cluster_state": state}, slots) is ok


def test_a_directory_whose_node_left_is_cleared(tmp_path):
    (tmp_path / "node-id").write_text("x")
    assert not kube.clear_left_directory(str(tmp_path))
    assert (tmp_path / "node-id").exists()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "log").write_text("y")
    (tmp_path / kube.LEFT_MARKER).write_text("gone")
    assert kube.clear_left_directory(str(tmp_path))
    assert os.listdir(tmp_path) == []


# -- the manifests ----------------------------------------------------------------------


def by_kind(objects):
    return {item["kind"]: item for item in objects["items"] if item["kind"] != "Service"}


def test_manifests_hang_together():
    objects = kube.manifests("store", replicas=5, image="example/respkv:1", namespace=NS, rf=2)
    assert objects["kind"] == "List"
    services = {item["metadata"]["name"]: item for item in objects["items"] if item["kind"] == "Service"}
    kinds = by_kind(objects)
    sts = kinds["StatefulSet"]
    spec = sts["spec"]
    # The headless Service gives the pods the DNS names the entrypoint joins by.
    headless = services[spec["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert spec["serviceName"] == "store-nodes"
    assert kube.pod_host("store", 1, NS) == f"store-1.{spec['serviceName']}.{NS}.svc.cluster.local"
    labels = spec["selector"]["matchLabels"]
    assert spec["template"]["metadata"]["labels"] == labels
    assert all(service["spec"]["selector"] == labels for service in services.values())
    assert spec["replicas"] == 5
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "example/respkv:1" and container["args"] == ["kube", "run"]
    env = {item["name"]: item for item in container["env"]}
    assert env["RESPKV_REPLICAS"]["value"] == "5" and env["RESPKV_RF"]["value"] == "2"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    # Volumes: the data directory from the claim template, the secret where the node reads it.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"data": kube.DATA_DIR, "secret": kube.SECRET_DIR}
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    secret = pod["volumes"][0]["secret"]
    assert secret["items"] == [{"key": "cluster-secret", "path": "cluster-secret"}]
    # Probes and the preStop hook call the entrypoint's subcommands.
    assert container["readinessProbe"]["exec"]["command"] == ["respkv", "kube", "ready"]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["respkv", "kube", "stop"]
    assert pod["terminationGracePeriodSeconds"] >= 600  # time to hand keys over
    ports = {p["containerPort"] for p in container["ports"]}
    assert ports == {kube.CLIENT_PORT, kube.BUS_PORT}
    # The preStop hook may read this StatefulSet, nothing else.
    assert pod["serviceAccountName"] == kinds["ServiceAccount"]["metadata"]["name"] == "store"
    rule = kinds["Role"]["rules"][0]
    assert rule == {"apiGroups": ["apps"], "resources": ["statefulsets"], "resourceNames": ["store"], "verbs": ["get"]}
    assert kinds["RoleBinding"]["roleRef"]["name"] == "store"
    assert all(item["metadata"].get("namespace") == NS for item in objects["items"])


def test_the_shipped_manifest_is_the_rendering_of_the_defaults():
    shipped = os.path.join(os.path.dirname(__file__), "..", "tools", "deploy", "respkv.yaml")
    with open(shipped) as f:
        text = f.read()
    assert text == kube.render(kube.manifests()), "regenerate: respkv kube manifests > tools/deploy/respkv.yaml"
    json.loads(text)


def test_the_manifests_command_prints_them():
    out = subprocess.run([sys.executable, "-m", "respkv", "kube", "manifests", "--replicas", "4"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == kube.manifests(replicas=4)
