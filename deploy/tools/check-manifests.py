#!/usr/bin/env python3
"""Checks what a schema validator cannot about the mesh Kubernetes manifests.

    check-manifests.py --meshctl PATH FILE...

Fails (exit 1) unless:
- every MESH_* variable a container sets is an option of `meshctl agent` (read from
  `meshctl agent --help`) or one of the entrypoint's (MESH_SEED_*, MESH_SELF_HOST);
- every $(VAR) in an env value names a variable defined earlier in the same container
  (Kubernetes expands only those, and leaves the text as it is otherwise);
- MESH_VOTERS is the same on every container, and equals the StatefulSet's pod names
  (NAME-0 .. NAME-(replicas-1)); its seeds are those pods' names under its headless
  Service, which exists, is headless, publishes not-ready addresses and selects the
  StatefulSet's pods;
- every agent container has a /livez liveness and a /readyz readiness probe, both on
  the admin port;
- the StatefulSet keeps data_dir on a volumeClaimTemplate;
- a PodDisruptionBudget selects the voters and keeps a majority of them
  (minAvailable = replicas // 2 + 1, or maxUnavailable = replicas - majority);
- every volumeMount names a declared volume or claim template.

Needs PyYAML.
"""

import argparse
import re
import subprocess
import sys

import yaml

ENTRYPOINT_VARS = {"MESH_SEED_HOSTS", "MESH_SELF_HOST", "MESH_SEED_PORT", "MESH_SEED_WAIT"}


def agent_env_names(meshctl):
    out = subprocess.run([meshctl, "agent", "--help"], stdout=subprocess.PIPE, check=True, timeout=30).stdout.decode()
    names = set(re.findall(r"env: (MESH_[A-Z_]+)", out))
    if len(names) < 10:
        raise SystemExit("check-manifests: could not read the MESH_* options from `meshctl agent --help`")
    return names


def pod_specs(docs):
    for d in docs:
        if d.get("kind") in ("StatefulSet", "Deployment"):
            yield d, d["spec"]["template"]["spec"]


def env_value(container, name):
    for e in container.get("env", []):
        if e["name"] == name:
            return e.get("value")
    return None


def check(docs, known):
    errors = []
    voter_lists = []
    stss = [d for d in docs if d.get("kind") == "StatefulSet"]
    services = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Service"}
    pdbs = [d for d in docs if d.get("kind") == "PodDisruptionBudget"]
    for d, spec in pod_specs(docs):
        kind, name = d["kind"], d["metadata"]["name"]
        volumes = {v["name"] for v in spec.get("volumes", [])}
        volumes |= {t["metadata"]["name"] for t in d["spec"].get("volumeClaimTemplates", [])}
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            where = "%s/%s container %s" % (kind, name, c["name"])
            defined = set()
            for e in c.get("env", []):
                n = e["name"]
                if n.startswith("MESH_") and n not in known and n not in ENTRYPOINT_VARS:
                    errors.append("%s: %s is not an option of meshctl agent" % (where, n))
                for ref in re.findall(r"\$\((\w+)\)", e.get("value") or ""):
                    if ref not in defined:
                        errors.append("%s: %s uses $(%s), not defined before it" % (where, n, ref))
                defined.add(n)
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    errors.append("%s: mounts undeclared volume %s" % (where, m["name"]))
        for c in spec.get("containers", []):
            where = "%s/%s container %s" % (kind, name, c["name"])
            voters = env_value(c, "MESH_VOTERS")
            voter_lists.append((where, voters))
            ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
            admin = env_value(c, "MESH_ADMIN") or ""
            for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
                get = (c.get(probe) or {}).get("httpGet") or {}
                if get.get("path") != path:
                    errors.append("%s: %s is not an httpGet of %s" % (where, probe, path))
                port = get.get("port")
                port = ports.get(port, port)
                if not admin.endswith(":%s" % port):
                    errors.append("%s: %s port %s is not the admin port (%s)" % (where, probe, port, admin))
    lists = {v for _, v in voter_lists}
    if len(lists) != 1 or None in lists:
        errors.append("MESH_VOTERS differs between containers: %s" % voter_lists)
    if len(stss) != 1:
        errors.append("expected one StatefulSet (the voters), found %d" % len(stss))
        return errors
    sts = stss[0]
    name, replicas = sts["metadata"]["name"], sts["spec"]["replicas"]
    pods = ["%s-%d" % (name, i) for i in range(replicas)]
    if lists and list(lists)[0] is not None and list(lists)[0].split(",") != pods:
        errors.append("MESH_VOTERS %s is not the StatefulSet's pods %s" % (list(lists)[0], pods))
    svc_name = sts["spec"].get("serviceName")
    svc = services.get(svc_name)
    labels = sts["spec"]["template"]["metadata"]["labels"]
    if not svc:
        errors.append("the StatefulSet's serviceName %s is not a Service here" % svc_name)
    else:
        if svc["spec"].get("clusterIP") != "None":
            errors.append("Service %s is not headless" % svc_name)
        if not svc["spec"].get("publishNotReadyAddresses"):
            errors.append("Service %s does not publish not-ready addresses (voters could not find each other)" % svc_name)
        if any(labels.get(k) != v for k, v in svc["spec"].get("selector", {}).items()):
            errors.append("Service %s does not select the voters" % svc_name)
    want_seeds = ["%s.%s" % (p, svc_name) for p in pods]
    for d, spec in pod_specs(docs):
        for c in spec.get("containers", []):
            seeds = (env_value(c, "MESH_SEED_HOSTS") or "").split(",")
            if seeds != want_seeds:
                errors.append("%s/%s: MESH_SEED_HOSTS %s, expected %s" % (d["kind"], d["metadata"]["name"], seeds, want_seeds))
    data_dirs = [env_value(c, "MESH_DATA_DIR") for c in sts["spec"]["template"]["spec"]["containers"]]
    claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
    for c in sts["spec"]["template"]["spec"]["containers"]:
        dd = env_value(c, "MESH_DATA_DIR")
        if not any(m["mountPath"] == dd and m["name"] in claims for m in c.get("volumeMounts", [])):
            errors.append("StatefulSet %s: data_dir %s is not on a volumeClaimTemplate" % (name, dd))
    if not data_dirs:
        errors.append("StatefulSet %s has no containers" % name)
    majority = replicas // 2 + 1
    good = False
    for pdb in pdbs:
        sel = pdb["spec"].get("selector", {}).get("matchLabels", {})
        if not sel or any(labels.get(k) != v for k, v in sel.items()):
            continue
        if pdb["spec"].get("minAvailable") == majority or pdb["spec"].get("maxUnavailable") == replicas - majority:
            good = True
        else:
            errors.append(
                "PodDisruptionBudget %s does not keep a majority (%d of %d)" % (pdb["metadata"]["name"], majority, replicas)
            )
    if not good:
        errors.append("no PodDisruptionBudget keeps a majority of the voters")
    return errors


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--meshctl", required=True)
    p.add_argument("files", nargs="+")
    args = p.parse_args()
    docs = []
    for f in args.files:
        with open(f, encoding="utf-8") as fh:
            docs += [d for d in yaml.safe_load_all(fh) if d]
    errors = check(docs, agent_env_names(args.meshctl))
    for e in errors:
        print("check-manifests: %s" % e, file=sys.stderr)
    if errors:
        return 1
    print("check-manifests: %d objects consistent" % len(docs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
