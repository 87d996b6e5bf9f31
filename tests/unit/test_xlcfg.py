"""xl config file syntax (toolstack.xlcfg), the libxlu equivalent.

Expected messages are xl's.  The golden parse errors under cfg/ were checked against libxlu
built from xen.git's own parser sources; xenpy differs only by the " (column N)" suffix and by
naming the line a newline token ends (xl prints the line before it).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolstack.xlcfg import (PYTHON_WARNING, Cfg, CfgParseError, CfgValueError, parse_cfg,
                             render_value)

CFG_DIR = Path(__file__).parent / "cfg"


def errors(text: str, name: str = "t.cfg", extra: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(CfgParseError) as exc:
        parse_cfg(text, name, extra)
    return exc.value.messages


def value(text: str, key: str = "a"):
    s = parse_cfg(text, "t.cfg").setting(key)
    assert s is not None
    return s.value


# ---- golden files


def test_grammar_golden() -> None:
    cfg = parse_cfg((CFG_DIR / "grammar.cfg").read_text(), "grammar.cfg")
    expected = json.loads((CFG_DIR / "grammar.settings.json").read_text())
    got = {n: {"value": cfg.setting(n).value, "lineno": cfg.setting(n).lineno,
               "op": cfg.setting(n).op} for n in cfg.names()}
    assert got == expected


@pytest.mark.parametrize("name", ["bad_python", "bad_multi", "bad_strings", "bad_addto",
                                  "bad_eof"])
def test_parse_error_golden(name: str) -> None:
    text = (CFG_DIR / f"{name}.cfg").read_text()
    expected = (CFG_DIR / f"{name}.err").read_text().splitlines()
    assert errors(text, f"{name}.cfg") == expected


# ---- tokens


def test_ident_is_lower_case_with_dots_digits_underscores() -> None:
    cfg = parse_cfg("a.b_9.c = 1\n", "t.cfg")
    assert cfg.names() == ["a.b_9.c"]
    assert errors("Name = 1\n") == ["t.cfg:1: config parsing error near `Name': lexical error"
                                    " (column 1)"]


def test_number_is_kept_as_text_and_converted_like_strtol_base_0() -> None:
    cfg = parse_cfg("hex = 0x100\noct = 010\ndec = 12\nbad = 12abc\nquoted = \"  -5\"\n", "t")
    assert cfg.get_string("hex") == "0x100"
    assert (cfg.get_long("hex"), cfg.get_long("oct"), cfg.get_long("dec")) == (256, 8, 12)
    assert cfg.get_long("quoted") == -5
    with pytest.raises(CfgValueError) as exc:
        cfg.get_long("bad")
    assert str(exc.value) == "t:4: warning: parameter `bad' is not a valid number"


@pytest.mark.parametrize("text,near", [("a = -5\n", "-5"), ("a = 1.5\n", ".5"),
                                       ("a = (1)\n", "(1)"), ("a = b:c\n", ":c")])
def test_sign_point_parens_colon_are_lexical_errors_that_look_like_python(
        text: str, near: str) -> None:
    msgs = errors(text)
    assert f"near `{near}': lexical error" in msgs[-4]
    assert msgs[-3:] == list(PYTHON_WARNING)


def test_other_bad_characters_are_lexical_errors_without_python_warning() -> None:
    assert errors("a = 1 $\nb = 2\n") == [
        "t.cfg:1: config parsing error near `$': lexical error (column 7)"]
    assert errors("a = 1\r\n") == ["t.cfg:1: config parsing error near `\r': lexical error"
                                   " (column 6)"]


def test_strings_single_and_double_quoted() -> None:
    assert value("a = 'it\\'s \"x\"'\n") == "it's \"x\""
    assert value('a = "it\'s"\n') == "it's"
    assert value('a = ""\n') == ""


def test_string_escapes() -> None:
    assert value(r'a = "\"\'\\\a\b\f\n\r\t\v"' + "\n") == "\"'\\\a\b\f\n\r\t\v"


def test_hex_escape_is_always_rejected_as_in_libxlu() -> None:
    assert errors('a = "\\x41"\n') == [
        "t.cfg:1: config parsing error near `\"\\x41\"': invalid digit after backslash"
        " hexnumerical character escape in quoted string (column 5)"]


def test_octal_escape_is_consumed_but_produces_nothing() -> None:
    assert value('a = "a\\101b"\n') == "ab"
    assert value('a = "\\0101"\n') == ""
    # It wants two more digits after the first one.
    assert errors('a = "\\12"\n') == [
        "t.cfg:1: config parsing error near `\"\\12\"': invalid digit after backslash"
        " octalnumerical character escape in quoted string (column 5)"]


def test_unknown_escape_message_keeps_libxlu_spelling() -> None:
    assert errors('a = "\\q"\n') == [
        "t.cfg:1: config parsing error near `\"\\q\"': invalid character after backlash"
        " in quoted string (column 5)"]


def test_strings_do_not_span_lines() -> None:
    assert errors('a = "one\ntwo"\n')[0] == (
        "t.cfg:1: config parsing error near `\"one': lexical error (column 5)")


def test_no_backslash_continuation() -> None:
    assert errors('a = \\\n "x"\n')[0].startswith(
        "t.cfg:1: config parsing error near `\\': lexical error")


# ---- statements


def test_statement_terminators_and_empty_statements() -> None:
    cfg = parse_cfg(";;\n\n a = 1 ; b = 2;;\n\n\tc = 3", "t.cfg")
    assert [(n, cfg.get_string(n), cfg.lineno(n)) for n in cfg.names()] == [
        ("a", "1", 3), ("b", "2", 3), ("c", "3", 5)]


def test_empty_and_comment_only_files() -> None:
    assert parse_cfg("", "t.cfg").names() == []
    assert parse_cfg("# nothing\n\n   # here\n", "t.cfg").names() == []


def test_comments_follow_values() -> None:
    cfg = parse_cfg("a = 1 # one\nb = [ 2, # two\n 3 ]\n", "t.cfg")
    assert (cfg.get_string("a"), cfg.get_list("b")) == ("1", ["2", "3"])


def test_comment_on_last_line_without_newline_is_a_libxlu_lexical_error() -> None:
    # flex's comment rule needs the newline; a lone '#' at the very end is silently dropped.
    assert errors("a = 1 # tail") == [
        "t.cfg:1: config parsing error near `#': lexical error (column 7)"]
    assert parse_cfg("a = 1 #", "t.cfg").get_string("a") == "1"


def test_last_assignment_wins() -> None:
    cfg = parse_cfg("a = 1\nb = 2\na = [3]\n", "t.cfg")
    assert cfg.get_list("a") == ["3"] and cfg.lineno("a") == 3
    assert cfg.names() == ["b", "a"]


# ---- lists


def test_nested_mixed_lists_over_several_lines() -> None:
    assert value('a = [ 1, "two",\n\n  [ \'x\', [] ],\n  [ ] ]\n') == ["1", "two", ["x", []], []]


def test_list_setting_line_is_the_opening_bracket() -> None:
    cfg = parse_cfg("\n\nx = [\n 1,\n 2 ]\n", "t.cfg")
    assert cfg.lineno("x") == 3


def test_trailing_comma_allowed_lone_comma_not() -> None:
    assert value("a = [1,\n]\n") == ["1"]
    assert value("a = [\n]\n") == []
    assert errors("a = [,]\n") == [
        "t.cfg:1: config parsing error near `,': syntax error, unexpected ',', expecting ']'"
        " (column 6)"]
    # After "1," bison has already reduced the list, so only ']' can follow.
    assert errors("a = [1,,2]\n")[0].endswith("syntax error, unexpected ',', expecting ']'"
                                              " (column 8)")


def test_list_items_need_commas() -> None:
    assert errors('a = ["x" "y"]\n') == [
        "t.cfg:1: config parsing error near `\"y\"': syntax error, unexpected STRING,"
        " expecting ']' (column 10)"]


# ---- +=


def test_addto_concatenates_strings_and_appends_lists() -> None:
    cfg = parse_cfg('s = "a"\ns += "b"\nl = [1]\nl += [2, [3]]\nn += "new"\n', "t.cfg")
    assert cfg.get_string("s") == "ab" and cfg.setting("s").op == "+="
    assert cfg.get_list("l") == ["1", "2", ["3"]]
    assert cfg.get_string("n") == "new"


def test_addto_mixing_types_is_an_error() -> None:
    assert errors('a = "x"\na += [\n"y" ]\n') == [
        "t.cfg:3: config parsing error near `]': can't add [list] to \"string\" or vice versa"
        " (column 5)"]
    assert errors('a = ["x"]\na += "y"\n')[0].startswith(
        "t.cfg:2: config parsing error near `\"y\"': can't add [list] to \"string\"")


def test_addto_number_is_parsed_but_not_a_number() -> None:
    cfg = parse_cfg("a = 1\na += 2\n", "t.cfg")
    assert cfg.get_string("a") == "12"
    with pytest.raises(CfgValueError) as exc:
        cfg.get_long("a")
    assert str(exc.value) == "t.cfg:2: warning: can't use += with numbers for parameter `a'"


# ---- syntax error messages and recovery


@pytest.mark.parametrize("text,msg", [
    ("name = vm1\n", "t.cfg:1: config parsing error near `vm1': syntax error, unexpected IDENT,"
                     " expecting STRING or NUMBER or '[' (column 8)"),
    ("= 1\n", "t.cfg:1: config parsing error near `=': syntax error, unexpected '=',"
              " expecting $end or IDENT or NEWLINE or ';' (column 1)"),
    ("a 1\n", "t.cfg:1: config parsing error near `1': syntax error, unexpected NUMBER,"
              " expecting += or '=' (column 3)"),
    ("a = 1 2\n", "t.cfg:1: config parsing error near `2': syntax error, unexpected NUMBER,"
                  " expecting $end (column 7)"),
    ("a =\n", "t.cfg:1: config parsing error near <newline>: syntax error, unexpected NEWLINE,"
              " expecting STRING or NUMBER or '[' (column 4)"),
    ("a = # c\n", "t.cfg:1: config parsing error near `# c': syntax error, unexpected NEWLINE,"
                  " expecting STRING or NUMBER or '[' (column 5)"),
    ("a = [1", "t.cfg:1: config parsing error near `': syntax error, unexpected $end,"
               " expecting ']' (column 7)"),
    ("b", "t.cfg:1: config parsing error near `': syntax error, unexpected $end,"
          " expecting += or '=' (column 2)"),
])
def test_bison_messages(text: str, msg: str) -> None:
    assert errors(text) == [msg]


def test_several_errors_are_all_reported() -> None:
    msgs = errors("a = = 1\nb = 2\nc = d\ne = [1 2]\nF = 3\ng = 4\n")
    assert [m.split(": config")[0] for m in msgs] == ["t.cfg:1", "t.cfg:3", "t.cfg:4",
                                                      "t.cfg:5"]


def test_an_error_just_after_recovery_is_not_reported() -> None:
    # bison stays quiet until three tokens were shifted after an error.
    msgs = errors("a = = 1\nb c\nd = = 2\n")
    assert [m.split(": config")[0] for m in msgs] == ["t.cfg:1", "t.cfg:3"]


def test_nothing_more_on_a_line_with_a_lexical_error() -> None:
    assert errors("Name = = 1\n") == [
        "t.cfg:1: config parsing error near `Name': lexical error (column 1)"]


def test_parser_gives_up_after_a_value_follows_a_complete_file() -> None:
    # "expecting $end": the parse is already reduced to a file, so there is nowhere to recover.
    msgs = errors('a = "x" "y"\nb = = 2\n')
    assert msgs == ["t.cfg:1: config parsing error near `\"y\"': syntax error, unexpected"
                    " STRING, expecting $end (column 9)"]


def test_python_warnings_only_when_parsing_failed() -> None:
    assert errors("a = vm-1\n")[-3:] == list(PYTHON_WARNING)
    assert parse_cfg("a = 1 +", "t.cfg").get_string("a") == "1"  # lone char at EOF: dropped


# ---- extra KEY=VALUE lines from the command line


def test_extra_lines_override_the_file() -> None:
    cfg = parse_cfg("memory = 128\nname = 'a'\n", "vm.cfg", ["memory=256", 'name += "b"'])
    assert cfg.get_long("memory") == 256
    # xl appends "\n" and the KEY=VALUE lines to the file's text: line 2 is the file's last,
    # line 3 the empty separator, line 4 the first argument
    assert (cfg.setting("memory").source, cfg.lineno("memory")) == ("vm.cfg", 4)
    assert cfg.get_string("name") == "ab"
    assert cfg.setting("name").source == "vm.cfg"


def test_extra_lines_after_a_file_without_final_newline() -> None:
    cfg = parse_cfg("a = 1", "vm.cfg", ["b = 2"])
    assert (cfg.get_string("a"), cfg.get_string("b")) == ("1", "2")
    assert cfg.setting("a").source == "vm.cfg"


def test_errors_in_extra_lines_are_numbered_after_the_file() -> None:
    assert errors("a = 1\n", "vm.cfg", ("b = 2", "c = = 3")) == [
        "vm.cfg:4: config parsing error near `=': syntax error, unexpected '=',"
        " expecting STRING or NUMBER or '[' (column 5)"]


# ---- xlu_cfg_get_* API


def test_getters_on_missing_keys_return_none() -> None:
    cfg = parse_cfg("", "t.cfg")
    assert cfg.get_string("x") is None and cfg.get_long("x") is None
    assert cfg.get_list("x") is None and cfg.get_string_or_list("x") is None
    assert not cfg.has("x") and cfg.lineno("x") is None
    assert cfg.filename == "t.cfg"


def test_getter_type_errors_carry_xl_warnings() -> None:
    cfg = parse_cfg("l = [1]\ns = 'x'\n", "t.cfg")
    with pytest.raises(CfgValueError) as exc:
        cfg.get_string("l")
    assert str(exc.value) == "t.cfg:1: warning: parameter `l' is a list but should be a" \
                             " single value"
    assert (exc.value.source, exc.value.lineno) == ("t.cfg", 1)
    with pytest.raises(CfgValueError, match="t.cfg:2: warning: parameter `s' is a single"
                                            " value but should be a list"):
        cfg.get_list("s")
    assert cfg.get_string("l", dont_warn=True) is None
    assert cfg.get_list("s", dont_warn=True) is None
    assert cfg.get_string_or_list("l") == ["1"]


def test_bounded_long_and_range_errors() -> None:
    cfg = parse_cfg("a = 5\nbig = 99999999999999999999\n", "t.cfg")
    assert cfg.get_bounded_long("a", 0, 10) == 5
    with pytest.raises(CfgValueError, match=r"value `5' is smaller than minimum bound '6'"):
        cfg.get_bounded_long("a", 6, 10)
    with pytest.raises(CfgValueError, match=r"value `5' is greater than maximum bound '4'"):
        cfg.get_bounded_long("a", 0, 4)
    with pytest.raises(CfgValueError) as exc:
        cfg.get_long("big")
    assert str(exc.value) == ("t.cfg:2: warning: parameter `big' could not be parsed as a"
                              " number: Numerical result out of range")


def test_list_as_string_list_marks_nested_entries() -> None:
    cfg = parse_cfg("l = ['a', ['b'], 'c']\n", "t.cfg")
    assert cfg.get_list_as_string_list("l") == ["a", None, "c"]


# ---- properties

values = st.recursive(
    st.text(st.characters(blacklist_categories=("Cs",))) | st.from_regex(r"[0-9][0-9a-fx]*",
                                                                         fullmatch=True),
    lambda inner: st.lists(inner, max_size=4), max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(values, st.booleans())
def test_rendered_values_parse_back(v, numbers_bare: bool) -> None:
    text = render_value(v)
    if numbers_bare and isinstance(v, str) and v[:1].isdigit() and v.isascii() \
            and all(c in "0123456789abcdefx" for c in v):
        text = v  # a NUMBER token
    assert value(f"key = {text}\n", "key") == v


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab=+[],;'\"#\\ \n\t-.$X1x")), max_size=40))
def test_any_text_parses_or_fails_with_messages(text: str) -> None:
    try:
        cfg = parse_cfg(text, "t.cfg")
    except CfgParseError as e:
        assert e.messages and all(m.startswith(("t.cfg:", "warning:")) for m in e.messages)
    else:
        assert isinstance(cfg, Cfg)
