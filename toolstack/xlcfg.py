"""xl domain configuration file parser: the libxlu (libxlutil) equivalent.

The grammar below is Xen's libxlu_cfg_y.y rule for rule, and the terminals are its flex rules
(libxlu_cfg_l.l), so the same text is accepted or rejected as by `xl create`, with the same
messages.  lark supplies the LALR(1) tables and the contextual lexer; a small driver walks the
tables the way a bison parser does, because users see bison's behaviour in the messages:

* default reductions: an error is reported in the state bison reaches after them, so the list of
  expected tokens is bison's (`a = "x" "y"` -> "expecting $end"), and assignments are stored
  before the next token is read;
* the `error NEWLINE` recovery rule and bison's three-token error status, so several errors in
  one file are reported, but not an error right after the one just recovered from;
* libxlu's own rules: nothing more is reported on a line once a lexical error was reported for it,
  and after the first error values are no longer stored or checked.

xl's messages are reproduced with two deliberate changes: a column is appended as " (column N)",
and an error on a newline token names the line the newline ends (xl prints the line before it).
"""

from __future__ import annotations

import errno as _errno
import os
from dataclasses import dataclass
from typing import Iterator, Sequence, Union

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedToken
from lark.lark import PostLex

Value = Union[str, list["Value"]]

# Same rule order as libxlu_cfg_y.y.  Terminal names follow the flex rules; LEXERR is the text
# flex's error start condition swallows (the offending character plus the rest of the word), so
# it matches exactly where no real token can start.  flex works on bytes: after the first byte of
# a multi-byte UTF-8 character the rest of the word, never a lone space or newline, is swallowed.
# (Undecodable bytes arrive as surrogate escapes and count as single bytes.)
GRAMMAR = r"""
file: stmts
    | stmts assignment

stmts:
     | stmts stmt

stmt: assignment endstmt
    | endstmt

assignment: IDENT EQUALS value
          | IDENT OP_ADD value

endstmt: NEWLINE
       | SEMICOLON

value: atom
     | LSQB nlok valuelist RSQB

atom: STRING
    | NUMBER

valuelist:
         | values
         | values COMMA nlok

values: value nlok
      | values COMMA nlok value nlok

nlok:
    | nlok NEWLINE

IDENT: /[a-z][._0-9a-z]*/
NUMBER: /[0-9][0-9a-fx]*/
STRING: /"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'/
NEWLINE: /#[^\n]*\n|\n/
OP_ADD: "+="
EQUALS: "="
SEMICOLON: ";"
LSQB: "["
RSQB: "]"
COMMA: ","
LEXERR: /(?:[^a-z0-9 \t\n,\[\]=;'"#+\x80-\U0010ffff]|[\udc80-\udcff]|\+(?!=)|#(?![^\n]*\n)|"(?!(?:[^"\\\n]|\\.)*")|'(?!(?:[^'\\\n]|\\.)*'))(?:[^ \t\n]+|[ \t]|\n)?|[\x80-\udc7f\udd00-\U0010ffff][^ \t\n]*/
WS: /[ \t]+/
%ignore WS
"""

# Bison's names for the terminals, and its internal symbol numbers, which order the
# "expecting A or B" list (yytname in libxlu_cfg_y.c).
_BISON_NAME = {
    "$END": ("$end", 0), "IDENT": ("IDENT", 3), "STRING": ("STRING", 4),
    "NUMBER": ("NUMBER", 5), "NEWLINE": ("NEWLINE", 6), "OP_ADD": ("+=", 7),
    "EQUALS": ("'='", 8), "SEMICOLON": ("';'", 9), "LSQB": ("'['", 10),
    "RSQB": ("']'", 11), "COMMA": ("','", 12),
}
_MAX_EXPECTED = 4  # bison lists at most four expected tokens, otherwise none

PYTHON_WARNING = (
    "warning: Config file looks like it contains Python code.",
    "warning:  Arbitrary Python is no longer supported.",
    "warning:  See https://wiki.xen.org/wiki/PythonInXlConfig",
)

COMMAND_LINE = "command line"

LONG_MIN, LONG_MAX = -(1 << 63), (1 << 63) - 1  # xl's `long` on an LP64 dom0


