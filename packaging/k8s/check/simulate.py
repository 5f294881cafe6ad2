#!/usr/bin/env python3
"""A cluster stand-in for the base manifests, on one machine with podman.

Renders packaging/k8s/base, then runs the StatefulSet's three pods as podman
containers exactly as rendered (image, args, env, user and fsGroup,
read-only root, capabilities dropped, no new privileges, the default seccomp
profile, the volumes, the init container's script), the router's rendered
haproxy.cfg on the host, and a small DNS server standing in for the
headless Service (wes-N.wes-headless.<ns>.svc.cluster.local). Then checks:

  - the router answers /healthz and hides /metrics and /readyz;
  - each tenant (the two of the tenants file and 12 more added here) lands on
    exactly one pod, and on the same one every time;
  - replacing a pod (a new container with a new address, as a StatefulSet
    does) leaves every tenant where it was; while it is gone its tenants get
    503 and the others are unaffected;
  - SIGTERM with a command running drains for --shutdown-grace.

Needs podman, haproxy, kubectl, the server image (IMAGE, default
localhost/wasm-exec-server:0.1.0: packaging/docker/run-example.sh --prebuilt
builds it as wasm-exec-server:example; tag it), the server binary for its
`exec` client (WES_BINARY), and Python with PyYAML and dnslib. Extra podman
run arguments (PODMAN_RUN_ARGS) are for hosts that need them, e.g.
"--cgroups=disabled --ulimit nofile=20000:20000 --ulimit nproc=4096:4096".
Uses ports 5353 (DNS) and 8080 (router) on 127.0.0.1. Run as root.
"""
import base64, hashlib, os, shlex, shutil, socket, subprocess, sys, tempfile, time

import yaml
from dnslib import A, QTYPE, RR
from dnslib.server import BaseResolver, DNSLogger, DNSServer

HERE = os.path.dirname(os.path.abspath(__file__))
NS = "wes-sim"
IMAGE = os.environ.get("IMAGE", "localhost/wasm-exec-server:0.1.0")
BIN = os.environ.get("WES_BINARY", "wasm-exec-server")
EXTRA = shlex.split(os.environ.get("PODMAN_RUN_ARGS", ""))
WORK = tempfile.mkdtemp(prefix="wes-sim-")
FAILED = []


def sh(*a, check=True):
    r = subprocess.run(list(a), capture_output=True, text=True)
    if check and r.returncode:
        sys.exit(f"failed: {shlex.join(a)}\n{r.stdout}{r.stderr}")
    return r


def check(what, ok):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        FAILED.append(what)


rendered = sh("kubectl", "kustomize", os.path.join(HERE, "..", "base")).stdout
docs = [d for d in yaml.safe_load_all(rendered) if d]
find = lambda kind, prefix: next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(prefix))
pod = find("StatefulSet", "wes")["spec"]["template"]["spec"]
init, srv = pod["initContainers"][0], pod["containers"][0]
tenants = base64.b64decode(find("Secret", "wes-tenants")["data"]["tenants.toml"]).decode()
haproxy_cfg = find("ConfigMap", "wes-router")["data"]["haproxy.cfg"]

TOKENS = {"alice": "test", "bob": "test2"}  # the example file's tokens
for i in range(12):
    TOKENS[f"t{i}"] = f"tok{i}"
    tenants += (f'\n[[tenant]]\nid = "t{i}"\n'
                f'token_sha256 = "{hashlib.sha256(f"tok{i}".encode()).hexdigest()}"\n'
                f'root = "/srv/tenants/t{i}"\n')
os.makedirs(f"{WORK}/secret")
with open(f"{WORK}/secret/tenants.toml", "w") as f:
    f.write(tenants)
os.chown(f"{WORK}/secret/tenants.toml", 0, pod["securityContext"]["fsGroup"])
os.chmod(f"{WORK}/secret/tenants.toml", 0o440)


def security(c):
    ps, cs = pod["securityContext"], c["securityContext"]
    a = ["--user", f'{ps["runAsUser"]}:{ps["runAsGroup"]}', "--group-add", str(ps["fsGroup"])]
    a += ["--read-only"] if cs["readOnlyRootFilesystem"] else []
    a += ["--cap-drop=ALL"] if cs["capabilities"]["drop"] == ["ALL"] else []
    a += ["--security-opt", "no-new-privileges"] if not cs["allowPrivilegeEscalation"] else []
    return a


def mounts(c, n):
    src = {"tenant-roots": f"{WORK}/pod-{n}/roots", "cache": f"{WORK}/pod-{n}/cache",
           "tmp": f"{WORK}/pod-{n}/tmp", "tenants": f"{WORK}/secret"}
    return sum((["-v", f'{src[m["name"]]}:{m["mountPath"]}' + (":ro" if m.get("readOnly") else "")]
                for m in c["volumeMounts"]), [])


def start_pod(n):
    name = f"wes-{n}"
    sh("podman", "rm", "-f", name, check=False)
    # As Kubernetes lays them out with fsGroup: the volume (kept) and fresh
    # emptyDirs, root-owned, group fsGroup, setgid, group-writable.
    for v in ("roots", "cache", "tmp"):
        p = f"{WORK}/pod-{n}/{v}"
        if v != "roots":
            shutil.rmtree(p, ignore_errors=True)
        os.makedirs(p, exist_ok=True)
        os.chown(p, 0, pod["securityContext"]["fsGroup"])
        os.chmod(p, 0o2775 if v == "roots" else 0o2777)
    r = sh("podman", "run", "--rm", *EXTRA, *security(init), *mounts(init, n),
           "--entrypoint", init["command"][0], IMAGE, *init["command"][1:], check=False)
    check(f"init container of {name} exits 0", r.returncode == 0)
    env = sum((["-e", f'{e["name"]}={e["value"]}'] for e in srv.get("env", [])), [])
    sh("podman", "run", "-d", "--name", name, *EXTRA, *security(srv), *mounts(srv, n), *env, IMAGE, *srv["args"])
    return sh("podman", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name).stdout.strip()


