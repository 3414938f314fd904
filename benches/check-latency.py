#!/usr/bin/env python3
"""Issue 14: create latency while a `check` runs, against the same creates without one.

Run by benches/check-latency.sh inside a sandbox with an agent at $NSAGENT_SOCKET that already
has N namespaces. Prints one JSON object."""
import json, os, socket, sys, threading, time

SOCK = os.environ["NSAGENT_SOCKET"]
RATE = 50  # creates per second, open loop


def call(req):
    s = socket.socket(socket.AF_UNIX)
    s.connect(SOCK)
    f = s.makefile("rwb")
    f.write((json.dumps(req) + "\n").encode())
    f.flush()
    r = json.loads(f.readline())
    s.close()
    return r


def pct(v):
    v = sorted(v)
    return {"n": len(v), "p50_ms": round(v[len(v) // 2], 2),
            "p99_ms": round(v[min(len(v) - 1, len(v) * 99 // 100)], 2),
            "max_ms": round(v[-1], 2)}


def creates(prefix, until):
    lat, i, t0 = [], 0, time.perf_counter()
    while not until(i):
        due = t0 + i / RATE
        time.sleep(max(0, due - time.perf_counter()))
        t = time.perf_counter()
        r = call({"op": "create", "name": f"{prefix}{i}"})
        lat.append((time.perf_counter() - t) * 1e3)
        assert r["ok"], r
        i += 1
    return lat


base = creates("b", lambda i: i >= 200)
done = threading.Event()
report = {}


def check():
    t = time.perf_counter()
    r = call({"op": "check"})
    report["check_s"] = round(time.perf_counter() - t, 2)
    report["checked"] = r["result"]["checked"]
    report["clean"] = r["result"]["clean"]
    done.set()


th = threading.Thread(target=check)
th.start()
during = creates("c", lambda i: done.is_set())
th.join()
print(json.dumps({"without_check": pct(base), "during_check": pct(during), **report}))