class CfgParseError(Exception):
    """The text is not a valid xl config; `messages` holds every line xl would print."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


class CfgValueError(ValueError):
    """A setting has the wrong type or is not a valid number (xlu_cfg_get_* failures).

    str() is xl's warning line; `text` is the message without location, for callers that
    treat the problem as fatal."""

    def __init__(self, source: str, lineno: int, text: str, err: int = _errno.EINVAL) -> None:
        super().__init__(f"{source}:{lineno}: warning: {text}")
        self.source, self.lineno, self.text, self.errno = source, lineno, text, err


@dataclass
class Setting:
    name: str
    value: Value
    lineno: int
    op: str = "="           # "=" or "+="
    source: str = ""        # the file name (also for KEY=VALUE arguments, as xl numbers them)


# --------------------------------------------------------------------------------------------
# Parser


class _AlwaysLexErrors(PostLex):
    """Lets the contextual lexer match LEXERR in every parser state, as flex would."""

    always_accept = ("LEXERR",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        return stream


class _Tables:
    """lark's LALR table plus what a bison parser derives from it."""

    def __init__(self) -> None:
        self.lark = Lark(GRAMMAR, parser="lalr", lexer="contextual", start="file",
                         postlex=_AlwaysLexErrors())
        conf = self.lark.parse_interactive("").parser_state.parse_conf
        self.states: dict = conf.states
        self.start: int = conf.start_state
        self.end: int = conf.end_state
        # The only state where bison's `stmt: error NEWLINE` can shift `error`.
        self.stmts_state = self.states[self.start]["stmts"][1]
        self.consistent: dict[int, object] = {}   # reduce without reading a lookahead
        self.default: dict[int, object] = {}      # reduce on any unexpected lookahead
        for st, acts in self.states.items():
            reduces = [arg for name, (kind, arg) in acts.items()
                       if name in _BISON_NAME and str(kind) == "Reduce"]
            shifts = [name for name, (kind, _) in acts.items()
                      if name in _BISON_NAME and str(kind) == "Shift"]
            if not reduces or st == self.stmts_state:   # bison: no default next to `error`
                continue
            rule = max(set(reduces), key=reduces.count)
            self.default[st] = rule
            if not shifts and len(set(reduces)) == 1:
                self.consistent[st] = rule


_tables: _Tables | None = None


def _get_tables() -> _Tables:
    global _tables
    if _tables is None:
        _tables = _Tables()
    return _tables


@dataclass
class _Tok:
    type: str       # lark terminal name, or "$END"
    text: str       # what flex's yytext holds after matching it
    value: str      # dequoted for STRING
    line: int       # line where the text starts
    col: int
    locline: int    # the line bison's location holds (differs for a few newline tokens)
    end_col: int


@dataclass
class _Node:
    value: Value
    line: int


class _Pos:
    """The parser position the contextual lexer asks for."""

    def __init__(self, position: int) -> None:
        self.position = position


class _Abort(Exception):
    pass


