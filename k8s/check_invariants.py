#!/usr/bin/env python3
"""Cross-object checks on a rendered overlay that no schema can express.

    check_invariants.py target/rendered/dev.yaml [...]

Checks, per rendered stream:
  * every workload container has CPU and memory requests and limits and the
    hardened securityContext (no privilege escalation, read-only root
    filesystem, all capabilities dropped), and every pod runs as non-root
    with the RuntimeDefault seccomp profile;
  * Deployments and StatefulSets have liveness and readiness probes, and
    probe ports name a declared container port;
  * configMapKeyRef/secretKeyRef keys exist in the ConfigMap/Secret when that
    object is part of the render (an out-of-band Secret is reported, not
    failed);
  * every key of a rendered ConfigMap is read by some container: containers
    pick keys one by one (configMapKeyRef), so a key added to config.env
    alone would never reach a process;
  * the gateway's terminationGracePeriodSeconds exceeds its preStop sleep
    plus DRAIN_SECONDS plus a 5 s margin;
  * a Deployment scaled by an HPA or a ScaledObject has no spec.replicas,
    and min <= max;
  * the ScaledObject has exactly one redis-streams trigger per command stream
    REDIS_PREFIX + "cmd:" + 0..STREAM_SHARDS-1, consumer group "workers",
    scaling on the group's lag (`lagCount`),
    maxReplicaCount <= STREAM_SHARDS, and its TriggerAuthentication exists;
  * Services, PDBs, ServiceMonitors and PodMonitors select pods that exist,
    and their named ports exist;
  * a default-deny NetworkPolicy is present.
Exits non-zero on any failure.
"""

import sys

import yaml

SHARD_GROUP = "workers"
DRAIN_MARGIN_SECONDS = 5


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def matches(selector, labels):
    want = (selector or {}).get("matchLabels") or {}
    if not want:
        return False
    return all(labels.get(k) == v for k, v in want.items())


