#!/usr/bin/env python3
"""Issue 5's proxy benchmark, driven by bench/proxy.sh against a running
`atoll playground` (cluster `demo`, z1 proxy on 127.0.0.11:6033).

One run, one cluster, three paths to the writer:
  direct   127.0.0.11:3306 (the writer node itself)
  atoll    127.0.0.11:6033 (the z1 `atoll proxy`, started by its agent)
  haproxy  127.0.0.1:7306  (our own HAProxy process, TCP mode, one active
           server and the other two as backups)

1. sysbench oltp_point_select and oltp_read_write, interleaved
   (direct, atoll, haproxy, direct, ...), --rounds times; medians of TPS,
   QPS, p95, and each proxy's CPU per query (/proc/PID/stat).
2. RSS of each proxy with --conns authenticated idle client connections.
3. Writer failover: --trials SIGKILLs of the writer's mariadbd while one
   write loop runs through each proxy (same kill for both) and one writes
   directly on a surviving node (the Galera stall on its own).

Writes a Markdown section to --section and the raw numbers to --raw.
"""

import argparse
import datetime
import json
import math
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mysqlmini  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
NODES = ["demo-1", "demo-2", "demo-3"]
NODE_ADDR = {"demo-1": "127.0.0.11", "demo-2": "127.0.0.12", "demo-3": "127.0.0.13"}
ATOLL_RW = ("127.0.0.11", 6033)
ATOLL_ADMIN = "http://127.0.0.11:6035"
DIRECT = ("127.0.0.11", 3306)
HAP_PORT = {"demo-1": 7306, "demo-2": 7307, "demo-3": 7308}  # listen whose active server is that node
CHECK_USER = "haproxy_check"


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------- processes

