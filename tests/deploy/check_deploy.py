#!/usr/bin/python3
"""Checks deploy/: every freekv command line in the systemd units and the Kubernetes manifests passes
--check-config with the build's binaries and default model; a broken variant fails with its reason; and
`systemd-analyze verify` accepts the units.

  check_deploy.py SOURCE_DIR BIN_DIR DEFAULT_MODEL_DIR
"""
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

from unit_commands import systemd_command

src, bin_dir, model_dir = sys.argv[1:4]
tmp = tempfile.mkdtemp(prefix="freekv-deploy-")
token = os.path.join(tmp, "admin-token")
with open(token, "w") as f:
    f.write("deploy-test-token\n")
os.chmod(token, 0o600)
failures = []


def localize(argv):
    """Install paths -> the build's: binaries, the model directory, the admin token file."""
    out = []
    for a in argv:
        a = re.sub(r"/usr/local/bin/(freekv-[a-z]+)", lambda m: os.path.join(bin_dir, m.group(1)), a)
        a = re.sub(r"(/var/lib/freekv)?/models/default", model_dir, a)
        for tok in ("/etc/freekv/admin-token", "/etc/freekv/secret/token"):
            a = a.replace(tok, token)
        out.append(a)
    return out


def check(label, argv, expect_ok=True, reason=None):
    argv = localize(argv) + ["--check-config"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    ok = p.returncode == 0
    if ok != expect_ok or (reason and reason not in p.stderr):
        failures.append(f"{label}: exit {p.returncode} (wanted {'0' if expect_ok else 'non-zero'}"
                        f"{', reason ' + repr(reason) if reason else ''})\n  {shlex.join(argv)}\n{p.stdout}{p.stderr}")
    print(f"{'ok  ' if ok == expect_ok else 'FAIL'} {label}: {(p.stdout + p.stderr).strip().splitlines()[-1] if (p.stdout + p.stderr).strip() else ''}")
    return argv


# --- systemd: ExecStart with the EnvironmentFile (and Environment=) variables substituted -------------
units = sorted(glob.glob(os.path.join(src, "deploy/systemd/*.service")))
assert len(units) == 3, units
commands = {}
for unit in units:
    argv = systemd_command(src, unit)
    commands[os.path.basename(unit)] = argv
    check(f"systemd {os.path.basename(unit)}", argv)


# --- Kubernetes: container command + args with $(VAR) from the ConfigMap and env ---------------------
docs = []
for path in sorted(glob.glob(os.path.join(src, "deploy/k8s/*.yaml"))):
    docs += [(os.path.basename(path), d) for d in yaml.safe_load_all(open(path)) if d]
configmaps = {d["metadata"]["name"]: d.get("data", {}) for _, d in docs if d.get("kind") == "ConfigMap"}
n_k8s = 0
for path, d in docs:
    if d.get("kind") not in ("Deployment", "DaemonSet", "StatefulSet"):
        continue
    for c in d["spec"]["template"]["spec"]["containers"]:
        env = {}
        for ef in c.get("envFrom", []):
            env.update(configmaps[ef["configMapRef"]["name"]])
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            elif "configMapKeyRef" in e.get("valueFrom", {}):
                ref = e["valueFrom"]["configMapKeyRef"]
                env[e["name"]] = configmaps[ref["name"]][ref["key"]]
            else:  # downward API (pod IP, node name): a plausible value
                env[e["name"]] = {"POD_IP": "10.0.0.7", "NODE_NAME": "gpu-node-1"}.get(e["name"], "x")
        sub = lambda s: re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: str(env[m.group(1)]), str(s))
        argv = [sub(a) for a in c["command"] + c.get("args", [])]
        label = f"k8s {path} {d['metadata']['name']}/{c['name']}"
        assert "freekv-" in argv[0], label
        commands[label] = argv
        check(label, argv)
        n_k8s += 1
assert n_k8s == 3, f"expected 3 freekv containers in deploy/k8s, found {n_k8s}"

# --- broken variants fail and say why (absl: the last value of a repeated flag wins) -----------------
check("broken kvstore --pool-size", commands["freekv-kvstore.service"] + ["--pool-size=12XB"], False, "--pool-size")
check("kvstore pool larger than memory", commands["freekv-kvstore.service"] + ["--pool-size=64TiB"], False,
      "exceeds MemAvailable")
check("broken worker --model", commands["freekv-worker@.service"] + ["--model=/nonexistent"], False, "--model")
check("broken coordinator --listen", commands["freekv-coordinator.service"] + ["--listen=nohostport"], False,
      "--listen")
check("broken worker --metrics-listen", commands["freekv-worker@.service"] + ["--metrics-listen=9410"], False,
      "--metrics-listen")

# --- systemd-analyze verify on the units (install paths -> the build's binaries, env files -> the repo's) --
analyze = shutil.which("systemd-analyze")
if analyze is None:
    failures.append("systemd-analyze not found (install Debian's systemd package: scripts/install-deps.sh)")
else:
    udir = os.path.join(tmp, "units")
    os.makedirs(udir)
    names = []
    for unit in units:
        text = open(unit).read()
        text = text.replace("/usr/local/bin/", bin_dir + "/").replace("/etc/freekv/", os.path.join(src, "deploy/systemd/env") + "/")
        name = os.path.basename(unit).replace("@.service", "@0.service")
        with open(os.path.join(udir, os.path.basename(unit)), "w") as f:
            f.write(text)
        if name != os.path.basename(unit):
            with open(os.path.join(udir, name), "w") as f:
                f.write(text)
        names.append(os.path.join(udir, name))
    p = subprocess.run([analyze, "verify", "--man=no"] + names, capture_output=True, text=True, timeout=20,
                       env=dict(os.environ, SYSTEMD_UNIT_PATH=udir + ":"))
    print(f"{'ok  ' if p.returncode == 0 and not p.stderr.strip() else 'FAIL'} systemd-analyze verify: exit {p.returncode} {p.stderr.strip()}")
    if p.returncode != 0 or p.stderr.strip():
        failures.append(f"systemd-analyze verify: exit {p.returncode}\n{p.stdout}{p.stderr}")
    # A broken unit must be caught, or the check above proves nothing.
    bad = os.path.join(udir, "freekv-broken.service")
    with open(bad, "w") as f:
        f.write("[Service]\nExecStart=relative/freekv-kvstore\nRestart=sometimes\n")
    p = subprocess.run([analyze, "verify", "--man=no", bad], capture_output=True, text=True, timeout=20,
                       env=dict(os.environ, SYSTEMD_UNIT_PATH=udir + ":"))
    if p.returncode == 0 and not p.stderr.strip():
        failures.append("systemd-analyze verify accepted a broken unit: it checks nothing here")
    else:
        print(f"ok   systemd-analyze verify rejects a broken unit: {p.stderr.strip().splitlines()[0]}")

shutil.rmtree(tmp, ignore_errors=True)
if failures:
    print("\n".join(["", "FAILURES:"] + failures))
    sys.exit(1)
print("all deploy checks passed")
