"""`xenpy trace`: the hypervisor's trace buffer over a ping-pong of two domains."""
from __future__ import annotations

import json
import re
import subprocess
from collections import defaultdict

from tests.daemon import run, xl
from tests.guest.test_irq_guests import domid_of

ROUNDS = 5
LINE = re.compile(r"^CPU(\d+|-)\s+(\d+) \(\+\s*(\d+)\)  (\w+)\s+(d\d+(?:v\d+)?|-)\s+\[ (.*) \]$")


def xenpy(*args: str, env) -> subprocess.CompletedProcess:
    return run("xenpy", *args, env=env)


def fields(text: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+) = (\"[^\"]*\"|\[[^\]]*\]|[^,]+)", text))


def pingpong(env) -> int:
    """Pong, then ping with ROUNDS rounds to SUCCESS; pong's domid."""
    r = xl("create", "-p", "examples/pingpong/pong.cfg", 'name="tpong"', env=env)
    assert r.returncode == 0, r.stderr
    pong = domid_of("tpong", env)
    assert xl("unpause", "tpong", env=env).returncode == 0
    r = xl("create", "-c", "examples/pingpong/ping.cfg", 'name="tping"',
           f'extra="role=ping peer={pong} rounds={ROUNDS}"', env=env)
    assert r.stdout.splitlines()[-1] == "Test result: SUCCESS", r.stdout
    xl("destroy", "tpong", env=env)
    return pong


