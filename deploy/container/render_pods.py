#!/usr/bin/python3
"""Renders deploy/k8s into what podman 4.3's `podman kube play` runs: one Pod per workload, built from
exactly the workload's pod template, with the ConfigMap beside it. What a Kubernetes control plane would
have done is done here, and only that:

  - a Deployment or DaemonSet becomes a Pod of its template (podman 4.3 has no DaemonSet);
  - $(VAR) in command and args is expanded from the container's env and envFrom, as the kubelet does
    (podman 4.3 passes it through literally);
  - env from fieldRef status.podIP / spec.nodeName gets the pod's static IP / this host's name;
  - the Service's job: FREEKV_COORDINATOR names the coordinator pod's IP, and the Service's ports are
    published on the host (hostPort = the Service port + PORT_OFFSET);
  - a Secret volume becomes a hostPath of a directory holding its key as a file (`token`), made
    root:10001 mode 0440 as the kubelet mounts a Secret with fsGroup (podman 4.3 mounts secrets
    world-readable and undecoded, which freekv refuses for a token);
  - the models hostPath points at MODELS_DIR.

  render_pods.py K8S_DIR OUT_DIR --ips coordinator=10.89.77.10,freekv-node=10.89.77.20
                 --secret-dir D --models-dir D [--port-offset 10000]

Writes OUT_DIR/<workload>.yaml (ConfigMap + Pod) and prints one line per pod: name ip file.
"""
import argparse
import copy
import os
import re
import socket
import sys

import yaml

parser = argparse.ArgumentParser()
parser.add_argument("k8s_dir")
parser.add_argument("out_dir")
parser.add_argument("--ips", required=True, help="workload=ip,...")
parser.add_argument("--secret-dir", required=True)
parser.add_argument("--models-dir", required=True)
parser.add_argument("--port-offset", type=int, default=10000)
args = parser.parse_args()
ips = dict(item.split("=", 1) for item in args.ips.split(","))

with open(os.path.join(args.k8s_dir, "kustomization.yaml")) as f:
    resources = yaml.safe_load(f)["resources"]
docs = []
for name in resources:
    with open(os.path.join(args.k8s_dir, name)) as f:
        docs += [d for d in yaml.safe_load_all(f) if d]

config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
services = [d for d in docs if d["kind"] == "Service"]
workloads = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet")]
if not workloads:
    sys.exit("render_pods: no Deployment or DaemonSet in the manifests")

# The Service's job: the coordinator's address is its pod's IP.
coordinator_ip = ips.get("freekv-coordinator")
for cm in config_maps.values():
    cm = cm.setdefault("data", {})
    if "FREEKV_COORDINATOR" in cm and coordinator_ip:
        cm["FREEKV_COORDINATOR"] = f"{coordinator_ip}:50051"


def expand(text, env):
    """$(VAR) from env; $$(VAR) stays $(VAR); an unknown $(VAR) stays as it is, as the kubelet leaves it."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


os.makedirs(args.out_dir, exist_ok=True)
for w in workloads:
    name = w["metadata"]["name"]
    if name not in ips:
        sys.exit(f"render_pods: no IP given for {name} (--ips {name}=...)")
    template = copy.deepcopy(w["spec"]["template"])
    spec = template["spec"]
    for c in spec["containers"]:
        env = {}
        for source in c.get("envFrom", []):
            ref = source.get("configMapRef", {}).get("name")
            if ref not in config_maps:
                sys.exit(f"render_pods: {name}/{c['name']}: ConfigMap {ref} is not in the manifests")
            env.update({k: str(v) for k, v in config_maps[ref].get("data", {}).items()})
        for e in c.get("env", []):
            field = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if field == "status.podIP":
                e.pop("valueFrom")
                e["value"] = ips[name]
            elif field == "spec.nodeName":
                e.pop("valueFrom")
                e["value"] = socket.gethostname()
            elif field is not None:
                sys.exit(f"render_pods: {name}/{c['name']}: fieldRef {field} is not rendered")
            if "value" in e:
                env[e["name"]] = expand(str(e["value"]), env)
        c["command"] = [expand(a, env) for a in c.get("command", [])]
        c["args"] = [expand(a, env) for a in c.get("args", [])]
        for port in c.get("ports", []):
            for svc in services:
                if svc["spec"].get("selector", {}).items() <= template["metadata"].get("labels", {}).items():
                    for sp in svc["spec"]["ports"]:
                        if sp.get("targetPort") in (port.get("name"), port["containerPort"]):
                            port["hostPort"] = sp["port"] + args.port_offset
    for v in spec.get("volumes", []):
        if "secret" in v:
            v.pop("secret")
            v["hostPath"] = {"path": os.path.abspath(args.secret_dir), "type": "Directory"}
        elif v.get("hostPath", {}).get("path") == "/var/lib/freekv/models":
            v["hostPath"]["path"] = os.path.abspath(args.models_dir)
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": template["metadata"].get("labels", {}),
                        "annotations": template["metadata"].get("annotations", {})},
           "spec": spec}
    used = {s["configMapRef"]["name"] for c in spec["containers"] for s in c.get("envFrom", []) if "configMapRef" in s}
    out = os.path.join(args.out_dir, f"{name}.yaml")
    with open(out, "w") as f:
        plain_cms = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}, "data": config_maps[n]["data"]}
                     for n in sorted(used)]
        yaml.safe_dump_all(plain_cms + [pod], f, sort_keys=False)
    print(name, ips[name], out)
