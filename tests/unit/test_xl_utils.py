"""xl's helpers against Xen's C: yajl's beautified JSON, print_bitmap, parse_mem_size_kb, the
command table's lookup."""
from __future__ import annotations

import json

from toolstack.libxl_json import yajl_dumps
from toolstack.xl.cmdtable import CMD_TABLE, lookup
from toolstack.xl.utils import parse_mem_size_kb, print_bitmap


def test_yajl_beautify():
    # yajl_gen_map_open: "{" "\n"; yajl_gen_map_close: "\n" indent "}"; FINAL_NEWLINE at depth 0
    assert yajl_dumps({}) == "{\n\n}\n"
    assert yajl_dumps({"a": {}, "b": [], "c": [1, 2]}) == (
        '{\n    "a": {\n\n    },\n    "b": [\n\n    ],\n    "c": [\n        1,\n        2\n    ]\n}\n')
    assert yajl_dumps({"s": "tab\t\"q\" /é", "n": None}) == \
        '{\n    "s": "tab\\t\\"q\\" /é",\n    "n": null\n}\n'
    doc = {"x": [{"y": {}}, "z"]}
    assert json.loads(yajl_dumps(doc)) == doc


def test_print_bitmap():
    # xl_utils.c print_bitmap: "all" only when every bit from 0 is set, "none" when none
    assert print_bitmap(set(range(4)), 4) == "all"
    assert print_bitmap(set(), 4) == "none"
    assert print_bitmap({1}, 4) == "1"
    assert print_bitmap({0, 1, 3}, 4) == "0-1,3"
    assert print_bitmap({1, 2, 3}, 4) == "1-3"


def test_parse_mem_size_kb():
    # strtoll, then: 't' <<10 'g' <<10 '\0'/'m' <<10 'k' ; 'b' >>10; more than one char: -1
    assert parse_mem_size_kb("16") == 16 << 10
    assert parse_mem_size_kb("16m") == parse_mem_size_kb("16M") == 16 << 10
    assert parse_mem_size_kb("2g") == 2 << 20
    assert parse_mem_size_kb("1t") == 1 << 30
    assert parse_mem_size_kb("512k") == 512
    assert parse_mem_size_kb("4096b") == 4
    assert parse_mem_size_kb("12q") == -1
    assert parse_mem_size_kb("12mb") == -1
    assert parse_mem_size_kb("x") == -1


def test_cmdtable_lookup_allows_unambiguous_prefixes():
    assert lookup("vcpu-list").name == "vcpu-list"
    assert lookup("vcpu-l").name == "vcpu-list"
    assert lookup("vcpu") is None                   # vcpu-list, vcpu-pin, vcpu-set
    assert lookup("list").name == "list"            # exact, though it prefixes nothing else
    assert lookup("dom") is None and lookup("domn").name == "domname"
    names = [c.name for c in CMD_TABLE]
    assert len(names) == len(set(names))
    for c in CMD_TABLE:                             # every handler exists
        assert callable(c.handler())
