#!/usr/bin/python3
"""Runs the systemd units' command lines for real: freekv-kvstore, freekv-coordinator and freekv-worker@0
started with exactly their ExecStart lines (env files expanded) and these substitutions only: install
paths -> the build's binaries, default model and a temporary token file and run directory; the pool name
and every TCP port -> unique ones (so tests can run side by side). Then:

  1. a generation through the coordinator, while the three /metrics endpoints are scraped: the samples
     parse as Prometheus text and agree with what the request reports (tokens, recall bytes, latencies);
     a completion through the coordinator's OpenAI-compatible HTTP API, counted in its metrics;
  2. SIGTERM drains: a stream running on the worker or the coordinator when it gets SIGTERM finishes
     within the grace period; new requests are refused UNAVAILABLE meanwhile; the process exits 0;
  3. past the grace period (the same lines plus --drain-grace-ms=300) a running stream ends UNAVAILABLE,
     and its session keeps what was generated;
  4. the kvstore keeps every session across worker and kvstore restarts: the next turn reuses its KV.

  run_units.py SOURCE_DIR BIN_DIR DEFAULT_MODEL_DIR
"""
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from unit_commands import systemd_command

src, bin_dir, model_dir = sys.argv[1:4]
tmp = tempfile.mkdtemp(prefix="freekv-units-")
run_dir = os.path.join(tmp, "run")
os.makedirs(run_dir)
token = os.path.join(tmp, "admin-token")
with open(token, "w") as f:
    f.write("units-test-token\n")
os.chmod(token, 0o600)
pool_name = f"freekv-units-test-{os.getpid()}"
failures = []


def expect(cond, what):
    print(f"{'ok  ' if cond else 'FAIL'} {what}", flush=True)
    if not cond:
        failures.append(what)
    return cond


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ports = {}  # port in the units -> port of this run


def localize(argv):
    out = []
    for a in argv:
        a = re.sub(r"/usr/local/bin/(freekv-[a-z]+)", lambda m: os.path.join(bin_dir, m.group(1)), a)
        a = a.replace("/var/lib/freekv/models/default", model_dir).replace("/etc/freekv/admin-token", token)
        a = a.replace("/run/freekv/", run_dir + "/")
        a = pool_name if a == "freekv-pool" else a
        a = re.sub(r"^(127\.0\.0\.1|0\.0\.0\.0):(\d+)$", lambda m: f"{m.group(1)}:{ports.setdefault(m.group(2), free_port())}", a)
        out.append(a)
    return out


units = {os.path.basename(u): localize(systemd_command(src, u, host="unitshost"))
         for u in sorted(glob.glob(os.path.join(src, "deploy/systemd/*.service")))}
assert set(units) == {"freekv-kvstore.service", "freekv-coordinator.service", "freekv-worker@.service"}, units


def flag(argv, name):
    for i, a in enumerate(argv):
        if a == name:
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    raise KeyError(name)


coordinator_addr = flag(units["freekv-coordinator.service"], "--listen")
metrics_url = {name: f"http://{flag(argv, '--metrics-listen')}/metrics" for name, argv in units.items()}
kv_socket = flag(units["freekv-kvstore.service"], "--listen")
procs = {}


def start(unit, extra=()):
    argv = units[unit] + list(extra)
    log = open(os.path.join(tmp, unit + ".log"), "a")
    log.write("$ " + " ".join(argv) + "\n")
    log.flush()
    procs[unit] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    return procs[unit]


def stop(unit, timeout=25):
    """SIGTERM, as systemctl stop sends; the exit status (None if it had to be killed)."""
    p = procs.pop(unit)
    p.send_signal(signal.SIGTERM)
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return None


def scrape(unit):
    with urllib.request.urlopen(metrics_url[unit], timeout=5) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
        return r.read().decode()


SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*)\})? (\S+)')


def parse(text):
    """Prometheus text format -> {(name, ((label, value), ...)): float}; raises on a malformed line."""
    out, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("# HELP ") or not line:
            continue
        m = SAMPLE.fullmatch(line)
        if m is None:
            raise ValueError(f"not a Prometheus sample line: {line!r}")
        name, labels, value = m.groups()
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in typed and base not in typed:
            raise ValueError(f"sample {name} has no # TYPE line before it")
        pairs = tuple(sorted(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels or "")))
        out[(name, pairs)] = float(value)
    return out


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def wait_for(what, cond, timeout=60):
    until = time.time() + timeout
    while time.time() < until:
        try:
            if cond():
                return True
        except Exception:  # not up yet
            pass
        time.sleep(0.1)
    return expect(False, f"{what} within {timeout} s")