def check(path):
    docs = load(path)
    errors, notes = [], []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    def named(kind, name):
        return next((d for d in by_kind.get(kind, []) if d["metadata"]["name"] == name), None)

    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in by_kind.get("ConfigMap", [])}
    secrets = {d["metadata"]["name"]: {**(d.get("data") or {}), **(d.get("stringData") or {})}
               for d in by_kind.get("Secret", [])}
    external_secrets = set()
    # ConfigMap name -> keys some container reads; ALL_KEYS when one takes the
    # whole map (envFrom, or a volume without items).
    configmap_reads = {}
    ALL_KEYS = None

    def reads(name, key=ALL_KEYS):
        if key is ALL_KEYS:
            configmap_reads[name] = ALL_KEYS
        elif configmap_reads.get(name, set()) is not ALL_KEYS:
            configmap_reads.setdefault(name, set()).add(key)

    workloads = [d for k in ("Deployment", "StatefulSet", "Job") for d in by_kind.get(k, [])]
    pods = []  # (workload, pod labels, containers)
    for w in workloads:
        ident = f"{w['kind']}/{w['metadata']['name']}"
        tpl = w["spec"]["template"]
        spec = tpl["spec"]
        pods.append((w, tpl["metadata"].get("labels") or {}, spec["containers"]))
        for c in spec["containers"] + (spec.get("initContainers") or []):
            for env in c.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
                if ref:
                    reads(ref["name"], ref["key"])
            for src in c.get("envFrom") or []:
                if "configMapRef" in src:
                    reads(src["configMapRef"]["name"])
        for vol in spec.get("volumes") or []:
            sources = [vol] + list((vol.get("projected") or {}).get("sources") or [])
            for src in sources:
                cm = src.get("configMap")
                if cm is None:
                    continue
                if cm.get("items"):
                    for item in cm["items"]:
                        reads(cm["name"], item["key"])
                else:
                    reads(cm["name"])
        psc = spec.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True:
            errors.append(f"{ident}: pod securityContext.runAsNonRoot is not true")
        for c in spec["containers"]:
            cid = f"{ident} container {c['name']}"
            csc = c.get("securityContext") or {}
            seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp != "RuntimeDefault":
                errors.append(f"{cid}: seccompProfile is not RuntimeDefault")
            if csc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{cid}: allowPrivilegeEscalation is not false")
            if csc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{cid}: readOnlyRootFilesystem is not true")
            if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
                errors.append(f"{cid}: capabilities do not drop ALL")
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(part) or {}):
                        errors.append(f"{cid}: no {part}.{r}")
            port_names = {p.get("name") for p in c.get("ports") or []}
            if w["kind"] != "Job":
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe not in c:
                        errors.append(f"{cid}: no {probe}")
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                p = c.get(probe) or {}
                port = (p.get("httpGet") or p.get("tcpSocket") or {}).get("port")
                if isinstance(port, str) and port not in port_names:
                    errors.append(f"{cid}: {probe} port {port!r} is not a declared container port")
            for env in c.get("env") or []:
                src = env.get("valueFrom") or {}
                if "configMapKeyRef" in src:
                    ref = src["configMapKeyRef"]
                    if ref["name"] not in configmaps:
                        errors.append(f"{cid}: env {env['name']}: ConfigMap {ref['name']} is not rendered")
                    elif ref["key"] not in configmaps[ref["name"]]:
                        errors.append(f"{cid}: env {env['name']}: key {ref['key']} not in ConfigMap {ref['name']}")
                if "secretKeyRef" in src:
                    ref = src["secretKeyRef"]
                    if ref["name"] not in secrets:
                        external_secrets.add((ref["name"], ref["key"]))
                    elif ref["key"] not in secrets[ref["name"]]:
                        errors.append(f"{cid}: env {env['name']}: key {ref['key']} not in Secret {ref['name']}")

    # Gateway drain budget.
    gateway = named("Deployment", "chat-gateway")
    if gateway is None:
        errors.append("Deployment/chat-gateway is missing")
    else:
        spec = gateway["spec"]["template"]["spec"]
        c = spec["containers"][0]
        cmd = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
        sleep = int(cmd[-1]) if cmd and cmd[0].endswith("sleep") else 0
        drain_ref = next((e["valueFrom"]["configMapKeyRef"] for e in c.get("env") or []
                          if e["name"] == "DRAIN_SECONDS" and "valueFrom" in e), None)
        drain = int(configmaps.get(drain_ref["name"], {}).get("DRAIN_SECONDS", 0)) if drain_ref else 0
        grace = spec.get("terminationGracePeriodSeconds", 30)
        if sleep <= 0:
            errors.append("Deployment/chat-gateway: no preStop sleep")
        if drain <= 0:
            errors.append("Deployment/chat-gateway: DRAIN_SECONDS not set from the ConfigMap")
        if grace <= sleep + drain + DRAIN_MARGIN_SECONDS:
            errors.append(f"Deployment/chat-gateway: terminationGracePeriodSeconds {grace} <= preStop {sleep} "
                          f"+ DRAIN_SECONDS {drain} + margin {DRAIN_MARGIN_SECONDS}")
        else:
            notes.append(f"gateway grace {grace}s > preStop {sleep}s + drain {drain}s + {DRAIN_MARGIN_SECONDS}s")

    # Autoscaled Deployments.
    scalers = []
    for h in by_kind.get("HorizontalPodAutoscaler", []):
        scalers.append((h, h["spec"]["scaleTargetRef"]["name"], h["spec"].get("minReplicas", 1), h["spec"]["maxReplicas"]))
    for s in by_kind.get("ScaledObject", []):
        scalers.append((s, s["spec"]["scaleTargetRef"]["name"], s["spec"].get("minReplicaCount", 0),
                        s["spec"].get("maxReplicaCount", 100)))
    for obj, target, lo, hi in scalers:
        ident = f"{obj['kind']}/{obj['metadata']['name']}"
        dep = named("Deployment", target)
        if dep is None:
            errors.append(f"{ident}: target Deployment/{target} is not rendered")
        elif "replicas" in dep["spec"]:
            errors.append(f"Deployment/{target}: spec.replicas is set but {ident} owns the replica count")
        if lo > hi:
            errors.append(f"{ident}: min {lo} > max {hi}")

    # KEDA triggers <-> command streams.
    for s in by_kind.get("ScaledObject", []):
        ident = f"ScaledObject/{s['metadata']['name']}"
        dep = named("Deployment", s["spec"]["scaleTargetRef"]["name"])
        cm = {}
        if dep is not None:
            for e in dep["spec"]["template"]["spec"]["containers"][0].get("env") or []:
                ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
                if ref and e["name"] in ("REDIS_PREFIX", "STREAM_SHARDS"):
                    cm[e["name"]] = configmaps.get(ref["name"], {}).get(ref["key"])
        prefix, shards = cm.get("REDIS_PREFIX"), cm.get("STREAM_SHARDS")
        if prefix is None or shards is None:
            errors.append(f"{ident}: cannot find REDIS_PREFIX/STREAM_SHARDS of its target")
            continue
        shards = int(shards)
        want = {f"{prefix}cmd:{i}" for i in range(shards)}
        triggers = [t for t in s["spec"]["triggers"] if t["type"] == "redis-streams"]
        have = [t["metadata"].get("stream") for t in triggers]
        if sorted(have) != sorted(want):
            missing, extra = sorted(want - set(have)), sorted(set(have) - want)
            dup = sorted({x for x in have if have.count(x) > 1})
            errors.append(f"{ident}: redis-streams triggers do not cover the {shards} command streams exactly "
                          f"(missing {missing}, unexpected {extra}, duplicated {dup})")
        for t in triggers:
            if "lagCount" not in t["metadata"] or "pendingEntriesCount" in t["metadata"]:
                errors.append(f"{ident}: trigger for {t['metadata'].get('stream')} must scale on lagCount alone "
                              f"(the pending list stays under one read's 256 entries whatever the backlog)")
            if t["metadata"].get("consumerGroup") != SHARD_GROUP:
                errors.append(f"{ident}: trigger for {t['metadata'].get('stream')} uses consumer group "
                              f"{t['metadata'].get('consumerGroup')!r}, not {SHARD_GROUP!r}")
            auth = (t.get("authenticationRef") or {}).get("name")
            if auth and named("TriggerAuthentication", auth) is None:
                errors.append(f"{ident}: authenticationRef {auth} is not rendered")
            env = t["metadata"].get("addressFromEnv")
            if env and dep is not None:
                names = {e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0].get("env") or []}
                if env not in names:
                    errors.append(f"{ident}: addressFromEnv {env} is not an env var of the target container")
        if s["spec"].get("maxReplicaCount", 100) > shards:
            errors.append(f"{ident}: maxReplicaCount {s['spec'].get('maxReplicaCount', 100)} > STREAM_SHARDS {shards}: "
                          "the extra workers would own no shard")
        notes.append(f"{len(triggers)} redis-streams triggers = {shards} shards of {prefix}cmd:*")
    for ta in by_kind.get("TriggerAuthentication", []):
        for ref in ta["spec"].get("secretTargetRef") or []:
            if ref["name"] in secrets:
                if ref["key"] not in secrets[ref["name"]]:
                    errors.append(f"TriggerAuthentication/{ta['metadata']['name']}: key {ref['key']} not in "
                                  f"Secret {ref['name']}")
            else:
                external_secrets.add((ref["name"], ref["key"]))

    # Selectors and named ports.
    def pods_for(selector):
        return [(w, labels, cs) for w, labels, cs in pods if matches(selector, labels)]

    for svc in by_kind.get("Service", []):
        ident = f"Service/{svc['metadata']['name']}"
        sel = {"matchLabels": svc["spec"].get("selector") or {}}
        selected = pods_for(sel)
        if not selected:
            errors.append(f"{ident}: selects no pods")
        for p in svc["spec"].get("ports") or []:
            tp = p.get("targetPort")
            if isinstance(tp, str):
                for w, _, cs in selected:
                    if tp not in {q.get("name") for c in cs for q in c.get("ports") or []}:
                        errors.append(f"{ident}: targetPort {tp!r} is not a port of {w['kind']}/{w['metadata']['name']}")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if not pods_for(pdb["spec"].get("selector")):
            errors.append(f"PodDisruptionBudget/{pdb['metadata']['name']}: selects no pods")
    for sm in by_kind.get("ServiceMonitor", []):
        ident = f"ServiceMonitor/{sm['metadata']['name']}"
        svcs = [s for s in by_kind.get("Service", [])
                if matches(sm["spec"].get("selector"), s["metadata"].get("labels") or {})]
        if not svcs:
            errors.append(f"{ident}: selects no Service (by the Service's labels)")
        for ep in sm["spec"].get("endpoints") or []:
            for s in svcs:
                if ep.get("port") and ep["port"] not in {p.get("name") for p in s["spec"].get("ports") or []}:
                    errors.append(f"{ident}: port {ep['port']!r} is not a port of Service/{s['metadata']['name']}")
    for pm in by_kind.get("PodMonitor", []):
        ident = f"PodMonitor/{pm['metadata']['name']}"
        selected = pods_for(pm["spec"].get("selector"))
        if not selected:
            errors.append(f"{ident}: selects no pods")
        for ep in pm["spec"].get("podMetricsEndpoints") or []:
            for w, _, cs in selected:
                if ep.get("port") and ep["port"] not in {q.get("name") for c in cs for q in c.get("ports") or []}:
                    errors.append(f"{ident}: port {ep['port']!r} is not a container port of {w['metadata']['name']}")

    # ConfigMap keys no container reads.
    unread_maps = 0
    for name, data in sorted(configmaps.items()):
        read = configmap_reads.get(name, set())
        if read is ALL_KEYS:
            continue
        unread = sorted(set(data) - read)
        if unread:
            unread_maps += 1
            errors.append(f"ConfigMap/{name}: no container reads {', '.join(unread)}: add a configMapKeyRef "
                          "to the Deployment (or Job) whose process uses it")
    if configmaps and not unread_maps:
        notes.append(f"every key of {len(configmaps)} ConfigMap(s) read by a container")

    if not any(np["spec"].get("podSelector") == {} and not np["spec"].get("ingress") and not np["spec"].get("egress")
               and set(np["spec"].get("policyTypes") or []) >= {"Ingress", "Egress"}
               for np in by_kind.get("NetworkPolicy", [])):
        errors.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")

    for e in errors:
        print(f"  ERROR {path}: {e}")
    ext = ", ".join(f"{n}.{k}" for n, k in sorted(external_secrets))
    ext_note = f"; expects out-of-band Secret keys: {ext}" if ext else ""
    print(f"{path}: {len(docs)} objects, {len(errors)} invariant violation(s); {'; '.join(notes)}{ext_note}")
    return not errors


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    ok = all([check(p) for p in sys.argv[1:]])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
