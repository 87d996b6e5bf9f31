"""`xenpy trace start|stop|dump`: the hypervisor's trace buffer, as xentrace reads Xen's.

    xenpy trace start [--size N]    clear the buffer and start tracing (N events kept, default 65536)
    xenpy trace stop                stop tracing (the buffer is kept for dump)
    xenpy trace dump FILE [--format text|json]

The text form is one line per event, like xentrace_format's: pCPU, host ns, the delta to the
event before, what, which domain and vCPU, and the event's fields. The JSON form is the Chrome /
Perfetto trace-event format: one track per pCPU (what ran there) and per vCPU (running, its
hypercalls, its interrupt handlers, instants for the rest), with a flow arrow from each
event-channel send to the upcall it raised. Control is XEN_SYSCTL_tbuf_op; the events come
through privcmd.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from toolstack.subcommand import Failure, dispatch
from xenpy.public import sysctl as S

PCPU_PID = 1                 # the pCPUs' process in the trace viewer
DOM_PID_BASE = 100           # domain N is process 100 + N, its vCPU k thread k
DOM_TID = 1000               # a domain's events with no vCPU (dom0's sends, the lifecycle)
SMALL_US = 1.0               # the width of a slice that has no length of its own


def _xc():
    from toolstack.xc import BoardNotRunning, Xc
    try:
        return Xc()
    except BoardNotRunning as e:
        raise Failure(f"xenpy: {e}") from None


# -- text ------------------------------------------------------------------------------------------

SKIP = ("seq", "ns", "dur", "pcpu", "domid", "vcpu", "kind")


def text_lines(events: list[dict[str, Any]]) -> list[str]:
    out, prev = [], None
    for e in events:
        delta = 0 if prev is None else e["ns"] - prev
        prev = e["ns"]
        cpu = "CPU-" if e["pcpu"] is None else f"CPU{e['pcpu']}"
        who = ("-" if e["domid"] is None else f"d{e['domid']}"
               + ("" if e["vcpu"] is None else f"v{e['vcpu']}"))
        fields = ", ".join(f"{k} = {_fmt(v)}" for k, v in e.items() if k not in SKIP)
        if e["dur"]:
            fields = f"dur = {e['dur']} ns" + (", " + fields if fields else "")
        out.append(f"{cpu:<5} {e['ns']:>16} (+{delta:>10})  {e['kind']:<18} {who:<7} [ {fields} ]")
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + " ".join(map(str, v)) + "]"
    return str(v)


# -- trace-event JSON --------------------------------------------------------------------------------

def _track(e: dict[str, Any]) -> tuple[int, int]:
    domid = e["domid"] if e["domid"] is not None else 0
    return DOM_PID_BASE + domid, DOM_TID if e["vcpu"] is None else e["vcpu"]


def _us(ns: int) -> float:
    return ns / 1000.0


def chrome_trace(events: list[dict[str, Any]], names: dict[int, str] | None = None) -> dict[str, Any]:
    names = names or {}
    out: list[dict[str, Any]] = []
    slices: list[dict[str, Any]] = []
    tracks: set[tuple[int, int]] = set()
    pcpus: set[int] = set()
    running: dict[tuple[int, int], dict[str, Any]] = {}       # vCPU -> its sched_in
    in_isr: dict[tuple[int, int], list[dict[str, Any]]] = {}  # vCPU -> IRQs taken, not EOIed
    last_send: dict[tuple[int, int], dict[str, Any]] = {}     # (domid, port) notified -> its send
    flow_from: dict[int, dict[str, Any]] = {}                 # flow id -> the send's slice

    def add_slice(name: str, pid: int, tid: int, ts_ns: int, dur_ns: int | None, args: dict,
                  cat: str) -> dict[str, Any]:
        s = {"name": name, "cat": cat, "ph": "X", "pid": pid, "tid": tid, "ts": _us(ts_ns),
             "dur": SMALL_US if not dur_ns else _us(dur_ns), "args": args}
        slices.append(s)
        tracks.add((pid, tid))
        return s

    for e in events:
        pid, tid = _track(e)
        key = (e["domid"], e["vcpu"])
        args = {k: v for k, v in e.items() if k not in SKIP}
        kind = e["kind"]
        if kind == "sched_in":
            running[key] = e
        elif kind == "sched_out":
            start = running.pop(key, None)
            if start is not None:
                label = f"d{e['domid']}v{e['vcpu']}"
                add_slice("running", pid, tid, start["ns"], e["ns"] - start["ns"],
                          {"exit": e.get("why")}, "sched")
                if e["pcpu"] is not None:
                    pcpus.add(e["pcpu"])
                    add_slice(label, PCPU_PID, e["pcpu"], start["ns"], e["ns"] - start["ns"],
                              {"exit": e.get("why")}, "sched")
        elif kind == "hypercall":
            add_slice(f"hypercall {e.get('name')}", pid, tid, e["ns"], e["dur"], args, "hypercall")
        elif kind == "evtchn_send":
            s = add_slice("evtchn_send", pid, tid, e["ns"], 0, args, "evtchn")
            last_send[(e["remote_domid"], e["remote_port"])] = s
        elif kind == "evtchn_set_pending":
            s = last_send.pop((e["domid"], e["port"]), None)
            if e.get("flow") is not None and s is not None:
                flow_from[e["flow"]] = s
                out.append({"name": "notify", "cat": "evtchn", "ph": "s", "id": e["flow"],
                            "pid": s["pid"], "tid": s["tid"], "ts": s["ts"]})
                if e.get("running"):      # taken by the upcall handler the vCPU is running
                    out.append({"name": "notify", "cat": "evtchn", "ph": "f", "bp": "e",
                                "id": e["flow"], "pid": pid, "tid": e["notify_vcpu"],
                                "ts": _us(e["ns"])})
            out.append({"name": "evtchn_set_pending", "cat": "evtchn", "ph": "i", "s": "p",
                        "pid": pid, "tid": DOM_TID, "ts": _us(e["ns"]), "args": args})
            tracks.add((pid, DOM_TID))
        elif kind in ("upcall", "irq"):
            isr = add_slice(f"irq {e.get('irq')}", pid, tid, e["ns"], 0, args, "irq")
            in_isr.setdefault(key, []).append(isr)
            for fid in e.get("flows") or []:
                if fid in flow_from:
                    out.append({"name": "notify", "cat": "evtchn", "ph": "f", "bp": "e",
                                "id": fid, "pid": pid, "tid": tid, "ts": _us(e["ns"])})
        elif kind == "eoi":
            stack = in_isr.get(key) or []
            for isr in reversed(stack):
                if isr["args"].get("irq") == e.get("irq"):
                    isr["dur"] = max(SMALL_US, _us(e["ns"]) - isr["ts"])
                    stack.remove(isr)
                    break
        else:
            out.append({"name": kind, "cat": kind.split("_")[0], "ph": "i", "s": "t",
                        "pid": pid, "tid": tid, "ts": _us(e["ns"]), "args": args})
            tracks.add((pid, tid))

    _nested(slices)
    # A flow binds to the slice enclosing its end; one that lands outside every slice of its
    # thread (a handler cut short at a deschedule) gets a slice of no length to bind to.
    by_track: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for s in slices:
        by_track.setdefault((s["pid"], s["tid"]), []).append(s)
    for ev in [ev for ev in out if ev["ph"] in ("s", "f")]:
        if not any(x["ts"] <= ev["ts"] <= x["ts"] + x["dur"]
                   for x in by_track.get((ev["pid"], ev["tid"]), [])):
            slices.append({"name": "evtchn", "cat": "evtchn", "ph": "X", "pid": ev["pid"],
                           "tid": ev["tid"], "ts": ev["ts"], "dur": 0.0, "args": {}})
            tracks.add((ev["pid"], ev["tid"]))
    out += slices
    meta = [{"name": "process_name", "ph": "M", "pid": PCPU_PID, "tid": 0,
             "args": {"name": "pCPUs"}}]
    meta += [{"name": "thread_name", "ph": "M", "pid": PCPU_PID, "tid": c,
              "args": {"name": f"pCPU {c}"}} for c in sorted(pcpus)]
    for pid in sorted({p for p, _ in tracks if p != PCPU_PID}):
        domid = pid - DOM_PID_BASE
        meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                     "args": {"name": f"d{domid} {names.get(domid, '')}".strip()}})
    for pid, tid in sorted(t for t in tracks if t[0] != PCPU_PID):
        meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                     "args": {"name": "domain" if tid == DOM_TID else f"vCPU {tid}"}})
    out.sort(key=lambda ev: (ev["ts"], ev["ph"] != "X"))
    return {"traceEvents": meta + out, "displayTimeUnit": "ns"}


def _nested(slices: list[dict[str, Any]]) -> None:
    """Complete events on one thread must nest: a slice that outlives its parent is cut at the
    parent's end (an interrupt handler still open when its vCPU was descheduled)."""
    by_track: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for s in slices:
        by_track.setdefault((s["pid"], s["tid"]), []).append(s)
    for track in by_track.values():
        track.sort(key=lambda s: (s["ts"], -s["dur"]))
        stack: list[dict[str, Any]] = []
        for s in track:
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= s["ts"]:
                stack.pop()
            if stack:
                end = stack[-1]["ts"] + stack[-1]["dur"]
                s["dur"] = max(0.0, min(s["dur"], end - s["ts"]))
            stack.append(s)