def generate(*args, timeout=120):
    argv = [os.path.join(bin_dir, "freekv"), "generate", "--coordinator", coordinator_addr, "--json",
            "--timeout", str(timeout), *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(p):
    out, err = p.communicate(timeout=180)
    done = None
    for line in out.splitlines():
        msg = json.loads(line)
        if "usage" in msg:
            done = msg
    return p.returncode, done, err


def kv_sessions():
    p = subprocess.run([os.path.join(bin_dir, "freekv-kvstore"), "--listen", kv_socket, "--stats"],
                       capture_output=True, text=True, timeout=20)
    data = json.loads(p.stdout)
    return {s["session_id"]: int(s["n_tokens"]) for s in data["sessions"].get("sessions", [])}


def start_stack(extra_worker=(), extra_coordinator=()):
    if "freekv-kvstore.service" not in procs:
        start("freekv-kvstore.service")
        wait_for("kvstore socket", lambda: os.path.exists(kv_socket.removeprefix("unix:")))
    if "freekv-coordinator.service" not in procs:
        start("freekv-coordinator.service", extra_coordinator)
        wait_for("coordinator metrics", lambda: scrape("freekv-coordinator.service"))
    start("freekv-worker@.service", extra_worker)
    wait_for("worker registered (freekv_coordinator_workers{state=alive} = 1)",
             lambda: value(parse(scrape("freekv-coordinator.service")), "freekv_coordinator_workers", state="alive") == 1)


def wait_running():
    return wait_for("the request running on the worker",
                    lambda: value(parse(scrape("freekv-worker@.service")), "freekv_worker_running_requests") == 1)


def term_while_running(unit, stream):
    """SIGTERM to `unit` while `stream` runs on the worker; a new request meanwhile must be UNAVAILABLE."""
    wait_running()
    procs[unit].send_signal(signal.SIGTERM)
    time.sleep(0.2)
    refused = subprocess.run([os.path.join(bin_dir, "freekv"), "generate", "--coordinator", coordinator_addr,
                              "--prompt", "hello", "--max-tokens", "4"], capture_output=True, text=True, timeout=60)
    expect(refused.returncode != 0 and "UNAVAILABLE" in refused.stderr and stream.poll() is None,
           f"{unit} draining a running stream: a new request is UNAVAILABLE ({refused.stderr.strip()[-200:]})")


# A prompt longer than the units' --budget (2048 by default, with 512 sink + 512 recent tokens), so the
# freekv policy selects pages and recalls them from the kvstore.
prompt_file = os.path.join(tmp, "prompt.txt")
with open(prompt_file, "w") as f:
    f.write(" ".join(f"item {i} is {i * 7 % 101}." for i in range(900)))

try:
    start_stack()

    # --- 1. a generation while the metrics endpoints are scraped --------------------------------------
    p = generate("--prompt-file", prompt_file, "--max-tokens", "48", "--ignore-eos")
    during = []
    while p.poll() is None:
        during.append({u: parse(scrape(u)) for u in units})
        time.sleep(0.05)
    rc, done, err = finish(p)
    expect(rc == 0 and done is not None, f"generation through the units' stack succeeds ({err.strip()[-300:]})")
    usage, retrieval = done["usage"], done.get("retrieval", {})
    expect(len(during) > 0, f"scraped the three endpoints {len(during)} times during the generation")
    expect(any(value(d["freekv-worker@.service"], "freekv_worker_running_requests") == 1 for d in during) or
           any(value(d["freekv-coordinator.service"], "freekv_coordinator_active_streams") == 1 for d in during),
           "a scrape during the generation saw it running")
    w = parse(scrape("freekv-worker@.service"))
    c = parse(scrape("freekv-coordinator.service"))
    k = parse(scrape("freekv-kvstore.service"))
    n = int(usage["generated_tokens"])
    expect(n == 48, f"48 tokens generated ({n})")
    expect(value(w, "freekv_worker_requests_total", code="OK") == 1, "worker: requests_total{code=OK} = 1")
    expect(value(w, "freekv_worker_generated_tokens_total") == n, "worker: generated_tokens_total = tokens generated")
    expect(value(w, "freekv_worker_prompt_tokens_total") == int(usage["prompt_tokens"]),
           f"worker: prompt_tokens_total = the prompt's {usage['prompt_tokens']} tokens")
    expect(value(w, "freekv_worker_time_to_first_token_seconds_count") == 1, "worker: one TTFT observation")
    expect(value(w, "freekv_worker_inter_token_latency_seconds_count") == n - 1, f"worker: {n - 1} inter-token gaps")
    expect(value(w, "freekv_worker_steps_total") >= n, "worker: a step per generated token at least")
    expect(value(w, "freekv_worker_batch_size_count") == value(w, "freekv_worker_steps_total"), "worker: a batch size per step")
    recall = int(retrieval.get("bytes_recalled", 0))
    expect(recall > 0, f"the request recalled pages from the kvstore ({recall} bytes)")
    expect(value(w, "freekv_worker_recall_bytes_total") == recall, "worker: recall_bytes_total = the request's recalled bytes")
    expect(value(w, "freekv_worker_correction_checks_total") == int(retrieval.get("correction_checks", 0)) > 0,
           "worker: correction checks counted as the request reports them")
    rate = value(w, "freekv_worker_correction_rate")
    expect(rate is not None and 0 <= rate <= 1, f"worker: correction rate in [0, 1] ({rate})")
    expect(value(w, "freekv_kv_pages", tier="worker", state="capacity") > 0, "worker: worker-tier page capacity")
    expect(value(w, "freekv_grpc_server_handled_total", method="/freekv.v1.Worker/Generate", code="OK") == 1,
           "worker: RPCs by method and code")
    expect(value(c, "freekv_coordinator_requests_total", code="OK") == 1, "coordinator: requests_total{code=OK} = 1")
    expect(value(c, "freekv_coordinator_generated_tokens_total") == n, "coordinator: tokens relayed")
    expect(value(c, "freekv_coordinator_time_to_first_token_seconds_count") == 1, "coordinator: one TTFT observation")
    expect(value(c, "freekv_coordinator_inter_token_latency_seconds_count") == n - 1, "coordinator: inter-token gaps")
    expect(value(k, "freekv_kv_pages", tier="host", state="capacity") > 0, "kvstore: host-tier page capacity")
    expect(value(k, "freekv_kvstore_recall_bytes_total") >= recall, "kvstore: recall bytes served")
    expect(value(k, "freekv_kvstore_recall_gbps", window="1m", over="busy") > 0, "kvstore: recall GB/s")
    expect(value(k, "freekv_kvstore_workers") == 1, "kvstore: one worker attached")
    expect(value(k, "freekv_build_info", program="freekv-kvstore") == 1, "kvstore: build info")
    bad = subprocess.run([os.path.join(bin_dir, "freekv"), "generate", "--coordinator", coordinator_addr,
                          "--session", "no-such-session", "--prompt", "x"], capture_output=True, text=True, timeout=60)
    c = parse(scrape("freekv-coordinator.service"))
    expect(bad.returncode != 0 and value(c, "freekv_coordinator_requests_total", code="NOT_FOUND") == 1,
           "coordinator: a request for an unknown session counted as NOT_FOUND")
    # The unit's OpenAI-compatible HTTP API answers, and the coordinator counts it.
    http = flag(units["freekv-coordinator.service"], "--http-listen")
    request = urllib.request.Request(f"http://{http}/v1/completions", method="POST",
                                     data=json.dumps({"model": "freekv", "prompt": "hello", "max_tokens": 4}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        answer = json.load(r)
    expect(answer["usage"]["completion_tokens"] == 4, f"the HTTP API of the coordinator's unit answers ({answer['usage']})")
    c = parse(scrape("freekv-coordinator.service"))
    expect(value(c, "freekv_coordinator_http_requests_total", path="/v1/completions", code="200") == 1,
           "coordinator: HTTP requests counted by path and code")

    # --- 2. SIGTERM within the grace period: running streams finish, new requests are refused -----------
    # Streams of at most about 5 s at the speed just measured at 8K context (shorter contexts decode
    # faster): long enough to be running when the new request comes, inside the units' 10 s grace.
    step_s = float(usage["decode_seconds"]) / (n - 1)
    drain_tokens = str(max(200, min(8000, int(5.0 / step_s))))
    print(f"     {1 / step_s:.0f} tokens/s: streams of {drain_tokens} tokens for the drain checks")
    rc, done, err = finish(generate("--session", "units-s1", "--new-session", "--prompt", "remember the number 42",
                                    "--max-tokens", "8"))
    expect(rc == 0, f"session units-s1 created ({err.strip()[-200:]})")
    p = generate("--session", "units-s1", "--prompt", " and now count", "--max-tokens", drain_tokens, "--ignore-eos")
    t0 = time.time()
    term_while_running("freekv-worker@.service", p)
    rc, done, err = finish(p)
    print(f"     the stream ended {time.time() - t0:.1f} s after it was seen running")
    expect(rc == 0 and done is not None and done["usage"]["generated_tokens"] == drain_tokens,
           f"the stream running at SIGTERM finishes all its {drain_tokens} tokens within the grace ({err.strip()[-200:]})")
    expect(procs.pop("freekv-worker@.service").wait(25) == 0, "the worker exits 0 after draining")
    held = kv_sessions().get("units-s1", 0)
    expect(held > int(drain_tokens), f"the kvstore keeps session units-s1 with both turns ({held} tokens)")

    # --- 3. past the grace period: the stream ends UNAVAILABLE, the session keeps what was generated ------
    start_stack(extra_worker=["--drain-grace-ms=300"])
    p = generate("--session", "units-s1", "--prompt", " go on", "--max-tokens", "25000", "--ignore-eos")
    wait_running()
    t0 = time.time()
    code = stop("freekv-worker@.service")
    rc, done, err = finish(p)
    expect(rc != 0 and "UNAVAILABLE" in err, f"a stream outlasting --drain-grace-ms ends UNAVAILABLE ({err.strip()[-200:]})")
    expect(code == 0 and time.time() - t0 < 10, f"the worker stops within the grace plus a margin ({time.time() - t0:.1f} s, exit {code})")
    kept = kv_sessions().get("units-s1", 0)
    expect(kept > held, f"the session keeps the tokens generated before the stop ({held} -> {kept})")

    # --- 4. the kvstore keeps every session across a kvstore restart --------------------------------------
    expect(stop("freekv-kvstore.service") == 0, "the kvstore exits 0 on SIGTERM")
    start_stack()
    expect(kv_sessions().get("units-s1", 0) == kept, "after a kvstore restart the session holds the same tokens")
    rc, done, err = finish(generate("--session", "units-s1", "--prompt", " last turn", "--max-tokens", "4"))
    expect(rc == 0 and done is not None and int(done["usage"].get("reused_tokens", 0)) > 0,
           f"the next turn reuses the session's KV ({(done or {}).get('usage')}, {err.strip()[-200:]})")

    # --- 5. the coordinator drains too: a running stream finishes, new calls are refused, exit 0 -----------
    p = generate("--prompt", "tell a story", "--max-tokens", drain_tokens, "--ignore-eos")
    term_while_running("freekv-coordinator.service", p)
    rc, done, err = finish(p)
    expect(rc == 0 and done is not None, f"the coordinator's running stream finishes ({err.strip()[-200:]})")
    expect(procs.pop("freekv-coordinator.service").wait(25) == 0, "the coordinator exits 0 after draining")
    start("freekv-coordinator.service", ["--drain-grace-ms=300"])
    wait_for("worker registered again",
             lambda: value(parse(scrape("freekv-coordinator.service")), "freekv_coordinator_workers", state="alive") == 1)
    p = generate("--prompt", "tell a long story", "--max-tokens", "25000", "--ignore-eos")
    wait_running()
    expect(stop("freekv-coordinator.service") == 0, "the coordinator exits 0 past its grace")
    rc, done, err = finish(p)
    expect(rc != 0 and "UNAVAILABLE" in err, f"a stream outlasting the coordinator's grace ends UNAVAILABLE ({err.strip()[-200:]})")
finally:
    for unit in ["freekv-worker@.service", "freekv-coordinator.service", "freekv-kvstore.service"]:
        if unit in procs:
            stop(unit, timeout=10)
    subprocess.run([os.path.join(bin_dir, "freekv-kvstore"), "--pool-name", pool_name, "--remove-pool"],
                   capture_output=True, timeout=20)
    if failures:
        for log in sorted(glob.glob(os.path.join(tmp, "*.log"))):
            print(f"--- {os.path.basename(log)} (last 30 lines)")
            print("".join(open(log).readlines()[-30:]))
    shutil.rmtree(tmp, ignore_errors=True)

if failures:
    print("\nFAILURES:\n" + "\n".join(failures))
    sys.exit(1)
print("the units' command lines serve, export metrics and drain as documented")