def cpu_split(pid):
    """(utime, stime) in clock ticks: fields 14 and 15 of /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def cpu_ticks(pid):
    return sum(cpu_split(pid))


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def rss_kib(pid, key="VmRSS"):
    return int(proc_status(pid)[key].split()[0])


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Ctx:
    def __init__(self, a):
        self.a = a
        self.env = dict(os.environ)
        self.proxy_dir = os.path.join(a.pgdir, "agent-host1", "proxies", "demo__demo-proxy-z1")
        self.proxy_log = os.path.join(self.proxy_dir, "proxy.log")
        self.hap = None
        self.odd = []  # things worth telling the lead
        self.proxy_log_start = 0
        self.idle = {}

    # -- atoll
    def atoll(self, *args):
        r = subprocess.run([self.a.atoll, *args], capture_output=True, text=True, env=self.env, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"atoll {' '.join(args)} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
        return r.stdout

    def cluster(self):
        return json.loads(self.atoll("cluster", "show", "demo", "--json"))

    def servers(self, c=None):
        c = c or self.cluster()
        return {s["name"]: s for z in c["zones"] for s in z["servers"]}

    def proxy_pid(self):
        with open(os.path.join(self.proxy_dir, "proxy.pid")) as f:
            pid = int(f.read().split()[0])
        cl = cmdline(pid)
        if "proxy" not in cl or "--cluster demo" not in cl or "127.0.0.11:6033" not in cl:
            raise RuntimeError(f"proxy.pid names {pid}, which is not the z1 proxy of demo: {cl!r}")
        return pid

    def proxy_status(self):
        with urllib.request.urlopen(ATOLL_ADMIN + "/status", timeout=2) as r:
            return json.load(r)

    def proxy_metrics(self):
        with urllib.request.urlopen(ATOLL_ADMIN + "/metrics", timeout=2) as r:
            return r.read().decode()

    def proxy_log_since_start(self):
        try:
            with open(self.proxy_log, "rb") as f:
                f.seek(self.proxy_log_start)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # -- sql
    def sql(self, addr, q):
        c = mysqlmini.Conn(addr[0], addr[1], self.a.user, self.a.password, timeout=10)
        try:
            return c.query(q)
        finally:
            c.close()

    # -- haproxy
    def start_haproxy(self):
        cfg = os.path.join(self.a.work, "haproxy.cfg")
        sock = os.path.join(self.a.work, "haproxy.sock")
        lines = [
            "global",
            "  maxconn 8192",
            f"  stats socket {sock} mode 600 level admin",
            "defaults",
            "  mode tcp",
            "  retries 3",
            "  option redispatch",
            "  timeout connect 2s",
            "  timeout client 1h",
            "  timeout server 1h",
            "  timeout check 1s",
        ]
        for active, port in HAP_PORT.items():
            i = NODES.index(active)
            order = NODES[i:] + NODES[:i]  # active, then the backups in the cluster's order (as atoll fails over)
            lines += [
                f"listen rw-{active}",
                f"  bind 127.0.0.1:{port}",
                f"  option mysql-check user {CHECK_USER} post-41",
                "  default-server inter 200ms fall 3 rise 2 on-marked-down shutdown-sessions",
            ]
            for j, n in enumerate(order):
                lines.append(f"  server {n} {NODE_ADDR[n]}:3306 check" + (" backup" if j else ""))
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.hap_cfg = "\n".join(lines)
        subprocess.run(["haproxy", "-c", "-q", "-f", cfg], check=True)
        self.hap_log = open(os.path.join(self.a.work, "haproxy.log"), "w")
        self.hap = subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=self.hap_log, stderr=subprocess.STDOUT)
        with open(os.path.join(self.a.work, "haproxy.pid"), "w") as f:
            f.write(str(self.hap.pid))
        self.hap_sock = sock
        deadline = time.time() + 20
        while time.time() < deadline:
            time.sleep(0.3)
            try:
                if all(st == "UP" for st in self.hap_states().values()):
                    return
            except OSError:
                pass
        raise RuntimeError(f"HAProxy servers not all UP after 20 s: {self.hap_states()}")

    def hap_states(self):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect(self.hap_sock)
        s.sendall(b"show stat\n")
        data = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
        s.close()
        out = {}
        for line in data.decode().splitlines():
            f = line.split(",")
            if len(f) > 18 and f[1] not in ("FRONTEND", "BACKEND") and not line.startswith("#"):
                out[(f[0], f[1])] = f[17]
        return out

    def stop_haproxy(self):
        if self.hap and self.hap.poll() is None:
            self.hap.terminate()
            try:
                self.hap.wait(10)
            except subprocess.TimeoutExpired:
                self.hap.kill()
                self.hap.wait()


# ---------------------------------------------------------------- sysbench

def sysbench(ctx, test, path, seconds, perf_out=None):
    a = ctx.a
    host, port = {"direct": DIRECT, "atoll": ATOLL_RW, "haproxy": ("127.0.0.1", HAP_PORT["demo-1"])}[path]
    cmd = [
        "sysbench", test, "--db-driver=mysql", f"--mysql-host={host}", f"--mysql-port={port}",
        f"--mysql-user={a.user}", f"--mysql-password={a.password}", "--mysql-db=sbtest",
        f"--tables={a.tables}", f"--table-size={a.table_size}", f"--threads={a.threads}",
        f"--time={seconds}", "--percentile=95", "run",
    ]
    pids = {"atoll": ctx.proxy_pid(), "haproxy": ctx.hap.pid, "mariadbd": ctx.writer_db_pid}
    before = {k: cpu_split(p) for k, p in pids.items()}
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    perf = None
    if perf_out:
        perf = subprocess.Popen(["perf", "stat", "-x", ",", "-o", perf_out, "-e", ",".join(PERF_EVENTS),
                                 "-p", str(pids[path])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait()
    wall = time.time() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = {k: cpu_split(p) for k, p in pids.items()}
    out = r.stdout
    res = {"test": test, "path": path, "rc": r.returncode, "wall_s": wall}

    def grab(pattern, conv=float):
        m = re.search(pattern, out)
        return conv(m.group(1)) if m else None

    res["transactions"] = grab(r"transactions:\s+(\d+)", int)
    res["tps"] = grab(r"transactions:\s+\d+\s+\(([\d.]+) per sec")
    res["queries"] = grab(r"queries:\s+(\d+)", int)
    res["qps"] = grab(r"queries:\s+\d+\s+\(([\d.]+) per sec")
    res["p95_ms"] = grab(r"95th percentile:\s+([\d.]+)")
    res["errors"] = grab(r"ignored errors:\s+(\d+)", int)
    res["reconnects"] = grab(r"reconnects:\s+(\d+)", int)
    q = res["queries"] or 0
    for k in pids:
        du = (after[k][0] - before[k][0]) / CLK_TCK
        ds = (after[k][1] - before[k][1]) / CLK_TCK
        res[f"cpu_{k}_s"] = du + ds
        res[f"cpu_{k}_sys_share"] = ds / (du + ds) if du + ds else None
        res[f"cpu_{k}_us_per_q"] = (du + ds) / q * 1e6 if q else None
        if k in ctx.idle:  # minus what it burns with no clients over the same time
            res[f"cpu_{k}_net_us_per_q"] = max(0.0, du + ds - ctx.idle[k] / 1000 * wall) / q * 1e6 if q else None
    sb_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    res["cpu_sysbench_us_per_q"] = sb_cpu / q * 1e6 if q else None
    if r.returncode != 0 or res["tps"] is None:
        res["failure"] = (r.stdout[-1500:] + r.stderr[-1500:]).strip()
        ctx.odd.append(f"sysbench {test} via {path} failed (exit {r.returncode}): "
                       + res["failure"].replace("\n", " | ")[-600:])
    if res.get("reconnects"):
        ctx.odd.append(f"sysbench {test} via {path}: {res['reconnects']} reconnects ({res['errors']} ignored errors)")
    return res


def measure_idle(ctx, seconds=10):
    """CPU each proxy burns with no clients (health checks, routing watch), ms per second."""
    pids = {"atoll": ctx.proxy_pid(), "haproxy": ctx.hap.pid}
    c0 = {k: cpu_ticks(p) for k, p in pids.items()}
    t0 = time.time()
    time.sleep(seconds)
    return {k: (cpu_ticks(p) - c0[k]) / CLK_TCK / (time.time() - t0) * 1000 for k, p in pids.items()}


def phase_sysbench(ctx):
    a = ctx.a
    runs = []
    for rnd in range(1, a.rounds + 1):
        for test in ("oltp_point_select", "oltp_read_write"):
            for path in ("direct", "atoll", "haproxy"):
                r = sysbench(ctx, test, path, a.time)
                r["round"] = rnd
                runs.append(r)
                log(f"round {rnd} {test:18} {path:8} tps {r['tps']} p95 {r['p95_ms']} ms "
                    f"atoll {r['cpu_atoll_us_per_q'] or 0:.1f} us/q haproxy {r['cpu_haproxy_us_per_q'] or 0:.1f} us/q")
    return runs


PERF_EVENTS = ["raw_syscalls:sys_enter", "context-switches"] + [f"syscalls:sys_enter_{n}" for n in (
    "read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg",
    "epoll_wait", "epoll_pwait", "epoll_ctl", "futex", "sched_yield", "splice")]


def phase_perf(ctx):
    """Where each proxy's CPU goes under point selects: one extra 10 s run
    through each with perf counting its system calls and context switches."""
    out = {}
    for path in ("atoll", "haproxy"):
        f = os.path.join(ctx.a.work, f"perf-{path}.csv")
        try:
            r = sysbench(ctx, "oltp_point_select", path, 10, perf_out=f)
            counts = {}
            for line in open(f):
                parts = line.strip().split(",")
                if len(parts) > 2 and parts[0].replace(".", "").isdigit():
                    counts[parts[2].replace("syscalls:sys_enter_", "")] = float(parts[0])
            q = r["queries"] or 0
            out[path] = {"run": r, "per_query": {k: v / q for k, v in counts.items() if v and q}}
        except Exception as e:  # perf is optional
            out[path] = {"error": str(e)}
    return out


# ---------------------------------------------------------------- idle connections

def phase_rss(ctx):
    a = ctx.a
    out = {}
    idle = ctx.idle
    for name, (host, port), pid in (("atoll", ATOLL_RW, ctx.proxy_pid()), ("haproxy", ("127.0.0.1", HAP_PORT["demo-1"]), ctx.hap.pid)):
        time.sleep(1)
        r = {"idle_cpu_ms_per_s": idle.get(name),"rss_before_kib": rss_kib(pid), "threads_before": int(proc_status(pid)["Threads"])}
        conns, fails = [], []
        t0 = time.time()
        for _ in range(a.conns):
            try:
                conns.append(mysqlmini.Conn(host, port, a.user, a.password, timeout=10))
            except Exception as e:
                fails.append(str(e))
        r["open_s"] = time.time() - t0
        r["opened"] = len(conns)
        r["failed"] = len(fails)
        if fails:
            ctx.odd.append(f"{name}: {len(fails)} of {a.conns} idle connections failed, first: {fails[0]}")
        time.sleep(2)
        st = proc_status(pid)
        r["rss_kib"] = int(st["VmRSS"].split()[0])
        r["hwm_kib"] = int(st["VmHWM"].split()[0])
        r["threads"] = int(st["Threads"])
        r["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
        r["backend_threads_connected"] = int(ctx.sql(DIRECT, "SHOW GLOBAL STATUS LIKE 'Threads_connected'")[0][1])
        # the connections are alive: a sample answers
        alive = 0
        for c in conns[:: max(1, len(conns) // 20)]:
            try:
                c.query("SELECT 1")
                alive += 1
            except Exception as e:
                ctx.odd.append(f"{name}: an idle connection no longer answers: {e}")
        r["sample_alive"] = alive
        for c in conns:
            try:
                c.close()
            except Exception:
                pass
        time.sleep(3)
        r["rss_after_close_kib"] = rss_kib(pid)
        out[name] = r
        log(f"{name}: {len(conns)} idle connections: RSS {r['rss_before_kib'] / 1024:.1f} -> {r['rss_kib'] / 1024:.1f} MiB, "
            f"after close {r['rss_after_close_kib'] / 1024:.1f} MiB, threads {r['threads']}")
    return out


# ---------------------------------------------------------------- failover

class WriteLoop(threading.Thread):
    """One INSERT per statement, reconnecting on any error; records the
    time of every acknowledged write and of every successful connect."""

    def __init__(self, ctx, label, trial, addr, interval=0.005):
        super().__init__(daemon=True)
        self.interval = interval  # at most one write per interval: 200/s, enough resolution, little load
        self.ctx, self.label, self.trial, self.addr = ctx, label, trial, addr
        self.acks = []  # (t, seq)
        self.connects = []  # (t, node)
        self.errors = []  # (t, message)
        self.stop = threading.Event()

    def run(self):
        a = self.ctx.a
        conn, seq = None, 0
        nxt = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now < nxt:
                time.sleep(nxt - now)
            nxt = max(nxt + self.interval, time.monotonic() - self.interval)
            try:
                if conn is None:
                    conn = mysqlmini.Conn(self.addr[0], self.addr[1], a.user, a.password, timeout=10)
                    node = conn.query("SELECT @@wsrep_node_name")[0][0]
                    self.connects.append((time.monotonic(), node))
                    conn.settimeout(60)
                seq += 1
                conn.query(f"INSERT INTO sbtest.failover (loop_name, trial, seq) VALUES ('{self.label}', {self.trial}, {seq})")
                self.acks.append((time.monotonic(), seq))
            except Exception as e:
                self.errors.append((time.monotonic(), f"{type(e).__name__}: {e}"))
                if conn is not None:
                    try:
                        conn.sock.close()
                    except OSError:
                        pass
                conn = None
                time.sleep(0.005)
        if conn is not None:
            conn.close()

    def analyse(self, t_kill, window, restart):
        before = [t for t, _ in self.acks if t < t_kill]
        after = [t for t, _ in self.acks if t >= t_kill]
        r = {"acks": len(self.acks), "errors": len([1 for t, _ in self.errors if t >= t_kill])}
        # The longest wait between acknowledged writes, from the last one
        # before the kill to the end of the window (a write already ordered
        # may still be acknowledged just after the kill, before the stall).
        ts = ([before[-1]] if before else []) + [t for t in after if t <= t_kill + window]
        gaps = [(b - x, x - t_kill) for x, b in zip(ts, ts[1:])]
        if after and after[0] > t_kill + window:
            gaps.append((after[0] - ts[-1], ts[-1] - t_kill))
        # The failover: gaps that begin before the agent restarts the victim
        # (after that, the rejoin stalls the whole cluster, proxies or not).
        cut = restart if restart is not None else window
        r["wait_s"], r["wait_starts_s"] = max(((g, at) for g, at in gaps if at < cut), default=(None, None))
        r["window_wait_s"] = max((g for g, _ in gaps), default=None)
        r["rejoin_wait_s"] = max((g for g, at in gaps if at >= cut), default=0.0)
        r["gaps"] = [(round(g, 3), round(at, 3)) for g, at in gaps if g > 0.1]
        conn_after = [(t, n) for t, n in self.connects if t >= t_kill]
        r["first_connect_s"] = (conn_after[0][0] - t_kill) if conn_after else None
        r["node_after"] = conn_after[0][1] if conn_after else (self.connects[-1][1] if self.connects else None)
        r["node_before"] = next((n for t, n in reversed(self.connects) if t < t_kill), None)
        r["first_ack_s"] = (after[0] - t_kill) if after else None
        msgs = {}
        for t, m in self.errors:
            if t >= t_kill:
                key = re.sub(r"\d+\.\d+\.\d+\.\d+:\d+", "ADDR", m)[:120]
                msgs[key] = msgs.get(key, 0) + 1
        r["error_kinds"] = msgs
        r["errors_at_s"] = [round(t - t_kill, 2) for t, _ in self.errors if t >= t_kill][:12]
        return r


def watch_restart(ctx, node, old_pid, t_kill, found, stop):
    """Sets found[0] to the seconds from the kill to the moment a new
    `mariadbd` of `node` exists (the agent's restart: the rejoin begins)."""
    mark = f"{ctx.a.pgdir}/db/demo/{node}/"
    while not stop.is_set():
        for d in os.listdir("/proc"):
            if d.isdigit() and int(d) != old_pid:
                cl = cmdline(int(d))
                if mark in cl and "--wsrep-recover" not in cl and (cl.startswith("mariadbd") or "/mariadbd " in cl):
                    found[0] = time.monotonic() - t_kill
                    return
        time.sleep(0.05)


def wait_stable(ctx, timeout=120):
    """All three servers Synced with their agent, the atoll proxy sees them
    all healthy and agrees on the writer, HAProxy has every server UP."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            c = ctx.cluster()
            sv = ctx.servers(c)
            st = ctx.proxy_status()
            hs = ctx.hap_states()
            ok = (
                all(s["state"] == "synced" for s in sv.values())
                and all(b["writable"] for b in st["backends"])
                and st["writer_in_use"] == c["writer"]
                and all(v == "UP" for v in hs.values())
            )
            last = (c["writer"], {n: s["state"] for n, s in sv.items()}, st["writer_in_use"],
                    {b["name"]: b["detail"] for b in st["backends"]}, {k[1]: v for k, v in hs.items() if v != "UP"})
            if ok:
                return c
        except Exception as e:
            last = repr(e)
        time.sleep(0.25)
    raise RuntimeError(f"cluster not stable after {timeout} s: {last}")


def phase_failover(ctx):
    a = ctx.a
    ctx.sql(DIRECT, "CREATE TABLE IF NOT EXISTS sbtest.failover (loop_name VARCHAR(16) NOT NULL, trial INT NOT NULL, "
                    "seq INT NOT NULL, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (loop_name, trial, seq))")
    trials = []
    kills = {n: [] for n in NODES}
    acked = {}
    planned = 0
    try:
        log_from = os.path.getsize(ctx.proxy_log)
    except OSError:
        log_from = 0
    for trial in range(1, a.trials + 1):
        c = wait_stable(ctx)
        # Victims in turn (demo-1, demo-2, demo-3, ...), so no node is killed
        # often enough to trip the agent's crash-loop limit: when the writer
        # is not the next victim, a planned move (`atoll cluster set-writer`)
        # makes it the writer first.
        want = NODES[(trial - 1) % 3]
        for _ in range(3):
            if c["writer"] == want:
                break
            ctx.atoll("cluster", "set-writer", "demo", want)
            planned += 1
            time.sleep(0.5)
            c = wait_stable(ctx)
        writer = c["writer"]
        # Never a 5th kill of one node within the agent's 300 s crash window.
        recent = [t for t in kills[writer] if time.time() - t < 305]
        if len(recent) >= 4:
            pause = 305 - (time.time() - recent[0])
            log(f"trial {trial}: waiting {pause:.0f} s so {writer} is not killed a 5th time within 300 s")
            ctx.odd.append(f"failover trial {trial}: paused {pause:.0f} s to stay under the agent's crash-loop limit")
            time.sleep(pause)
            c = wait_stable(ctx)
            writer = c["writer"]
        victim_pid = ctx.servers(c)[writer]["status"]["pid"]
        if "mariadbd" not in cmdline(victim_pid) or f"/{writer}/" not in cmdline(victim_pid):
            raise RuntimeError(f"pid {victim_pid} does not look like {writer}'s mariadbd: {cmdline(victim_pid)!r}")
        i = NODES.index(writer)
        survivor = NODES[(i + 2) % 3]  # neither the victim nor the next writer
        loops = {
            "atoll": WriteLoop(ctx, "atoll", trial, ATOLL_RW),
            "haproxy": WriteLoop(ctx, "haproxy", trial, ("127.0.0.1", HAP_PORT[writer])),
            "galera": WriteLoop(ctx, "galera", trial, (NODE_ADDR[survivor], 3306)),
        }
        for lp in loops.values():
            lp.start()
        t_start = time.monotonic()
        while time.monotonic() - t_start < 10 and not all(len(lp.acks) > 20 for lp in loops.values()):
            time.sleep(0.05)
        time.sleep(a.steady)
        for name in ("atoll", "haproxy"):
            node = loops[name].connects[-1][1] if loops[name].connects else None
            if node != writer:
                ctx.odd.append(f"failover trial {trial}: the {name} loop writes on {node}, not on the writer {writer}")
        st0 = ctx.proxy_status()
        t_kill = time.monotonic()
        wall_kill = time.time()
        os.kill(victim_pid, signal.SIGKILL)
        kills[writer].append(wall_kill)
        restart, restart_stop = [None], threading.Event()
        watcher = threading.Thread(target=watch_restart, args=(ctx, writer, victim_pid, t_kill, restart, restart_stop), daemon=True)
        watcher.start()
        # the loops write on for the window (restart and rejoin start inside it),
        # or until every loop has written again if that takes longer
        t_rejoin = None
        while time.monotonic() < t_kill + 60:
            if t_rejoin is None:
                s = ctx.servers()[writer]
                if s["state"] == "synced" and s["status"]["pid"] not in (None, victim_pid):
                    t_rejoin = time.monotonic() - t_kill
            if time.monotonic() >= t_kill + a.window and all(any(t > t_kill for t, _ in lp.acks) for lp in loops.values()):
                break
            time.sleep(0.2)
        for lp in loops.values():
            lp.stop.set()
        for lp in loops.values():
            lp.join(70)
        st1 = ctx.proxy_status()
        # the victim restarted by its agent and Synced again
        while t_rejoin is None and time.monotonic() < t_kill + 180:
            s = ctx.servers()[writer]
            if s["state"] == "synced" and s["status"]["pid"] not in (None, victim_pid):
                t_rejoin = time.monotonic() - t_kill
                break
            time.sleep(0.2)
        restart_stop.set()
        watcher.join(5)
        if t_rejoin is None:
            ctx.odd.append(f"failover trial {trial}: {writer} was not Synced again within 180 s of the kill")
        res = {"trial": trial, "victim": writer, "victim_pid": victim_pid, "survivor_direct": survivor,
               "rejoin_s": t_rejoin, "restart_s": restart[0], "atoll_switches": st1["writer_switches"] - st0["writer_switches"],
               "atoll_writer_after": st1["writer_in_use"]}
        for name, lp in loops.items():
            res[name] = lp.analyse(t_kill, a.window, restart[0] if restart[0] is not None and restart[0] < a.window else None)
            acked.setdefault(name, set()).update((trial, s) for _, s in lp.acks)
        trials.append(res)
        log(f"trial {trial}: killed {writer} (pid {victim_pid}); wait for an acknowledged write: "
            f"atoll {res['atoll']['wait_s'] or -1:.3f} s (connected after {res['atoll']['first_connect_s'] or -1:.3f} s, to {res['atoll']['node_after']}), "
            f"haproxy {res['haproxy']['wait_s'] or -1:.3f} s (connected after {res['haproxy']['first_connect_s'] or -1:.3f} s, to {res['haproxy']['node_after']}), "
            f"galera stall (direct on {survivor}) {res['galera']['wait_s'] or -1:.3f} s; restart {fmt(restart[0], 2)} s, synced {fmt(t_rejoin)} s; "
            f"gaps > 0.1 s (length, start after kill): atoll {res['atoll']['gaps']} haproxy {res['haproxy']['gaps']} galera {res['galera']['gaps']}")
    # every acknowledged write is there
    wait_stable(ctx)
    missing = {}
    for name, keys in acked.items():
        rows = ctx.sql(DIRECT, f"SELECT trial, seq FROM sbtest.failover WHERE loop_name = '{name}'")
        present = {(int(t), int(s)) for t, s in rows}
        missing[name] = len(keys - present)
        if missing[name]:
            ctx.odd.append(f"failover: {missing[name]} acknowledged writes of the {name} loop are missing afterwards")
    # why the atoll proxy changed its writer during this phase
    reasons = {}
    try:
        with open(ctx.proxy_log, "rb") as f:
            f.seek(log_from)
            text = re.sub(r"\x1b\[[0-9;]*m", "", f.read().decode(errors="replace"))
    except OSError:
        text = ""
    for m in re.finditer(r"writer changed from=\S+ to=\S+ because=(.*)", text):
        why = m.group(1)
        key = ("a backend down (connect refused or probe failed)" if ": down:" in why
               else "the writer not Synced (" + re.search(r"wsrep_local_state=\d+", why).group(0) + ")" if "not Synced" in why
               else "a new routing table from the platform" if "new routing table" in why
               else why[:80])
        reasons[key] = reasons.get(key, 0) + 1
    return {"trials": trials, "missing": missing, "acked": {k: len(v) for k, v in acked.items()},
            "planned_moves": planned, "writer_change_reasons": reasons}


# ---------------------------------------------------------------- report

def fmt(x, d=1):
    return "–" if x is None else f"{x:,.{d}f}"


def gaps(loop):
    """A write loop's gaps as (length, start after the kill) pairs."""
    return "[" + ", ".join(f"({g[0]}, {g[1]})" for g in loop["gaps"]) + "]"


def report(ctx, info, runs, rss, fo, perf):
    a = ctx.a
    L = []
    L.append(f"## Proxy: `atoll proxy` vs HAProxy vs direct (`bench/proxy.sh`), {info['date']}")
    L.append("")
    L.append(f"- date: {info['date']}")
    L.append(f"- command: `{info['command']}`")
    L.append(f"- machine: nproc {info['nproc']}, {info['cpu']}, {info['mem']}; **2 shared cores**: the proxies, "
             "three `mariadbd`, three agents, the platform server, sysbench and the write loops all run on them; "
             "other work on the machine shows in the load average "
             f"(before {info['load_before']}, after {info['load_after']})")
    L.append(f"- cluster: `atoll playground` (release build), 3 zones on 127.0.0.11–13, durable commits; "
             f"max_connections raised to {a.max_connections} (`atoll cluster set-param`) for the idle-connection test")
    L.append(f"- atoll proxy: the z1 proxy the agent started (defaults: probe every 500 ms, connect timeout 2 s), "
             f"RW port 127.0.0.11:6033; {info['atoll_threads']} threads")
    L.append(f"- HAProxy {info['haproxy_version']}: our own process, TCP mode, default threads ({info['haproxy_threads']}); "
             "per listen one active server and the other two `backup`; `option mysql-check user haproxy_check post-41` "
             "(a MySQL login check with a passwordless, privilege-less user: it proves the server accepts logins, "
             "not that it is Synced), `inter 200ms fall 3 rise 2 on-marked-down shutdown-sessions`, `retries 3`, "
             "`option redispatch`, `timeout connect 2s`. sysbench and the idle test use the listen whose active "
             "server is demo-1 (127.0.0.1:7306)")
    L.append(f"- sysbench {info['sysbench_version']}: {a.tables} tables × {a.table_size} rows prepared once, "
             f"{a.threads} threads, {a.time} s per run, runs interleaved direct → atoll → HAProxy, {a.rounds} rounds; "
             "medians over the rounds (all runs listed); sysbench retries a transaction after errors 1213, 1020 and 1205, counted "
             "under errors")
    L.append("")
    L.append("### sysbench (medians)")
    L.append("")
    L.append("| test | path | TPS | QPS | p95 ms | TPS / direct | p95 / direct | proxy CPU µs/query (net of idle) | mariadbd CPU µs/query | TPS of each run | errors |")
    L.append("|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|")
    summary = {}
    for test in ("oltp_point_select", "oltp_read_write"):
        d = {}
        for path in ("direct", "atoll", "haproxy"):
            rs = [r for r in runs if r["test"] == test and r["path"] == path]
            cpu_key = {"atoll": "cpu_atoll_us_per_q", "haproxy": "cpu_haproxy_us_per_q"}.get(path)
            d[path] = {
                "tps": med([r["tps"] for r in rs]), "qps": med([r["qps"] for r in rs]),
                "p95": med([r["p95_ms"] for r in rs]),
                "cpu": med([r[cpu_key] for r in rs]) if cpu_key else None,
                "cpu_net": med([r[cpu_key.replace("_us_per_q", "_net_us_per_q")] for r in rs]) if cpu_key else None,
                "db_cpu": med([r["cpu_mariadbd_us_per_q"] for r in rs]),
                "all": [r["tps"] for r in rs], "errors": sum((r["errors"] or 0) for r in rs),
                "failed": sum(1 for r in rs if r.get("failure")),
            }
        summary[test] = d
        for path in ("direct", "atoll", "haproxy"):
            x, base = d[path], d["direct"]
            rt = x["tps"] / base["tps"] if x["tps"] and base["tps"] else None
            rp = x["p95"] / base["p95"] if x["p95"] and base["p95"] else None
            L.append(f"| {test} | {path} | {fmt(x['tps'], 0)} | {fmt(x['qps'], 0)} | {fmt(x['p95'], 2)} | "
                     f"{fmt(rt, 2)} | {fmt(rp, 2)} | {fmt(x['cpu'], 1) + ' (' + fmt(x['cpu_net'], 1) + ')' if path != 'direct' else '–'} | "
                     f"{fmt(x['db_cpu'], 1)} | {', '.join(fmt(t, 0) for t in x['all'])} | "
                     f"{x['errors']}{' (' + str(x['failed']) + ' runs failed)' if x['failed'] else ''} |")
    L.append("")
    L.append("Proxy CPU per query: utime+stime of the proxy process (/proc/PID/stat) over the run, divided by "
             "sysbench's query count (read_write: 18 statements plus BEGIN/COMMIT per transaction, so per "
             "transaction it is ×20). In brackets: minus the CPU the proxy burns with no clients over the same time "
             f"(measured for 10 s before the runs: atoll {ctx.idle.get('atoll', 0):.1f} ms/s, HAProxy "
             f"{ctx.idle.get('haproxy', 0):.1f} ms/s — HAProxy checks 3 servers in each of its 3 listens every 200 ms, "
             "atoll probes 3 backends every 500 ms and long-polls the platform); the verdicts use these net numbers. "
             "mariadbd CPU is the writer's, for scale.")
    sb_cpu = {test: {p: med([r["cpu_sysbench_us_per_q"] for r in runs if r["test"] == test and r["path"] == p])
                     for p in ("direct", "atoll", "haproxy")} for test in summary}
    L.append(f"sysbench's own CPU per query (direct / atoll / HAProxy): point_select "
             f"{' / '.join(fmt(sb_cpu['oltp_point_select'][p], 1) for p in ('direct', 'atoll', 'haproxy'))} µs, "
             f"read_write {' / '.join(fmt(sb_cpu['oltp_read_write'][p], 1) for p in ('direct', 'atoll', 'haproxy'))} µs.")
    L.append("")
    L.append(f"### {a.conns} idle client connections")
    L.append("")
    L.append("| proxy | RSS before | RSS with the connections open | per connection | RSS after closing them | threads | fds | opened / failed | time to open |")
    L.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for name in ("atoll", "haproxy"):
        r = rss[name]
        per = (r["rss_kib"] - r["rss_before_kib"]) / max(1, r["opened"])
        L.append(f"| {name} | {r['rss_before_kib'] / 1024:.1f} MiB | **{r['rss_kib'] / 1024:.1f} MiB** | {per:.1f} KiB | "
                 f"{r['rss_after_close_kib'] / 1024:.1f} MiB | {r['threads']} | {r['fds']} | {r['opened']} / {r['failed']} | {r['open_s']:.1f} s |")
    L.append("")
    L.append("Each connection: TCP, the server's greeting relayed, a mysql_native_password login (bench/mysqlmini.py), "
             "then nothing; 1 in 20 answered a `SELECT 1` afterwards. RSS read from /proc/PID/status 2 s after the last "
             "connect.")
    L.append("")
    L.append(f"### Writer failover: SIGKILL of the writer's mariadbd, {len(fo['trials'])} trials")
    L.append("")
    L.append("Each trial runs three write loops at once (one autocommit INSERT per statement, at most one per 5 ms, "
             "reconnecting at once on any error, connect+login timeout 10 s): through the atoll proxy (127.0.0.11:6033), "
             "through HAProxy (the listen whose active server is the victim), and directly on the surviving node that "
             "neither proxy fails over to (the Galera commit stall on its own). After ≥ 20 acknowledged writes per loop "
             f"and {a.steady:g} s more, the writer's `mariadbd` (the cluster's `writer`; pid from `atoll cluster show demo "
             f"--json`) gets SIGKILL; the loops write on for {a.window:g} s (the agent's restart and the rejoin begin in "
             "that window), then the next trial waits until the node is Synced again, the atoll proxy sees every "
             "backend healthy and HAProxy has every server UP. The same kill serves both proxies. Victims take turns "
             "(demo-1, demo-2, demo-3, demo-1, …) because ten kills of one node would trip the agent's crash-loop "
             "limit (5 exits in 300 s): when the writer is not the next victim, `atoll cluster set-writer` moves it "
             f"there first, with no load running ({fo['planned_moves']} planned moves in this run). HAProxy has one "
             "listen per possible active server (127.0.0.1:7306/7307/7308, backups in the same order as atoll's), and "
             "each trial writes through the one whose active server is the victim. The wait is the longest gap "
             "between consecutive acknowledged writes, from the last one before the kill, among the gaps that begin "
             "before the agent starts the victim again (a new `mariadbd` of that node in /proc, polled every 50 ms); "
             "the stall its rejoin causes a few seconds later hits every path alike and is listed on its own.")
    L.append("")

    def col(name, key):
        return [t[name][key] for t in fo["trials"] if t[name][key] is not None]

    def mm(xs, d=2):
        return f"{fmt(med(xs), d)} / {fmt(max(xs) if xs else None, d)}"

    L.append("| median / max over the trials, seconds | atoll proxy | HAProxy | direct on a survivor (Galera alone) |")
    L.append("|---|--:|--:|--:|")
    L.append(f"| **longest wait for an acknowledged write after the kill** (gaps that begin before the agent restarts the victim) | "
             f"**{mm(col('atoll', 'wait_s'))}** | **{mm(col('haproxy', 'wait_s'))}** | {mm(col('galera', 'wait_s'))} |")
    L.append(f"| kill → first successful new connection (login + `SELECT @@wsrep_node_name`): the proxy's own share | "
             f"{mm(col('atoll', 'first_connect_s'), 3)} | {mm(col('haproxy', 'first_connect_s'), 3)} | "
             "– (its connection survives) |")
    L.append(f"| kill → first acknowledged write | {mm(col('atoll', 'first_ack_s'))} | {mm(col('haproxy', 'first_ack_s'))} | "
             f"{mm(col('galera', 'first_ack_s'))} |")
    L.append(f"| longest gap once the restarted victim rejoins (IST; stalls the whole cluster) | "
             f"{mm(col('atoll', 'rejoin_wait_s'))} | {mm(col('haproxy', 'rejoin_wait_s'))} | {mm(col('galera', 'rejoin_wait_s'))} |")
    errs = {n: sum(t[n]["errors"] for t in fo["trials"]) for n in ("atoll", "haproxy", "galera")}
    L.append(f"| failed statements / connects, all trials | {errs['atoll']} | {errs['haproxy']} | {errs['galera']} |")
    L.append(f"| acknowledged writes missing afterwards | {fo['missing'].get('atoll')} of {fo['acked'].get('atoll')} | "
             f"{fo['missing'].get('haproxy')} of {fo['acked'].get('haproxy')} | {fo['missing'].get('galera')} of {fo['acked'].get('galera')} |")
    rj = [t["rejoin_s"] for t in fo["trials"] if t["rejoin_s"] is not None]
    sw = sum(t["atoll_switches"] for t in fo["trials"])
    L.append(f"| atoll proxy writer changes during the trials (one per kill expected) | {sw} for {len(fo['trials'])} kills | | |")
    rs = [t["restart_s"] for t in fo["trials"] if t.get("restart_s") is not None]
    L.append(f"| kill → the agent starts the victim again (back-off 1, 2, 4, 8 s for a node's 1st–4th exit in 300 s) | {mm(rs, 1)} | | |")
    L.append(f"| kill → victim Synced again | {mm(rj, 1)} | | |")
    L.append("")
    L.append("Per trial — victim: atoll wait, first connection after the kill → node / HAProxy wait, first connection → node "
             "/ Galera stall on a survivor; restart and Synced again after the kill; the atoll proxy's writer changes "
             "during the trial. All gaps over 0.1 s as (length, start after the kill), failed statements/connects as "
             "seconds after the kill:")
    L.append("")
    for t in fo["trials"]:
        A, H, G = t["atoll"], t["haproxy"], t["galera"]
        L.append(f"- {t['trial']}. {t['victim']}: atoll {fmt(A['wait_s'], 2)} s, {fmt(A['first_connect_s'], 3)} s → {A['node_after']} / "
                 f"HAProxy {fmt(H['wait_s'], 2)} s, {fmt(H['first_connect_s'], 3)} s → {H['node_after']} / "
                 f"Galera {fmt(G['wait_s'], 2)} s; restart {fmt(t.get('restart_s'), 2)} s, Synced {fmt(t['rejoin_s'], 1)} s; atoll writer changes "
                 f"{t['atoll_switches']}. Gaps: atoll {gaps(A)}, HAProxy {gaps(H)}, Galera {gaps(G)}. "
                 f"Errors: atoll {A['errors_at_s']}, HAProxy {H['errors_at_s']}")
    kinds = {}
    for t in fo["trials"]:
        for n in ("atoll", "haproxy", "galera"):
            for k, v in t[n]["error_kinds"].items():
                kinds[(n, k)] = kinds.get((n, k), 0) + v
    if fo.get("writer_change_reasons"):
        L.append("")
        L.append("Why the atoll proxy changed its writer during the failover phase (its log, including the planned moves): "
                 + "; ".join(f"{v}× {k}" for k, v in sorted(fo["writer_change_reasons"].items(), key=lambda kv: -kv[1])) + ".")
    if kinds:
        L.append("")
        L.append("Errors the write loops saw after the kills (all trials):")
        L.append("")
        for (n, k), v in sorted(kinds.items(), key=lambda kv: -kv[1])[:12]:
            L.append(f"- {n}: {v}× `{k}`")
    L.append("")
    if perf and all("per_query" in perf.get(x, {}) for x in ("atoll", "haproxy")):
        L.append("### Where the proxies' CPU goes (one extra 10 s point_select run through each, under `perf stat`)")
        L.append("")
        L.append("| per query | atoll proxy | HAProxy |")
        L.append("|---|--:|--:|")
        A, H = perf["atoll"], perf["haproxy"]
        L.append(f"| TPS of that run | {fmt(A['run']['tps'], 0)} | {fmt(H['run']['tps'], 0)} |")
        L.append(f"| proxy CPU, µs (net of idle) | {fmt(A['run']['cpu_atoll_us_per_q'], 1)} ({fmt(A['run'].get('cpu_atoll_net_us_per_q'), 1)}) | "
                 f"{fmt(H['run']['cpu_haproxy_us_per_q'], 1)} ({fmt(H['run'].get('cpu_haproxy_net_us_per_q'), 1)}) |")
        L.append(f"| of which in the kernel (stime share) | {fmt(100 * (A['run']['cpu_atoll_sys_share'] or 0), 0)} % | "
                 f"{fmt(100 * (H['run']['cpu_haproxy_sys_share'] or 0), 0)} % |")
        keys = ["raw_syscalls:sys_enter", "context-switches"] + sorted(
            {k for x in (A, H) for k, v in x["per_query"].items() if v >= 0.01} - {"raw_syscalls:sys_enter", "context-switches"},
            key=lambda k: -(A["per_query"].get(k, 0) + H["per_query"].get(k, 0)))
        for k in keys:
            name = {"raw_syscalls:sys_enter": "system calls (all)", "context-switches": "context switches"}.get(k, f"`{k}`")
            L.append(f"| {name} | {fmt(A['per_query'].get(k, 0), 2)} | {fmt(H['per_query'].get(k, 0), 2)} |")
        L.append("")
        L.append("Both proxies relay bytes without parsing them, so per query each reads the request, writes it to the "
                 "backend, reads the answer and writes it back; the difference is in how many extra system calls "
                 "and wake-ups surround those four.")
        L.append("")
    stime = {p: med([r.get(f"cpu_{p}_sys_share") for r in runs if r["path"] == p]) for p in ("atoll", "haproxy")}
    L.append(f"Kernel share of each proxy's CPU over the sysbench runs (median): atoll {fmt(100 * (stime['atoll'] or 0), 0)} %, "
             f"HAProxy {fmt(100 * (stime['haproxy'] or 0), 0)} %.")
    L.append("")

    # verdicts
    V = []
    ps, rw = summary["oltp_point_select"], summary["oltp_read_write"]

    def verdict(ok):
        return "**met**" if ok else "**NOT met**"

    def ratios(test, key):
        """atoll / HAProxy for each round (the two ran back to back)."""
        out = []
        for rnd in sorted({r["round"] for r in runs}):
            x = {r["path"]: r for r in runs if r["test"] == test and r["round"] == rnd}
            av, hv = x.get("atoll", {}).get(key), x.get("haproxy", {}).get(key)
            if av and hv:
                out.append(av / hv)
        return out

    def spread(rs):
        """Geometric mean of the paired ratios and its 95 % confidence
        interval (Student's t on the logs): whether a difference between
        the medians is larger than the rounds' own noise."""
        if len(rs) < 3:
            return None
        logs = [math.log(r) for r in rs]
        n = len(logs)
        m = sum(logs) / n
        sd = math.sqrt(sum((x - m) ** 2 for x in logs) / (n - 1))
        t = {3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306, 10: 2.262}.get(n, 2.0)
        h = t * sd / math.sqrt(n)
        return math.exp(m), math.exp(m - h), math.exp(m + h)

    def at_least(test, key, ok, higher_is_better):
        """The strict verdict, or a tie when the paired rounds cannot tell
        the two apart."""
        if ok:
            return verdict(True)
        sp = spread(ratios(test, key))
        if sp is None:
            return verdict(False)
        g, lo, hi = sp
        tie = hi >= 1.0 if higher_is_better else lo <= 1.0
        note = f"paired rounds: geometric mean {g:.2f}×, 95 % CI {lo:.2f}–{hi:.2f}"
        return f"**tie within the run's noise** (not met strictly; {note})" if tie else f"**NOT met** ({note})"

    def paired(test, key):
        """atoll / HAProxy per round (the two ran back to back)."""
        out = []
        for rnd in sorted({r["round"] for r in runs}):
            x = [r for r in runs if r["test"] == test and r["round"] == rnd]
            av = next((r[key] for r in x if r["path"] == "atoll"), None)
            hv = next((r[key] for r in x if r["path"] == "haproxy"), None)
            if av and hv:
                out.append(f"{av / hv:.2f}")
        return ", ".join(out)

    for test, d in (("point_select", ps), ("read_write", rw)):
        A, H = d["atoll"], d["haproxy"]
        full = "oltp_" + test
        if A["tps"] and H["tps"]:
            V.append(f"TPS ≥ HAProxy's ({test}): atoll {fmt(A['tps'], 0)} vs HAProxy {fmt(H['tps'], 0)} "
                     f"({A['tps'] / H['tps']:.2f}×; per round {paired(full, 'tps')}) — "
                     f"{at_least(full, 'tps', A['tps'] >= H['tps'], True)}")
        if A["p95"] and H["p95"]:
            V.append(f"p95 ≤ HAProxy's ({test}): atoll {fmt(A['p95'], 2)} ms vs HAProxy {fmt(H['p95'], 2)} ms "
                     f"(per round {paired(full, 'p95_ms')}) — {at_least(full, 'p95_ms', A['p95'] <= H['p95'], False)}")
        if A["cpu_net"] and H["cpu_net"]:
            pc = []
            for rnd in sorted({r["round"] for r in runs}):
                x = {r["path"]: r for r in runs if r["test"] == full and r["round"] == rnd}
                if x.get("atoll", {}).get("cpu_atoll_net_us_per_q") and x.get("haproxy", {}).get("cpu_haproxy_net_us_per_q"):
                    pc.append(f"{x['atoll']['cpu_atoll_net_us_per_q'] / x['haproxy']['cpu_haproxy_net_us_per_q']:.2f}")
            V.append(f"CPU per query ≤ HAProxy's ({test}, net of idle): atoll {fmt(A['cpu_net'], 1)} µs vs HAProxy "
                     f"{fmt(H['cpu_net'], 1)} µs ({A['cpu_net'] / H['cpu_net']:.2f}×; per round {', '.join(pc)}; raw "
                     f"{fmt(A['cpu'], 1)} vs {fmt(H['cpu'], 1)} µs) — {verdict(A['cpu_net'] <= H['cpu_net'])}")
    ar = rss["atoll"]["rss_kib"] / 1024
    V.append(f"atoll proxy RSS with {a.conns} idle connections < 50 MB: {ar:.1f} MiB "
             f"({rss['atoll']['opened']} opened) — {verdict(ar * 1.048576 < 50 and rss['atoll']['failed'] == 0)}")
    aw, hw = col("atoll", "wait_s"), col("haproxy", "wait_s")
    if aw and hw:
        # within 50 ms (a few write intervals on a loaded box) is a tie, not "shorter"
        shorter = med(aw) < med(hw) - 0.05 and max(aw) < max(hw) - 0.05
        tie = abs(med(aw) - med(hw)) <= 0.05
        pairs = [(t["atoll"]["wait_s"], t["haproxy"]["wait_s"]) for t in fo["trials"]
                 if t["atoll"]["wait_s"] is not None and t["haproxy"]["wait_s"] is not None]
        won = sum(1 for x, y in pairs if x < y - 0.05)
        lost = sum(1 for x, y in pairs if x > y + 0.05)
        V.append(f"failover wait shorter than HAProxy's: median {fmt(med(aw), 2)} vs {fmt(med(hw), 2)} s, "
                 f"max {fmt(max(aw), 2)} vs {fmt(max(hw), 2)} s; trial by trial (same kill) atoll shorter by > 50 ms "
                 f"in {won}, within 50 ms in {len(pairs) - won - lost}, longer in {lost} — "
                 + ("**met**" if shorter else "**NOT met** (a tie within 50 ms)" if tie else "**NOT met**"))
        ac, hc = col("atoll", "first_connect_s"), col("haproxy", "first_connect_s")
        if ac and hc:
            V.append(f"the proxy's own share (kill → first new connection): atoll median {fmt(med(ac), 3)} s, max "
                     f"{fmt(max(ac), 3)} s vs HAProxy {fmt(med(hc), 3)} s, {fmt(max(hc), 3)} s; the Galera stall on a "
                     f"survivor alone: median {fmt(med(col('galera', 'wait_s')), 2)} s")
        V.append(f"writes resume within 3 s of the kill (issue's test, through atoll): max {fmt(max(aw), 2)} s — "
                 f"{verdict(max(aw) <= 3)}")
    L.append("### Verdicts against issue 5's targets")
    L.append("")
    for v in V:
        L.append(f"- {v}")
    L.append("")
    notes = list(ctx.odd)
    warn = [l for l in ctx.proxy_log_since_start().splitlines() if " WARN" in l or "ERROR" in l]
    notes.append(f"atoll proxy log during the run: {len(warn)} WARN/ERROR lines"
                 + (": " + "; ".join(sorted({re.sub(r'\x1b\[[0-9;]*m', '', l).split('Z', 1)[-1].strip()[:140] for l in warn})[:6])
                    if warn else ""))
    if info.get("proxy_pid_changed"):
        notes.append(f"the atoll proxy's PID changed during the run ({info['proxy_pid_changed']}): it was restarted")
    L.append("### Notes")
    L.append("")
    for n in notes:
        L.append(f"- {n}")
    L.append("")
    return "\n".join(L), V


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--atoll", required=True)
    p.add_argument("--pgdir", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--section", required=True)
    p.add_argument("--raw", required=True)
    p.add_argument("--command", default="bash bench/proxy.sh")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--time", type=int, default=20)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--tables", type=int, default=4)
    p.add_argument("--table-size", type=int, default=10000)
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--steady", type=float, default=1.0)
    p.add_argument("--window", type=float, default=8.0, help="seconds the write loops go on after a kill")
    p.add_argument("--max-connections", type=int, default=1500)
    p.add_argument("--no-perf", action="store_true")
    p.add_argument("--render", action="store_true",
                   help="write --section again from the numbers in --raw (e.g. after changing the report); measure nothing")
    a = p.parse_args()
    if a.render:
        render_again(a)
        return
    ctx = Ctx(a)
    creds = json.loads(ctx.atoll("cluster", "credentials", "demo", "--json"))
    a.user, a.password = creds["user"], creds["password"]
    try:
        ctx.proxy_log_start = os.path.getsize(ctx.proxy_log)
    except OSError:
        pass
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%a %b %d %H:%M:%S UTC %Y"),
        "command": a.command,
        "nproc": os.cpu_count(),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
        "mem": f"{int(open('/proc/meminfo').readline().split()[1]) / 1048576:.1f} GiB RAM",
        "load_before": " ".join(open("/proc/loadavg").read().split()[:3]),
        "haproxy_version": subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.split()[2],
        "sysbench_version": subprocess.run(["sysbench", "--version"], capture_output=True, text=True).stdout.strip().replace("sysbench ", ""),
    }
    pid0 = ctx.proxy_pid()
    try:
        log("setup: sbtest database, HAProxy check user, max_connections, tables")
        ctx.sql(DIRECT, "CREATE DATABASE IF NOT EXISTS sbtest")
        for h in ("127.0.0.1", "localhost"):
            ctx.sql(DIRECT, f"CREATE USER IF NOT EXISTS '{CHECK_USER}'@'{h}'")
        try:
            ctx.atoll("cluster", "set-param", "demo", f"max_connections={a.max_connections}")
        except RuntimeError as e:
            if "nothing changes" not in str(e):
                raise
        c = ctx.cluster()
        if c["writer"] != "demo-1":
            raise RuntimeError(f"the writer is {c['writer']}, expected demo-1 (the direct path is 127.0.0.11:3306)")
        ctx.writer_db_pid = ctx.servers(c)["demo-1"]["status"]["pid"]
        sb = ["sysbench", "oltp_read_write", "--db-driver=mysql", f"--mysql-host={DIRECT[0]}",
              f"--mysql-port={DIRECT[1]}", f"--mysql-user={a.user}", f"--mysql-password={a.password}",
              "--mysql-db=sbtest", f"--tables={a.tables}", f"--table-size={a.table_size}"]
        subprocess.run(sb + ["cleanup"], capture_output=True, text=True)
        r = subprocess.run(sb + ["prepare"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("sysbench prepare failed: " + r.stdout[-800:] + r.stderr[-800:])
        ctx.start_haproxy()
        wait_stable(ctx)
        ctx.idle = measure_idle(ctx)
        info["atoll_threads"] = proc_status(pid0)["Threads"]
        info["haproxy_threads"] = proc_status(ctx.hap.pid)["Threads"]
        log("phase 1: sysbench")
        runs = phase_sysbench(ctx)
        perf = None if a.no_perf else phase_perf(ctx)
        log("phase 2: idle connections")
        rss = phase_rss(ctx)
        log("phase 3: failover")
        fo = phase_failover(ctx)
        if ctx.proxy_pid() != pid0:
            info["proxy_pid_changed"] = f"{pid0} → {ctx.proxy_pid()}"
        info["load_after"] = " ".join(open("/proc/loadavg").read().split()[:3])
        with open(a.raw, "w") as f:
            json.dump({"info": info, "sysbench": runs, "rss": rss, "failover": fo,
                       "perf": perf and {k: v for k, v in perf.items()}, "odd": ctx.odd,
                       "idle": ctx.idle, "proxy_log": ctx.proxy_log_since_start()}, f, indent=1, default=str)
        text, verdicts = report(ctx, info, runs, rss, fo, perf)
        with open(a.section, "w") as f:
            f.write(text)
        print(text)
    finally:
        ctx.stop_haproxy()


class Saved:
    """What `report` reads from a run's context, as the raw file kept it."""

    def __init__(self, a, raw):
        self.a, self.idle, self.odd, self._log = a, raw.get("idle", {}), raw.get("odd", []), raw.get("proxy_log", "")

    def proxy_log_since_start(self):
        return self._log


def render_again(a):
    with open(a.raw) as f:
        raw = json.load(f)
    text, _ = report(Saved(a, raw), raw["info"], raw["sysbench"], raw["rss"], raw["failover"], raw["perf"])
    with open(a.section, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