# -- commands ------------------------------------------------------------------------------------

def cmd_start(ns) -> int:
    from toolstack.xc import XcError
    xc = _xc()
    try:
        xc.tbuf_op(S.XEN_SYSCTL_TBUFOP_disable)
        if ns.size is not None:
            xc.tbuf_op(S.XEN_SYSCTL_TBUFOP_set_size, size=ns.size)
        info = xc.tbuf_op(S.XEN_SYSCTL_TBUFOP_enable)
    except XcError as e:
        raise Failure(f"xenpy trace start: {e}") from None
    print(f"tracing, {info['size']} events kept")
    return 0


def cmd_stop(ns) -> int:
    info = _xc().tbuf_op(S.XEN_SYSCTL_TBUFOP_disable)
    print(f"tracing stopped, {info['used']} events in the buffer")
    return 0


def cmd_dump(ns) -> int:
    xc = _xc()
    # Ordered by time: a hypercall is recorded when it ends, with the time it began, and
    # pCPUs append concurrently.
    events = sorted(xc.trace_read(0), key=lambda e: (e["ns"], e["seq"]))
    fmt = ns.format or ("json" if ns.file.endswith(".json") else "text")
    if fmt == "json":
        names: dict[int, str] = {}
        try:          # the names of the domains still alive label their tracks
            from toolstack.libxl import Libxl
            from toolstack.xs import XsClient
            names = {i.domid: i.name for i in Libxl(xc, XsClient()).list_domains()}
        except Exception:  # noqa: BLE001 - names are a nicety; the trace is what matters
            pass
        text = json.dumps(chrome_trace(events, names))
    else:
        text = "\n".join(text_lines(events)) + ("\n" if events else "")
    try:
        if ns.file == "-":
            sys.stdout.write(text)
        else:
            with open(ns.file, "w") as f:
                f.write(text)
    except OSError as e:
        raise Failure(f"xenpy trace dump: {ns.file}: {e.strerror}") from None
    if ns.file != "-":
        print(f"{len(events)} events written to {ns.file} ({fmt})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xenpy trace", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="clear the buffer and start tracing",
                       description="Clear the trace buffer and start tracing every event.")
    s.add_argument("--size", type=int, metavar="N", help="events kept (default 65536)")
    s.set_defaults(func=cmd_start)
    s = sub.add_parser("stop", help="stop tracing", description="Stop tracing; the buffer stays.")
    s.set_defaults(func=cmd_stop)
    s = sub.add_parser("dump", help="write the buffer to FILE",
                       description="Write the trace buffer to FILE ('-': stdout): text like "
                                   "xentrace_format's, or Chrome/Perfetto trace-event JSON.")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--format", choices=("text", "json"),
                   help="default: json for a FILE ending in .json, text otherwise")
    s.set_defaults(func=cmd_dump)
    return p


def main(argv: list[str]) -> int:
    return dispatch(build_parser(), argv)
