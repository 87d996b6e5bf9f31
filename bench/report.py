"""The README's performance tables, from the benchmarks' JSON results (bench/results/*.json).

    python bench/report.py              print the tables (markdown)
    python bench/report.py --readme     rewrite them in README.md, between its markers

Run the benchmarks first (each writes its JSON); nothing here measures anything.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench/results"
BEGIN, END = "<!-- bench/report.py: begin -->", "<!-- bench/report.py: end -->"


def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def tables() -> str:
    fl, gr, gc = load("first_light"), load("grants"), load("gntcmd")
    irq, xs, er = load("interrupts"), load("xenstore"), load("erika")
    rtt = er["command_round_trip_us"]
    q, ld = er["alarm_jitter_quiet_us"], er["alarm_jitter_loaded_us"]
    sh = er["alarm_jitter_beside_2_busy_guests_pool0_us"]
    rt = er["alarm_jitter_beside_2_busy_guests_rt_null_pool_us"]
    out = [
        table(("measure (`python bench/first_light.py`)", "bare Unicorn", "xenpy", "ratio"), [
            ("A32 integer loop, 1G instructions", f"{fl['compute_mips_bare']:.0f} MIPS",
             f"{fl['compute_mips_xenpy']:.0f} MIPS", f"{fl['compute_ratio']:.2f} (target >= 0.9)"),
            ("null hypercall round trip vs the bare HVC trap",
             f"{fl['hypercall_us_bare_trap']:.2f} us",
             f"{fl['hypercall_us_xenpy']:.2f} us", f"{fl['hypercall_ratio']:.2f} (target <= 2)"),
            ("the same loop on the deterministic board (`--deterministic`)", "",
             f"{fl['compute_mips_deterministic']:.0f} MIPS",
             f"{fl['deterministic_ratio']:.2f} of free running (target >= 0.25)"),
            ("`xl create` to the guest's first console line", "",
             f"{fl['create_to_first_line_ms']:.0f} ms in-process, "
             f"{fl['xl_create_c_cli_total_ms'] / 1000:.1f} s for the `xl create -c` command", ""),
        ]),
        table(("measure (`python bench/interrupts.py`)", "value"), [
            ("the host's own hand-off in the same run: a pipe round trip between two processes",
             f"{irq['host_handoff_us']:.1f} us"),
            ("null hypercall, timed by the guest (CNTVCT)",
             f"{irq['null_hypercall_ns'] / 1000:.1f} us"),
            ("event-channel round trip between two domUs on two pCPUs",
             f"{irq['evtchn_rtt_avg_us']:.0f} us avg ({irq['evtchn_rtt_min_us']:.0f} min), "
             f"{irq['evtchn_rtt_over_null_hypercall']:.0f} x a null hypercall (target <= 10)"),
            ("... on two pCPUs with the host's cores kept busy (no idle wake-ups)",
             f"{irq['host_busy_evtchn_rtt_avg_us']:.0f} us avg "
             f"({irq['host_busy_evtchn_rtt_min_us']:.0f} min), "
             f"{irq['host_busy_evtchn_rtt_over_null_hypercall']:.0f} x a null hypercall"),
            ("... both domUs on one pCPU",
             f"{irq['one_pcpu_evtchn_rtt_avg_us']:.0f} us avg "
             f"({irq['one_pcpu_evtchn_rtt_min_us']:.0f} min), "
             f"{irq['one_pcpu_evtchn_rtt_over_null_hypercall']:.0f} x a null hypercall "
             "(target <= 4)"),
            ("1 ms virtual-timer tick lateness p50 / p90 / p99",
             f"{irq['timer_p50_us']:.0f} / {irq['timer_p90_us']:.0f} / "
             f"{irq['timer_p99_us']:.0f} us (p99 target <= 100)"),
            ("timer / self-SGI interrupts a guest can take",
             f"{irq['maxrate_interrupts_per_s']:.0f} / {irq['self_sgi_per_s']:.0f} per second "
             "(target >= 50,000)"),
            ("... self-SGIs taken as IRQ exceptions of a running loop",
             f"{irq['self_sgi_exception_per_s']:.0f} per second"),
            ("vCPU to vCPU round trip, event-channel IPI / SGI",
             f"{irq['ipi_evtchn_rtt_avg_us']:.0f} / {irq['ipi_sgi_rtt_avg_us']:.0f} us"),
        ]),
        table(("measure (`python bench/grants.py`, `python bench/gntcmd.py`)", "value"), [
            ("grant map + unmap pairs per second: hypercall / dom0 gntdev",
             f"{gr['map_unmap_pairs_per_s_hypercall']:.0f} / "
             f"{gr['map_unmap_pairs_per_s_dom0_gntdev']:.0f}"),
            ("GNTTABOP_copy throughput (4 KiB, batches of 16)",
             f"{gr['copy_mb_per_s_hypercall_4k_batch16']:.0f} MB/s"),
            ("dom0 command to a domU through a granted page and an event channel, round trip",
             f"{gc['round_trip_us']['median']:.0f} us median ({gc['round_trip_us']['min']:.0f} "
             f"min), {gc['commands_per_s']:.0f} commands/s"),
        ]),
        table(("measure (`python bench/erika.py`: the Cubieboard2 flagship)", "value"), [
            (f"ERIKA's {er['heartbeat']['period_ms']} ms heartbeat alarm, lateness avg / max: "
             "quiet / dom0 toggling PD12 non-stop",
             f"{q['avg_us']} / {q['max_us']} us, {ld['avg_us']} / {ld['max_us']} us "
             f"(ratio {er['jitter_avg_ratio_loaded_to_quiet']:.2f})"),
            ("dom0 pin command round trip (`erika-xen` driver -> RTOS -> A20 GPIO -> notify-back)",
             f"{rtt['median']:.0f} us median ({rtt['min']:.0f} min), {er['commands_per_s']:.0f} "
             f"commands/s = {er['round_trip_in_privcmd_calls']:.1f} privcmd calls"),
            ("the RTOS's share: upcall to notify-back, incl. its XenStore read and bind/send/close",
             f"{er['rtos_service_us']['median']:.0f} us median"),
            ("heartbeat lateness avg / max beside two busy guests: all in Pool-0 (credit2, both "
             "pCPUs) / the RTOS alone in the null pool `rt` on pCPU 1",
             f"{sh['avg_us']} / {sh['max_us']} us, {rt['avg_us']} / {rt['max_us']} us "
             f"(ratio {er['jitter_avg_ratio_pool0_to_rt_pool']:.1f})"),
        ]),
        table(("XenStore operations per second (`python bench/xenstore.py`)", "dom0 socket",
               "dom0 socket, host busy", "guest ring"),
              [(name, f"{xs['socket'][key]:.0f}" + (f" (target >= {xs['socket_targets'][key]})"
                                                      if key in xs.get("socket_targets", {}) else ""),
                f"{xs['socket_host_busy'][key]:.0f}", f"{xs['ring'][key]:.0f}")
               for name, key in (("read", "read"), ("write", "write"), ("directory", "directory"),
                                 ("transaction (start, read, write, commit)", "transaction"))]),
        robustness(load("soak"), load("hostile")),
        scale(load("scale")),
    ]
    return "\n\n".join(out)


def robustness(so: dict, ho: dict) -> str:
    st, wm, en = so["start"], so["warm"], so["end"]
    return table(("survival (`python bench/soak.py`, `python bench/hostile.py`)", "value"), [
        (f"create, run, destroy the hello guest {so['cycles']} times: board RSS / fds / threads",
         f"{st['rss_kb'] / 1024:.1f} MB / {st['fds']} / {st['threads']} after the first, "
         f"{wm['rss_kb'] / 1024:.1f} MB after {wm['cycles']}, {en['rss_kb'] / 1024:.1f} MB / "
         f"{en['fds']} / {en['threads']} at the end ({so['rss_growth_over_start'] * 100:+.0f}% "
         f"RSS), {so['cycles_per_s']:.1f} cycles/s"),
        ("random hypercalls (wild pointers included) from hostile domains on pCPU 0",
         f"{ho['hypercalls']:,} in {ho['seconds']:.0f} s ({ho['hypercalls_per_s']:,}/s) by "
         f"{ho['hostile_domains']} domains, board errors: {len(ho['board_errors'])}"),
        (f"beside them, ERIKA's {ho['rtos_period_ms']} ms heartbeat on pCPU 1 "
         f"({ho['rtos_beats']} beats): lateness avg / worst",
         f"{ho['rtos_late_avg_us'] / 1000:.1f} / {ho['rtos_late_max_us'] / 1000:.0f} ms; "
         f"{ho['rtos_expiries']} alarm expiries for its {ho['rtos_beats']} beats, the RTOS "
         f"ran on"),
    ])


def scale(sc: dict) -> str:
    idle, busy, t = sc["idle"], sc["busy"], sc["targets"]
    lst = idle["xl_list_ms"]
    one, two = busy["one_pcpu"], busy["two_pcpus"]
    return table(("scale (`python bench/scale.py`)", "value"), [
        (f"{idle['domains']} idle domUs ({idle['memory_mb']} MB, WFI): board CPU",
         f"{idle['board_cpu_percent_idle_domains']:.1f}% of a core (target < "
         f"{t['idle_cpu_percent_of_a_core']:.0f}%; empty board "
         f"{idle['board_cpu_percent_empty']:.1f}%)"),
        (f"`xl list` of {idle['domains'] + 1} domains, median / max of {lst['runs']} runs",
         f"{lst['median']:.0f} / {lst['max']:.0f} ms (target < {t['xl_list_ms']:.0f} ms)"),
        ("board RSS and descriptors per idle domU",
         f"{idle['rss_kb']['per_domain'] / 1024:.1f} MB, {idle['fds']['per_domain']:.0f}"),
        ("two busy domUs (stress, 1 vCPU each): 2 pCPUs over 1",
         f"{busy['ratio_2_over_1']:.2f} x (target >= {t['busy_2_over_1_pcpus']}): "
         f"{one['iterations_per_s'] / 1e6:.1f} / {two['iterations_per_s'] / 1e6:.1f} M "
         f"iterations/s, board on {one['board_cores_used']:.2f} / "
         f"{two['board_cores_used']:.2f} host cores (work per board CPU second: "
         f"{busy['per_board_cpu_s_2_over_1']:.2f} x)"),
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readme", action="store_true", help="rewrite the tables in README.md")
    args = ap.parse_args()
    text = tables()
    if not args.readme:
        print(text)
        return 0
    readme = ROOT / "README.md"
    s = readme.read_text()
    if BEGIN not in s or END not in s:
        print(f"bench/report.py: README.md has no {BEGIN} ... {END} markers", file=sys.stderr)
        return 1
    head, rest = s.split(BEGIN, 1)
    readme.write_text(f"{head}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
