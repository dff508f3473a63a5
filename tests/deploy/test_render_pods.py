#!/usr/bin/python3
"""deploy/container/render_pods.py, which turns deploy/k8s into the pods scripts/container.sh runs with
podman, checked without a container engine: every workload becomes a Pod of exactly its template, with
nothing changed but what a control plane fills in ($(VAR) expanded from the ConfigMap and env, fieldRefs
given values, the Service's address and ports, the Secret as a directory, the models path); and each
rendered freekv command line passes --check-config with the build's binaries.

  test_render_pods.py SOURCE_DIR BIN_DIR MODEL_DIR
"""
import copy
import os
import re
import subprocess
import sys
import tempfile

import yaml

src, bin_dir, model_dir = sys.argv[1:4]
tmp = tempfile.mkdtemp(prefix="freekv-render-")
secret = os.path.join(tmp, "secret")
os.makedirs(secret)
with open(os.path.join(secret, "token"), "w") as f:
    f.write("render-test-token\n")
os.chmod(os.path.join(secret, "token"), 0o600)
out = os.path.join(tmp, "pods")
ips = {"freekv-coordinator": "10.89.77.10", "freekv-node": "10.89.77.20"}
subprocess.run(["/usr/bin/python3", os.path.join(src, "deploy/container/render_pods.py"), os.path.join(src, "deploy/k8s"), out,
                "--ips", ",".join(f"{k}={v}" for k, v in ips.items()), "--secret-dir", secret, "--models-dir", model_dir,
                "--port-offset", "10000"], check=True, stdout=subprocess.DEVNULL)
failures = []


def check(ok, what):
    print(("ok: " if ok else "FAILED: ") + what)
    if not ok:
        failures.append(what)


manifests = {}
for name in ("coordinator.yaml", "node.yaml"):
    for d in yaml.safe_load_all(open(os.path.join(src, "deploy/k8s", name))):
        if d and d["kind"] in ("Deployment", "DaemonSet"):
            manifests[d["metadata"]["name"]] = d

for name, workload in manifests.items():
    docs = [d for d in yaml.safe_load_all(open(os.path.join(out, f"{name}.yaml"))) if d]
    pods = [d for d in docs if d["kind"] == "Pod"]
    check(len(pods) == 1 and pods[0]["metadata"]["name"] == name, f"{name}: one Pod named after the workload")
    pod = pods[0]
    template = copy.deepcopy(workload["spec"]["template"]["spec"])
    rendered = copy.deepcopy(pod["spec"])
    # Everything but the filled-in fields is the template's, byte for byte.
    for spec in (template, rendered):
        for c in spec["containers"]:
            c.pop("args", None)
            c.pop("command", None)
            c.pop("env", None)
            for p in c.get("ports", []):
                p.pop("hostPort", None)
        spec["volumes"] = [v["name"] for v in spec.get("volumes", [])]
    check(template == rendered, f"{name}: the pod spec is the template's apart from args, env, host ports and volume sources")
    for c in pod["spec"]["containers"]:
        line = c["command"] + c["args"]
        check(not any(re.search(r"\$\([A-Za-z_]+\)", a) for a in line), f"{name}/{c['name']}: no $(VAR) left: {line}")
        for e in c.get("env", []):
            check("valueFrom" not in e, f"{name}/{c['name']}: env {e['name']} has a value")
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    if "admin-token" in volumes:
        check(volumes["admin-token"].get("hostPath", {}).get("path") == secret, f"{name}: the Secret is the token directory")
    if "models" in volumes:
        check(volumes["models"]["hostPath"]["path"] == os.path.abspath(model_dir), f"{name}: models from the given directory")

coordinator = yaml.safe_load_all(open(os.path.join(out, "freekv-coordinator.yaml")))
ports = {p["name"]: p.get("hostPort") for d in coordinator if d and d["kind"] == "Pod"
         for c in d["spec"]["containers"] for p in c.get("ports", [])}
check(ports.get("grpc") == 60051 and ports.get("http") == 18000 and ports.get("metrics") is None,
      f"the coordinator publishes the Service's ports, offset (grpc 60051, http 18000), and only those: {ports}")
node = [d for d in yaml.safe_load_all(open(os.path.join(out, "freekv-node.yaml"))) if d and d["kind"] == "Pod"][0]
worker = [c for c in node["spec"]["containers"] if c["name"] == "worker"][0]
check("--advertise=10.89.77.20:50052" in worker["args"], "the worker advertises its pod's IP")
check("--coordinator=10.89.77.10:50051" in worker["args"], "the worker finds the coordinator at its pod's IP")

# The rendered command lines are valid freekv invocations.
for d in ([d for d in yaml.safe_load_all(open(os.path.join(out, "freekv-node.yaml"))) if d and d["kind"] == "Pod"] +
          [d for d in yaml.safe_load_all(open(os.path.join(out, "freekv-coordinator.yaml"))) if d and d["kind"] == "Pod"]):
    for c in d["spec"]["containers"]:
        argv = [re.sub(r"/usr/local/bin/", bin_dir + "/", c["command"][0])]
        for a in c["args"]:
            a = a.replace("/etc/freekv/secret/token", os.path.join(secret, "token")).replace("/models/default", model_dir)
            a = a.replace("unix:/run/freekv/", f"unix:{tmp}/").replace("/run/freekv/", f"{tmp}/")
            a = re.sub(r"--pool-size=.*", "--pool-size=64MiB", a)
            argv.append(a)
        r = subprocess.run(argv + ["--check-config"], capture_output=True, text=True)
        check(r.returncode == 0, f"{d['metadata']['name']}/{c['name']}: --check-config: {r.stderr.strip()[-300:]}")

sys.exit(1 if failures else 0)