class _Parse:
    def __init__(self, text: str, filename: str, extra_start: int | None) -> None:
        self.t = _get_tables()
        self.filename = filename
        self.extra_start = extra_start
        interactive = self.t.lark.parse_interactive(text)
        self.lexer = interactive.lexer_thread.lexer
        self.lstate = interactive.lexer_thread.state
        self.messages: list[str] = []
        self.settings: dict[str, Setting] = {}
        self.err = False
        self.lexerrlineno = -1
        self.likely_python = False
        self.lex_position = self.t.start
        self.yylineno = 1
        self.last: _Tok | None = None

    # ---- locations and messages

    def where(self, line: int) -> tuple[str, int]:
        """xl appends the KEY=VALUE arguments to the file's text ("\n" then one line each) and
        parses the whole under the file's name, so their lines are numbered after the file's."""
        return self.filename, line

    def yyerror(self, locline: int, line: int, col: int, text: str | None, msg: str) -> None:
        """libxlu's xlu__cfg_yyerror: `text` is yytext, None at end of file."""
        if locline <= self.lexerrlineno:
            return
        if text is None:   # end of file
            near = "`'"
        else:
            body = text[:-1] if text.endswith("\n") else text
            body = body.rstrip(" \t")
            near = f"`{body}'" if body else "<newline>"
        src, ln = self.where(line)
        self.messages.append(f"{src}:{ln}: config parsing error near {near}: {msg} (column {col})")
        self.err = True

    def lexicalerror(self, tok: _Tok, msg: str) -> None:
        """xlu__cfgl_lexicalerror: blames the current yytext on the lexer's current line."""
        self.yyerror(self.yylineno, tok.line, tok.col, tok.text, msg)
        self.lexerrlineno = self.yylineno

    # ---- lexer

    def _raw(self) -> Token | None:
        try:
            return next(iter(self.lexer.lex(self.lstate, _Pos(self.lex_position))))
        except StopIteration:
            return None
        except UnexpectedToken as exc:       # a real token the current state does not accept
            return exc.token
        except UnexpectedCharacters as exc:  # cannot happen: LEXERR matches any other text
            raise AssertionError(f"unlexable input at line {exc.line}") from exc

    def yylex(self) -> _Tok:
        pending = ""  # flex keeps a lexical error's text in yytext when the file ends
        while True:
            raw = self._raw()
            if raw is None:  # bison keeps the previous token's location
                prev = self.last or _Tok("$END", "", "", 1, 1, 1, 1)
                return _Tok("$END", pending, "", prev.line, prev.end_col, prev.locline, 0)
            text = str(raw)
            tok = _Tok(raw.type, text, text, raw.line, raw.column, raw.line,
                       raw.column + len(text))
            self.yylineno = raw.line + text.count("\n")
            if raw.type == "LEXERR":
                if text[0] in "+-.():":
                    self.likely_python = True
                if len(text.encode("utf-8", "surrogateescape")) == 1:
                    pending = text       # flex gives up silently at end of file
                    continue
                self.lexicalerror(tok, "lexical error")
                if text.endswith("\n"):  # flex returns the newline it swallowed
                    tok.type, tok.locline = "NEWLINE", self.yylineno
                    self.last = tok
                    return tok
                continue
            if raw.type == "STRING":
                tok.value = self.dequote(tok)
            self.last = tok
            return tok

    def dequote(self, tok: _Tok) -> str:
        """xlu__cfgl_dequote, including its broken numeric escapes."""
        if self.err:
            return ""
        src = tok.text
        out: list[str] = []
        p, end = 1, len(src) - 1
        simple = {'"': '"', "'": "'", "\\": "\\", "a": "\a", "b": "\b", "f": "\f",
                  "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
        while p < end:
            c = src[p]
            p += 1
            if c != "\\":
                out.append(c)
                continue
            nc = src[p]
            p += 1
            if nc in simple:
                out.append(simple[nc])
            elif nc == "x":
                # libxlu skips a character, then needs more than two hex digits out of two.
                self.lexicalerror(tok, "invalid digit after backslash hexnumerical character"
                                       " escape in quoted string")
                self.err = True
                break
            elif "0" <= nc <= "7":
                # Meant to read an octal number; it parses up to three characters after the
                # first digit in base 10, needs at least two, and stores nothing.
                used = _strtoul_prefix(src[p:p + 3], 10)
                if used <= 1:
                    self.lexicalerror(tok, "invalid digit after backslash octalnumerical"
                                           " character escape in quoted string")
                    self.err = True
                    break
                p += used
            else:
                self.lexicalerror(tok, "invalid character after backlash in quoted string")
                self.err = True
                break
        return "".join(out)

    # ---- parser

    def expected(self, st: int) -> list[str]:
        if st == self.t.end:
            return ["$END"]
        names = [n for n in self.t.states[st] if n in _BISON_NAME]
        return sorted(names, key=lambda n: _BISON_NAME[n][1])

    def syntax_error(self, st: int, tok: _Tok) -> None:
        msg = f"syntax error, unexpected {_BISON_NAME[tok.type][0]}"
        exp = self.expected(st)
        if len(exp) <= _MAX_EXPECTED:
            msg += ", expecting " + " or ".join(_BISON_NAME[n][0] for n in exp)
        # At end of file yytext is empty, unless a lexical error was left pending there.
        text = tok.text if tok.type != "$END" or tok.text else None
        self.yyerror(tok.locline, tok.line, tok.col, text, msg)

    def reduce(self, rule, stack: list[int], values: list) -> None:
        n = len(rule.expansion)
        args = values[len(values) - n:] if n else []
        if n:
            del stack[-n:]
            del values[-n:]
        values.append(self.action(rule, args))
        origin = rule.origin.name
        stack.append(self.t.states[stack[-1]][origin][1])

    def action(self, rule, a: list):
        name, n = rule.origin.name, len(rule.expansion)
        if name == "atom":
            return _Node(a[0].value, a[0].locline)
        if name == "value":
            return a[0] if n == 1 else _Node(a[2], a[0].locline)
        if name == "valuelist":
            return [] if n == 0 else a[0]
        if name == "values":
            if n == 2:
                return [a[0].value]
            a[0].append(a[3].value)
            return a[0]
        if name == "assignment":
            self.store(a[0].text, "=" if a[1].type == "EQUALS" else "+=", a[2])
        return None

    def store(self, name: str, op: str, node: _Node) -> None:
        """xlu__cfg_set_store."""
        if self.err:
            return
        value = node.value
        prev = self.settings.get(name)
        if op == "+=" and prev is not None:
            if isinstance(prev.value, str) != isinstance(value, str):
                assert self.last is not None
                self.lexicalerror(self.last, "can't add [list] to \"string\" or vice versa")
                self.err = True
                return
            value = prev.value + value  # type: ignore[operator]
        src, ln = self.where(node.line)
        self.settings.pop(name, None)   # keep names() in order of the winning assignment
        self.settings[name] = Setting(name, value, ln, op, src)

    def run(self) -> None:
        t = self.t
        stack, values = [t.start], [None]
        la: _Tok | None = None
        errstatus = 0
        recovering = False  # bison's state `stmt: error . NEWLINE`
        while True:
            if recovering:
                self.lex_position = t.stmts_state
                if la is None:
                    la = self.yylex()
                if la.type == "NEWLINE":   # shift it, reduce to `stmts` again
                    la = None
                    errstatus -= 1
                    recovering = False
                    continue
                if la.type == "$END":
                    raise _Abort
                la = None                  # discarded (errstatus is 3 here)
                continue
            st = stack[-1]
            if st in t.consistent:
                self.reduce(t.consistent[st], stack, values)
                continue
            self.lex_position = st
            if la is None:
                la = self.yylex()
            if st == t.end:
                act = ("Accept", None) if la.type == "$END" else None
            else:
                act = t.states[st].get(la.type)
            if act is not None and act[0] == "Accept":
                return
            if act is None and st in t.default:
                self.reduce(t.default[st], stack, values)
                continue
            if act is not None and str(act[0]) == "Shift":
                stack.append(act[1])
                values.append(la)
                la = None
                if errstatus:
                    errstatus -= 1
                continue
            if act is not None:
                self.reduce(act[1], stack, values)
                continue
            # Syntax error.
            if errstatus == 0:
                self.syntax_error(st, la)
            if errstatus == 3:
                if la.type == "$END":
                    raise _Abort
                la = None
            errstatus = 3
            while stack and stack[-1] != t.stmts_state:
                stack.pop()
                values.pop()
            if not stack:
                raise _Abort
            recovering = True


def _strtoul_prefix(s: str, base: int) -> int:
    """How many characters of `s` strtoul would consume (0 when it finds no number)."""
    i = 0
    while i < len(s) and s[i] in " \t\n\v\f\r":
        i += 1
    if i < len(s) and s[i] in "+-":
        i += 1
    start = i
    while i < len(s) and s[i].isascii() and s[i].isdigit() and int(s[i]) < base:
        i += 1
    return i if i > start else 0


def strtol(s: str) -> tuple[int, int, int]:
    """C strtol(s, &ep, 0) on an LP64 host: (value, characters consumed, errno)."""
    n, i = len(s), 0
    while i < n and s[i] in " \t\n\v\f\r":
        i += 1
    neg = False
    if i < n and s[i] in "+-":
        neg = s[i] == "-"
        i += 1
    base = 10
    if s[i:i + 1] == "0":
        if s[i + 1:i + 2] in ("x", "X") and s[i + 2:i + 3] and \
                s[i + 2] in "0123456789abcdefABCDEF":
            base, i = 16, i + 2
        else:
            base = 8
    digits = "0123456789abcdefABCDEF"[:base + (6 if base == 16 else 0)]
    start = i
    while i < n and s[i] in digits:
        i += 1
    if i == start:
        return 0, 0, 0
    value = int(s[start:i], base)
    value = -value if neg else value
    if value > LONG_MAX:
        return LONG_MAX, i, _errno.ERANGE
    if value < LONG_MIN:
        return LONG_MIN, i, _errno.ERANGE
    return value, i, 0


# --------------------------------------------------------------------------------------------
# The parsed configuration


class Cfg:
    """A parsed config, read with the xlu_cfg_get_* rules.

    Getters return None for a missing setting and raise CfgValueError (carrying xl's warning)
    for a setting of the wrong type; with dont_warn=True they return None instead, as xl's
    callers that try one type and then another do."""

    def __init__(self, filename: str, settings: dict[str, Setting]) -> None:
        self.filename = filename
        self._settings = settings

    def has(self, name: str) -> bool:
        return name in self._settings

    def names(self) -> list[str]:
        return list(self._settings)

    def setting(self, name: str) -> Setting | None:
        return self._settings.get(name)

    def lineno(self, name: str) -> int | None:
        s = self._settings.get(name)
        return s.lineno if s else None

    def source(self, name: str) -> str | None:
        s = self._settings.get(name)
        return s.source if s else None

    def _fail(self, s: Setting, text: str, dont_warn: bool, err: int = _errno.EINVAL) -> None:
        if not dont_warn:
            raise CfgValueError(s.source, s.lineno, text, err)

    def _atom(self, name: str, dont_warn: bool) -> Setting | None:
        s = self._settings.get(name)
        if s is None:
            return None
        if not isinstance(s.value, str):
            self._fail(s, f"parameter `{name}' is a list but should be a single value", dont_warn)
            return None
        return s

    def get_string(self, name: str, dont_warn: bool = False) -> str | None:
        s = self._atom(name, dont_warn)
        return s.value if s else None  # type: ignore[return-value]

    def get_bounded_long(self, name: str, minimum: int, maximum: int,
                         dont_warn: bool = False) -> int | None:
        s = self._atom(name, dont_warn)
        if s is None:
            return None
        assert isinstance(s.value, str)
        if s.op == "+=":
            self._fail(s, f"can't use += with numbers for parameter `{name}'", dont_warn)
            return None
        value, used, err = strtol(s.value)
        if err:
            self._fail(s, f"parameter `{name}' could not be parsed as a number: "
                          f"{os.strerror(err)}", dont_warn, err)
            return None
        if used == 0 or used != len(s.value):
            self._fail(s, f"parameter `{name}' is not a valid number", dont_warn)
            return None
        if value < minimum:
            self._fail(s, f"value `{value}' is smaller than minimum bound '{minimum}'", dont_warn)
            return None
        if value > maximum:
            self._fail(s, f"value `{value}' is greater than maximum bound '{maximum}'", dont_warn)
            return None
        return value

    def get_long(self, name: str, dont_warn: bool = False) -> int | None:
        return self.get_bounded_long(name, LONG_MIN, LONG_MAX, dont_warn)

    def get_list(self, name: str, dont_warn: bool = False) -> list[Value] | None:
        s = self._settings.get(name)
        if s is None:
            return None
        if isinstance(s.value, str):
            self._fail(s, f"parameter `{name}' is a single value but should be a list",
                       dont_warn)
            return None
        return s.value

    def get_list_as_string_list(self, name: str,
                                dont_warn: bool = False) -> list[str | None] | None:
        """Entries that are themselves lists come back as None (xlu_cfg_get_listitem)."""
        items = self.get_list(name, dont_warn)
        if items is None:
            return None
        return [v if isinstance(v, str) else None for v in items]

    def get_string_or_list(self, name: str) -> Value | None:
        s = self._settings.get(name)
        return s.value if s else None


def parse_cfg(text: str, filename: str, extra: Sequence[str] = ()) -> Cfg:
    """Parse config text; `extra` are `xl create FILE KEY=VALUE...` lines, parsed after it.

    Raises CfgParseError with every message xl would print."""
    extra_start = None
    if extra:
        # xl appends "\n" + each argument + "\n" to the file's text and parses the whole.
        extra_start = text.count("\n") + 2
        text = text + "\n" + "".join(e + "\n" for e in extra)
    p = _Parse(text, filename, extra_start)
    try:
        p.run()
    except _Abort:
        pass
    if p.err:
        messages = p.messages + (list(PYTHON_WARNING) if p.likely_python else [])
        raise CfgParseError(messages)
    return Cfg(filename, p.settings)


def render_value(value: Value) -> str:
    """Config text for a value, such that parse_cfg reads back the same value."""
    if isinstance(value, list):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\a": "\\a", "\b": "\\b", "\f": "\\f",
               "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    return '"' + "".join(escapes.get(c, c) for c in value) + '"'