def test_trace_of_a_pingpong(board, tmp_path):
    env = board
    r = xenpy("trace", "start", env=env)
    assert r.returncode == 0 and r.stdout.startswith("tracing, 65536 events kept"), r.stderr
    pong = pingpong(env)
    r = xenpy("trace", "stop", env=env)
    assert r.returncode == 0, r.stderr
    used = int(re.search(r"(\d+) events in the buffer", r.stdout).group(1))
    assert xenpy("trace", "dump", str(tmp_path / "t.txt"), env=env).returncode == 0
    assert xenpy("trace", "dump", str(tmp_path / "t.json"), env=env).returncode == 0

    # Off means off: a whole guest run adds nothing to the buffer.
    r = xl("create", "-c", "examples/hello/hello.cfg", env=env)
    assert r.stdout.splitlines()[-1] == "Test result: SUCCESS"
    r = xenpy("trace", "stop", env=env)
    assert int(re.search(r"(\d+) events in the buffer", r.stdout).group(1)) == used

    # -- the text form: every line parses; time never goes backwards ------------------------------
    lines = (tmp_path / "t.txt").read_text().splitlines()
    assert len(lines) == used
    events = []
    for line in lines:
        m = LINE.match(line)
        assert m, line
        events.append((int(m.group(2)), m.group(4), m.group(5), fields(m.group(6))))
    assert all(a[0] <= b[0] for a, b in zip(events, events[1:]))
    kinds = {e[1] for e in events}
    assert {"hypercall", "evtchn_send", "evtchn_set_pending", "upcall", "sched_in", "sched_out",
            "dom_create", "dom_shutdown", "dom_destroy", "console", "xs_request"} <= kinds, kinds

    ping = next(int(e[3]["domid"] if "domid" in e[3] else e[2][1:]) for e in events
                if e[1] == "dom_create" and e[2] != f"d{pong}")
    # send -> set_pending -> upcall -> send, ROUNDS times each way, with matching ports.
    sends = [e for e in events if e[1] == "evtchn_send" and e[2].startswith((f"d{ping}v", f"d{pong}v"))]
    chains = 0
    for i, (t, _, who, f) in enumerate(events):
        if _ != "evtchn_send" or not who.startswith(f"d{ping}v"):
            continue
        rdom, rport = f["remote_domid"], f["remote_port"]
        rest = events[i + 1:]
        k = next(j for j, e in enumerate(rest) if e[1] == "evtchn_set_pending"
                 and e[2] == f"d{rdom}" and e[3]["port"] == rport)
        flow = rest[k][3]["flow"]
        if rest[k][3]["running"] == "True":
            u = k            # the handler pong is running takes it, with no new interrupt
        else:
            u = next(j for j, e in enumerate(rest) if j > k and e[1] == "upcall"
                     and e[2].startswith(f"d{rdom}v") and flow in e[3]["flows"].strip("[]").split())
        echo = next((j for j, e in enumerate(rest) if j > u and e[1] == "evtchn_send"
                     and e[2].startswith(f"d{rdom}v")), None)
        if echo is None:
            continue
        back = rest[echo][3]
        assert back["port"] == rport                       # pong echoes on the port it was notified on
        assert (back["remote_domid"], back["remote_port"]) == (str(ping), f["port"])
        chains += 1
    assert chains >= ROUNDS, (f"{chains} send -> upcall -> send chains; ping d{ping}, pong d{pong}:\n"
                              + "\n".join(l for l in lines if re.search(r"evtchn|upcall|dom_", l)))

    # -- the trace-event JSON -----------------------------------------------------------------------
    doc = json.loads((tmp_path / "t.json").read_text())
    assert set(doc) == {"traceEvents", "displayTimeUnit"}
    evs = doc["traceEvents"]
    tracks = defaultdict(list)
    flows = defaultdict(dict)
    names = {}
    for e in evs:
        assert {"name", "ph", "pid", "tid"} <= set(e), e
        assert e["ph"] in ("M", "X", "i", "s", "f"), e
        if e["ph"] == "M":
            assert e["name"] in ("process_name", "thread_name") and isinstance(e["args"]["name"], str)
            names[(e["name"], e["pid"], e["tid"] if e["name"] == "thread_name" else None)] = e["args"]["name"]
            continue
        assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0, e
        if e["ph"] == "X":
            assert e["dur"] >= 0
            tracks[(e["pid"], e["tid"])].append(e)
        elif e["ph"] == "i":
            assert e["s"] in ("t", "p", "g")
        else:
            assert e["id"] not in flows[e["ph"]], e          # one start and one end per id
            flows[e["ph"]][e["id"]] = e
    # One track per pCPU and per vCPU, named.
    assert ("process_name", 1, None) in names and ("thread_name", 1, 0) in names
    assert names[("thread_name", 100 + pong, 0)] == "vCPU 0"
    assert names[("thread_name", 100 + ping, 0)] == "vCPU 0"
    # Complete events on one thread nest.
    for track in tracks.values():
        track.sort(key=lambda s: (s["ts"], -s["dur"]))
        stack = []
        for s in track:
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= s["ts"]:
                stack.pop()
            assert not stack or s["ts"] + s["dur"] <= stack[-1]["ts"] + stack[-1]["dur"] + 1e-6, s
            stack.append(s)
    # Flows: every start has its end, later, with bp "e"; each end lies in a slice of its thread
    # (the handler of the upcall) and each start in one (the send).
    assert flows["s"] and set(flows["s"]) == set(flows["f"])
    for fid, s in flows["s"].items():
        f = flows["f"][fid]
        assert f["bp"] == "e" and f["cat"] == s["cat"] and f["name"] == s["name"]
        assert f["ts"] >= s["ts"]
        for ev in (s, f):
            assert any(x["ts"] <= ev["ts"] <= x["ts"] + x["dur"] for x in tracks[(ev["pid"], ev["tid"])]), ev
    crossing = [fid for fid, s in flows["s"].items() if {s["pid"], flows["f"][fid]["pid"]} == {100 + ping, 100 + pong}]
    assert len(crossing) >= 2 * ROUNDS


def test_trace_errors(board, tmp_path):
    env = board
    r = xenpy("trace", "start", "--size", "0", env=env)
    assert r.returncode == 1 and r.stderr.startswith("xenpy trace start: "), r.stderr
    assert "Traceback" not in r.stderr
    r = xenpy("trace", "dump", str(tmp_path / "no/such/dir/t.txt"), env=env)
    assert r.returncode == 1 and "No such file or directory" in r.stderr and "Traceback" not in r.stderr
    r = xenpy("trace", "--help", env=env)
    assert r.returncode == 0 and "xentrace_format" in r.stdout and "Perfetto" in r.stdout
    r = xenpy("trace", "dump", "--help", env=env)
    assert r.returncode == 0 and "--format" in r.stdout