ADDR = {}


class Headless(BaseResolver):
    def resolve(self, request, handler):
        reply = request.reply()
        for n, ip in ADDR.items():
            if ip and str(request.q.qname).rstrip(".") == f"wes-{n}.wes-headless.{NS}.svc.cluster.local":
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(ip), ttl=5))
        if not reply.rr:
            reply.header.rcode = 3  # NXDOMAIN, as for a pod that is gone
        return reply


def ready(ip):
    try:
        with socket.create_connection((ip, 8765), 1) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def wait_ready(ips):
    for _ in range(180):
        if all(ready(ip) for ip in ips):
            return True
        time.sleep(1)
    return False


def router(path):
    with socket.create_connection(("127.0.0.1", 8080), 2) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return s.recv(100).split(b"\r\n")[0].decode()


def run(token, line, url="ws://127.0.0.1:8080", timeout=90):
    return subprocess.run([BIN, "exec", "--url", url, "--", line], env=dict(os.environ, WES_TOKEN=token),
                          capture_output=True, text=True, timeout=timeout)


def placement():
    return {t: [n for n in range(3) if os.path.exists(f"{WORK}/pod-{n}/roots/{t}/marker")] for t in TOKENS}


def main():
    for n in range(3):
        ADDR[n] = start_pod(n)
    print("pods:", ADDR)
    check("every pod ready", wait_ready(ADDR.values()))
    with open(f"{WORK}/haproxy.cfg", "w") as f:  # the one change: our resolver
        f.write(haproxy_cfg.replace("parse-resolv-conf", "nameserver sim 127.0.0.1:5353"))
    hap = subprocess.Popen(["haproxy", "-db", "-f", f"{WORK}/haproxy.cfg"],
                           env=dict(os.environ, NAMESPACE=NS, CLUSTER_DOMAIN="cluster.local"),
                           stdout=open(f"{WORK}/haproxy.log", "w"), stderr=subprocess.STDOUT)
    try:
        time.sleep(12)  # the router resolves its servers (hold valid 10s)
        check("router /healthz 200", router("/healthz").endswith("200 OK"))
        check("router hides /metrics and /readyz",
              router("/metrics").endswith("404 Not Found") and router("/readyz").endswith("404 Not Found"))
        for t, tok in TOKENS.items():
            for _ in range(3):
                r = run(tok, "echo x >> marker")
                if r.returncode:
                    check(f"{t}: command through the router", False)
        first = placement()
        print("tenant -> pod:", {t: v[0] if len(v) == 1 else v for t, v in first.items()})
        check("each tenant on exactly one pod, every time", all(len(v) == 1 for v in first.values()))
        check("all 3 runs of each tenant reached its files",
              all(run(tok, "wc -l < marker").stdout.strip() == "3" for tok in TOKENS.values()))
        print("tenants per pod:", {n: sum(v == [n] for v in first.values()) for n in range(3)})

        # Replace wes-1: gone for a while, then back at another address.
        on1 = [t for t, v in first.items() if v == [1]]
        sh("podman", "stop", "-t", "60", "wes-1")
        sh("podman", "rm", "-f", "wes-1")
        old, ADDR[1] = ADDR[1], None
        if on1:
            r = run(TOKENS[on1[0]], "true")
            check(f"{on1[0]} (on wes-1) gets 503 while wes-1 is gone", "503" in r.stderr)
        check("the other tenants are unaffected",
              all(run(TOKENS[t], "true").returncode == 0 for t in TOKENS if t not in on1))
        ADDR[1] = start_pod(1)
        print(f"wes-1 replaced: {old} -> {ADDR[1]}")
        check("wes-1 ready again", wait_ready([ADDR[1]]))
        time.sleep(12)
        for tok in TOKENS.values():
            run(tok, "echo x >> marker")
        check("every tenant still on its pod after the replacement", placement() == first)

        # Drain: SIGTERM while a command runs.
        grace = srv["args"][srv["args"].index("--shutdown-grace") + 1]
        t0 = next(t for t, v in first.items() if v == [0])
        p = subprocess.Popen([BIN, "exec", "--url", f"ws://{ADDR[0]}:8765", "--", "sleep 300"],
                             env=dict(os.environ, WES_TOKEN=TOKENS[t0]),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)
        start = time.time()
        sh("podman", "stop", "-t", str(pod["terminationGracePeriodSeconds"]), "wes-0")
        took = time.time() - start
        status = p.wait(timeout=30)
        check(f"SIGTERM drains: wes-0 stopped after {took:.1f} s (--shutdown-grace {grace}), "
              f"the running command ended with {status}", status == 137 and took < pod["terminationGracePeriodSeconds"])
    finally:
        hap.terminate()
        hap.wait()


if __name__ == "__main__":
    dns = DNSServer(Headless(), port=5353, address="127.0.0.1", logger=DNSLogger("-request,-reply,-truncated,-data,-recv,-send"))
    dns.start_thread()
    try:
        main()
    finally:
        dns.stop()
        for n in range(3):
            sh("podman", "rm", "-f", "-t", "0", f"wes-{n}", check=False)
        shutil.rmtree(WORK, ignore_errors=True)
    print(f"{len(FAILED)} failed" if FAILED else "all checks passed")
    sys.exit(1 if FAILED else 0)
