"""The freekv command lines of deploy/systemd: each unit's ExecStart with its EnvironmentFile and
Environment= variables expanded as systemd does, shared by check_deploy.py and run_units.py."""
import os
import re
import shlex


def read_env(path):
    env = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            env[k] = v.strip('"')
    return env


def systemd_command(src, unit_path, instance="0", host="testhost"):
    """argv of the unit's ExecStart; %i = instance, %H = host; env files are read from deploy/systemd/env."""
    env, execs = {}, []
    for line in open(unit_path):
        line = line.strip()
        if line.startswith("EnvironmentFile="):
            name = os.path.basename(line.split("=", 1)[1].lstrip("-"))
            env.update(read_env(os.path.join(src, "deploy/systemd/env", name)))
        elif line.startswith("Environment="):
            k, v = line.split("=", 1)[1].split("=", 1)
            env[k] = v
        elif line.startswith("ExecStart="):
            execs.append(line.split("=", 1)[1])
    assert len(execs) == 1, f"{unit_path}: want one ExecStart"
    line = execs[0].replace("%i", instance).replace("%H", host)
    argv = []
    for word in shlex.split(line):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if m:  # systemd: unbraced $VAR splits into words
            argv += env[m.group(1)].split()
        else:  # ${VAR} stays one word
            argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env[m.group(1)], word))
    return argv
