"""Running respkv on Kubernetes: a StatefulSet's manifests and its pods' entrypoint.

Theory of operation
-------------------
A StatefulSet named ``NAME`` gives its pods stable names (``NAME-0``, ``NAME-1``,
...), stable DNS names through a headless Service
(``NAME-i.NAME-nodes.NAMESPACE.svc.cluster.local``) and one volume each, kept across
restarts and reschedules: the pod's data directory, with its node id, membership
file and commit log.  So a pod is a node with a stable identity, as a local
cluster's ``node-i`` is.  :func:`manifests` renders the objects (JSON, which
``kubectl apply -f`` reads as it reads YAML); the container runs
``respkv kube run``, which execs :func:`server_argv`:

* the node binds every address and announces the pod IP (``POD_IP``, from the
  downward API); the cluster secret comes from a Kubernetes Secret mounted as a
  file; the client password from the Secret's ``password`` key, in
  ``RESPKV_PASSWORD``, which ``kube run`` hands the node in a private file
  (without one, protected mode is off: pods are reached from other hosts);
* it joins the other pods by DNS name (:func:`join_seeds`): a pod of ordinal i > 0
  joins the pods below it (the StatefulSet starts them in order); pod 0 joins the
  others only when it has been a member before (a membership file in its
  directory: after a restart their IPs may have changed) or when another pod
  exists (pod 1's name resolves: its volume was lost), so the first pod of a new
  set forms the cluster alone;
* the readiness probe (``respkv kube ready``) passes once the node reports
  ``cluster_state:ok`` and coordinates slots, that is once it has joined.

Scaling: more replicas start more pods, which join (their share of the keys moves
to them).  Fewer replicas terminate the highest ordinals; each runs its preStop
hook, ``respkv kube stop``, which asks the API server for the StatefulSet's
``spec.replicas`` (:func:`leaving`): a pod whose ordinal is at or above it is
going away for good, so it sends itself ``CLUSTER LEAVE``, waits until it has
handed every key over, has another member ``CLUSTER FORGET`` it, and writes a
``left`` marker into its directory; any other termination (a rolling update, an
eviction) just stops the node, which comes back on its volume.  A pod started on a
directory with the marker (scaled up again onto the kept volume) wipes it first
and joins as a new node.  ``terminationGracePeriodSeconds`` bounds the hand-off.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping

from ..cluster.identity import write_line_atomically
from .client import ReplyError, command, parse_cluster_nodes, parse_info

#: The marker ``respkv kube stop`` leaves in a data directory whose node left for good.
LEFT_MARKER = "left"
DATA_DIR = "/data"
#: Where ``respkv kube run`` writes ``RESPKV_PASSWORD`` for the node to read
#: (``--requirepass-file``), readable by the container's user only: a command line
#: is visible to every process of the pod.
PASSWORD_FILE = f"{DATA_DIR}/requirepass"
SECRET_DIR = "/etc/respkv"
CLIENT_PORT = 6379
BUS_PORT = CLIENT_PORT + 10000
MEMBERSHIP_FILE = "nodes.conf"


def ordinal(pod_name: str) -> int:
    """The ordinal of a StatefulSet pod (``respkv-2`` -> 2)."""
    base, dash, number = pod_name.rpartition("-")
    if not dash or not base or not number.isdigit():
        raise ValueError(f"{pod_name!r} is not a StatefulSet pod name (NAME-ORDINAL)")
    return int(number)


def pod_host(name: str, index: int, namespace: str) -> str:
    """The stable DNS name of pod ``index`` of StatefulSet ``name``."""
    return f"{name}-{index}.{name}-nodes.{namespace}.svc.cluster.local"


def join_seeds(name: str, index: int, replicas: int, namespace: str, *, has_membership: bool,
               resolves: Callable[[str], bool]) -> list[str]:
    """The ``--join`` seeds of pod ``index`` (see the module doc): the pods below
    it first, then the others of the set."""
    lower = [pod_host(name, i, namespace) for i in range(index)]
    higher = [pod_host(name, i, namespace) for i in range(index + 1, max(replicas, index + 1))]
    if index == 0 and not has_membership and not (higher and resolves(higher[0])):
        return []  # the first pod of a new set forms the cluster
    return [f"{host}:{CLIENT_PORT}" for host in lower + higher]


def server_argv(env: Mapping[str, str], *, has_membership: bool, resolves: Callable[[str], bool]) -> list[str]:
    """The ``respkv server`` command line of this pod, from its environment
    (``POD_NAME``, ``POD_IP``, ``POD_NAMESPACE``, ``RESPKV_REPLICAS``, optional
    ``RESPKV_PASSWORD`` and ``RESPKV_RF``)."""
    pod, ip = env["POD_NAME"], env["POD_IP"]
    namespace = env.get("POD_NAMESPACE", "default")
    name = pod.rpartition("-")[0]
    index = ordinal(pod)
    replicas = int(env.get("RESPKV_REPLICAS", "3"))
    argv = ["respkv", "server", "--cluster", "--bind", "0.0.0.0", "--port", str(CLIENT_PORT),
            "--dir", DATA_DIR, "--cluster-announce-ip", ip,
            "--cluster-secret-file", f"{SECRET_DIR}/cluster-secret"]
    if env.get("RESPKV_RF"):
        argv += ["--rf", env["RESPKV_RF"]]
    for seed in join_seeds(name, index, replicas, namespace, has_membership=has_membership, resolves=resolves):
        argv += ["--join", seed]
    password = env.get("RESPKV_PASSWORD")
    argv += ["--requirepass-file", PASSWORD_FILE] if password else ["--protected-mode", "no"]
    return argv


def leaving(index: int, desired_replicas: int) -> bool:
    """Whether a terminating pod goes away for good: the StatefulSet no longer
    counts its ordinal."""
    return index >= desired_replicas


def ready(cluster_info: Mapping[str, str], coordinated_slots: int) -> bool:
    """The readiness probe's verdict from ``CLUSTER INFO`` and the slots the node
    coordinates (none while it joins at weight 0, or after it left)."""
    return cluster_info.get("cluster_state") == "ok" and coordinated_slots > 0


def clear_left_directory(directory: str) -> bool:
    """Empty ``directory`` if its node left the cluster for good (the marker is
    there): it starts as a new node.  True if it was cleared."""
    if not os.path.exists(os.path.join(directory, LEFT_MARKER)):
        return False
    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    return True


def manifests(name: str = "respkv", *, replicas: int = 3, image: str = "respkv:latest",
              namespace: str = "default", storage: str = "10Gi", rf: int = 3,
              grace_seconds: int = 3600) -> dict:
    """The Kubernetes objects of a respkv StatefulSet, as one ``List``."""
    labels = {"app.kubernetes.io/name": "respkv", "app.kubernetes.io/instance": name}
    meta = lambda object_name: {"name": object_name, "namespace": namespace, "labels": labels}  # noqa: E731
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "RESPKV_REPLICAS", "value": str(replicas)},
        {"name": "RESPKV_RF", "value": str(rf)},
        {"name": "RESPKV_PASSWORD", "valueFrom": {"secretKeyRef": {"name": f"{name}-secret", "key": "password",
                                                                    "optional": True}}},
    ]
    container = {
        "name": "respkv",
        "image": image,
        "args": ["kube", "run"],
        "env": env,
        "ports": [{"name": "client", "containerPort": CLIENT_PORT}, {"name": "bus", "containerPort": BUS_PORT}],
        "readinessProbe": {"exec": {"command": ["respkv", "kube", "ready"]}, "periodSeconds": 5,
                           "timeoutSeconds": 4},
        "livenessProbe": {"tcpSocket": {"port": CLIENT_PORT}, "periodSeconds": 10, "failureThreshold": 6},
        "lifecycle": {"preStop": {"exec": {"command": ["respkv", "kube", "stop"]}}},
        "volumeMounts": [{"name": "data", "mountPath": DATA_DIR},
                         {"name": "secret", "mountPath": SECRET_DIR, "readOnly": True}],
    }
    statefulset = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta(name),
        "spec": {
            "serviceName": f"{name}-nodes",
            "replicas": replicas,
            "podManagementPolicy": "OrderedReady",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": name,
                    "terminationGracePeriodSeconds": grace_seconds,
                    "containers": [container],
                    "volumes": [{"name": "secret", "secret": {"secretName": f"{name}-secret",
                                                             "items": [{"key": "cluster-secret",
                                                                        "path": "cluster-secret"}]}}],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}},
            }],
        },
    }
    items = [
        {"apiVersion": "v1", "kind": "Service", "metadata": meta(f"{name}-nodes"),
         "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": labels,
                  "ports": [{"name": "client", "port": CLIENT_PORT}, {"name": "bus", "port": BUS_PORT}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta(name),
         "spec": {"selector": labels, "ports": [{"name": "client", "port": CLIENT_PORT}]}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(name),
         "rules": [{"apiGroups": ["apps"], "resources": ["statefulsets"], "resourceNames": [name],
                    "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(name),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
        statefulset,
    ]
    return {"apiVersion": "v1", "kind": "List", "items": items}


def render(objects: dict) -> str:
    """``objects`` as text ``kubectl apply -f`` reads (JSON is YAML)."""
    return json.dumps(objects, indent=2) + "\n"


# -- the pod's side (I/O) ---------------------------------------------------------------

_SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def run(env: Mapping[str, str] = os.environ) -> None:
    """``respkv kube run``: clear a directory whose node left, then exec the node."""
    if clear_left_directory(DATA_DIR):
        print(f"respkv kube: {DATA_DIR} held a node that left the cluster; starting as a new node", flush=True)
    argv = server_argv(env, has_membership=os.path.exists(os.path.join(DATA_DIR, MEMBERSHIP_FILE)),
                       resolves=_resolves)
    if env.get("RESPKV_PASSWORD"):
        write_line_atomically(PASSWORD_FILE, env["RESPKV_PASSWORD"])
    os.execv(sys.executable, [sys.executable, "-m", "respkv", *argv[1:]])


def _resolves(host: str) -> bool:
    try:
        return bool(socket.getaddrinfo(host, CLIENT_PORT))
    except OSError:
        return False


def probe_ready(env: Mapping[str, str] = os.environ) -> bool:
    """``respkv kube ready``: the readiness probe (see :func:`ready`)."""
    password = env.get("RESPKV_PASSWORD") or None
    try:
        info = parse_info(command("127.0.0.1", CLIENT_PORT, "CLUSTER", "INFO", password=password))
        lines = parse_cluster_nodes(command("127.0.0.1", CLIENT_PORT, "CLUSTER", "NODES", password=password))
    except (OSError, ReplyError, ValueError):
        return False
    mine = next((line.slots for line in lines if "myself" in line.flags), 0)
    return ready(info, mine)


def desired_replicas(name: str, namespace: str) -> int | None:
    """``spec.replicas`` of StatefulSet ``name``, from the API server with the pod's
    service account; None if it cannot be read."""
    try:
        with open(f"{_SERVICE_ACCOUNT}/token") as f:
            token = f.read().strip()
        context = ssl.create_default_context(cafile=f"{_SERVICE_ACCOUNT}/ca.crt")
        request = urllib.request.Request(
            f"https://kubernetes.default.svc/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}",
            headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            return int(json.load(answer)["spec"]["replicas"])
    except (OSError, ValueError, KeyError):
        return None


def stop(env: Mapping[str, str] = os.environ, log: Callable[[str], None] = print) -> bool:
    """``respkv kube stop`` (the preStop hook): decommission this node if the
    StatefulSet no longer counts it; True if it left."""
    pod, namespace = env["POD_NAME"], env.get("POD_NAMESPACE", "default")
    name, index = pod.rpartition("-")[0], ordinal(pod)
    desired = desired_replicas(name, namespace)
    if desired is None or not leaving(index, desired):
        log(f"respkv kube: {pod} stops and will come back (replicas {desired})")
        return False
    password = env.get("RESPKV_PASSWORD") or None
    command("127.0.0.1", CLIENT_PORT, "CLUSTER", "LEAVE", timeout=30.0, password=password)
    myself = command("127.0.0.1", CLIENT_PORT, "CLUSTER", "MYID", password=password).decode()
    log(f"respkv kube: {pod} leaves the cluster: handing its keys over")
    while True:
        lines = parse_cluster_nodes(command("127.0.0.1", CLIENT_PORT, "CLUSTER", "NODES", password=password))
        for line in lines:
            if line.node_id == myself or line.failed:
                continue
            try:
                command(line.host, line.port, "CLUSTER", "FORGET", myself, timeout=10.0, password=password)
            except (OSError, ReplyError):
                continue  # still handing keys over, or that member is busy: try again
            with open(os.path.join(DATA_DIR, LEFT_MARKER), "w") as marker:
                marker.write(f"{myself} left the cluster\n")
            log(f"respkv kube: {pod} handed everything over and was forgotten")
            return True
        time.sleep(1.0)
