"""A SOQL subset: enough for what a sync engine asks (fetch by ids, resync since a time, lookups).

``SELECT f1, f2 | COUNT() FROM Obj [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...]
[LIMIT n] [OFFSET n]`` where ``cond`` combines ``field op literal`` (=, !=, <>, <, <=, >, >=,
LIKE, IN (...), NOT IN (...)) with AND, OR, NOT and parentheses. Literals: 'strings', numbers,
true/false, null, dates (2024-01-01) and datetimes (2024-01-01T00:00:00Z). String comparisons
are case-insensitive as in Salesforce. Relationship fields, aggregates other than COUNT() and date
literals such as LAST_N_DAYS are not supported and fail with MALFORMED_QUERY.

This module knows nothing about the org: :func:`parse` takes a ``describe`` callable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Protocol, Sequence

__all__ = ["Query", "SoqlError", "parse", "parse_datetime", "parse_date", "format_datetime"]


class _Field(Protocol):
    name: str
    type: str


Describe = Callable[[str], "tuple[str, Sequence[_Field]] | None"]


class SoqlError(Exception):
    """A query Salesforce would refuse; ``code`` is the REST errorCode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_DT = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_datetime(text: str) -> datetime:
    """Parse the ISO 8601 forms Salesforce accepts; no offset means UTC."""
    m = _DT.match(text.strip())
    if not m:
        raise ValueError(f"not a datetime: {text!r}")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    offset = timedelta(0)
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=timezone(offset))


def parse_date(text: str) -> date:
    return date.fromisoformat(text.strip())


def format_datetime(value: datetime | float) -> str:
    """Salesforce's wire form: ``2024-01-31T12:00:00.000+0000`` (UTC, milliseconds)."""
    if not isinstance(value, datetime):
        value = datetime.fromtimestamp(value, tz=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<str>'(?:[^'\\]|\\.)*')
    |(?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
    |(?P<date>\d{4}-\d{2}-\d{2})
    |(?P<num>-?\d+(?:\.\d+)?)
    |(?P<op><=|>=|!=|<>|=|<|>)
    |(?P<punct>[(),])
    |(?P<ident>[A-Za-z_][A-Za-z0-9_.]*(?::\d+)?)""",
    re.X,
)

_KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC",
             "DESC", "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "TRUE", "FALSE", "NULL"}
_STRINGY = {"string", "id", "reference"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper()


def _tokenize(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text[pos:pos + 10]}'")
        if m.lastgroup != "ws":
            out.append(_Tok(m.lastgroup or "", m.group(), pos))
        pos = m.end()
    return out


@dataclass(frozen=True)
class _Cond:
    field: str
    ftype: str
    op: str  # = != < <= > >= LIKE IN NOTIN
    values: tuple[Any, ...]

    def __call__(self, rec: dict[str, Any]) -> bool:
        value = _norm(rec.get(self.field), self.ftype)
        if self.op == "IN":
            return value in self.values
        if self.op == "NOTIN":
            return value not in self.values
        want = self.values[0]
        if self.op == "=":
            return value == want
        if self.op == "!=":
            return value != want
        if value is None or want is None:
            return False
        if self.op == "LIKE":
            return bool(want.fullmatch(value))
        return {"<": value < want, "<=": value <= want, ">": value > want, ">=": value >= want}[self.op]


@dataclass(frozen=True)
class _Bool:
    op: str  # AND OR NOT
    parts: tuple[Any, ...]

    def __call__(self, rec: dict[str, Any]) -> bool:
        if self.op == "NOT":
            return not self.parts[0](rec)
        if self.op == "AND":
            return all(p(rec) for p in self.parts)
        return any(p(rec) for p in self.parts)


def _norm(value: Any, ftype: str) -> Any:
    """Bring a stored value into the comparable form of its type."""
    if value is None:
        return None
    if ftype in ("id", "reference"):
        return str(value)[:15]
    if ftype == "string":
        return str(value).casefold()
    if ftype == "datetime":
        return parse_datetime(value) if isinstance(value, str) else value
    if ftype == "date":
        return parse_date(value) if isinstance(value, str) else value
    if ftype in ("double", "int"):
        return float(value)
    return value


@dataclass(frozen=True)
class Query:
    """A parsed query, ready to run over an iterable of records (dicts keyed by field name)."""

    entity: str
    fields: tuple[str, ...]
    where: Callable[[dict[str, Any]], bool] | None
    order_by: tuple[tuple[str, str, bool, bool], ...]  # field, type, descending, nulls_last
    limit: int | None
    offset: int
    count_only: bool

    def run(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Matching records, sorted, offset and limited (whole records; see :meth:`project`)."""
        rows = [r for r in records if self.where is None or self.where(r)]
        for field, ftype, desc, nulls_last in reversed(self.order_by):
            present = [r for r in rows if r.get(field) is not None]
            absent = [r for r in rows if r.get(field) is None]
            present.sort(key=lambda r: _norm(r.get(field), ftype), reverse=desc)
            rows = present + absent if nulls_last else absent + present
        rows = rows[self.offset:]
        if self.limit is not None:
            rows = rows[: self.limit]
        return rows

    def project(self, record: dict[str, Any]) -> dict[str, Any]:
        return {f: record.get(f) for f in self.fields}


def parse(text: str, describe: Describe) -> Query:
    """Parse ``text``; ``describe(name)`` gives (canonical name, fields) or None if unknown."""
    return _Parser(text, describe).query()


class _Parser:
    def __init__(self, text: str, describe: Describe) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.describe = describe
        self.fields: dict[str, _Field] = {}
        self.entity = ""

    # -- token helpers
    def peek(self, offset: int = 0) -> _Tok | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def next(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise SoqlError("MALFORMED_QUERY", "unexpected end of query")
        self.i += 1
        return tok

    def at(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "ident" and tok.upper in words

    def expect(self, word: str) -> _Tok:
        tok = self.next()
        if tok.upper != word:
            raise self.unexpected(tok)
        return tok

    def unexpected(self, tok: _Tok) -> SoqlError:
        return SoqlError("MALFORMED_QUERY", self.located(tok, f"unexpected token: '{tok.text}'"))

    def located(self, tok: _Tok, message: str) -> str:
        col = tok.pos + 1
        return f"\n{self.text}\n{' ' * tok.pos}^\nERROR at Row:1:Column:{col}\n{message}"

    # -- grammar
    def query(self) -> Query:
        self.expect("SELECT")
        select: list[_Tok] = []
        count_only = False
        if self.at("COUNT") and self.peek(1) and self.peek(1).text == "(":  # type: ignore[union-attr]
            self.i += 1
            self.expect("(")
            self.expect(")")
            count_only = True
        else:
            while True:
                tok = self.next()
                if tok.kind != "ident" or tok.upper in _KEYWORDS:
                    raise self.unexpected(tok)
                select.append(tok)
                if self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                    self.i += 1
                    continue
                break
        self.expect("FROM")
        obj = self.next()
        found = self.describe(obj.text) if obj.kind == "ident" else None
        if found is None:
            raise SoqlError("INVALID_TYPE", self.located(
                obj, f"sObject type '{obj.text}' is not supported. If you are attempting to use a "
                "custom object, be sure to append the '__c' after the entity name. Please "
                "reference your WSDL or the describe call for the appropriate names."))
        self.entity, defs = found
        self.fields = {f.name.lower(): f for f in defs}
        names = tuple(self.field(tok).name for tok in select)
        where = None
        if self.at("WHERE"):
            self.i += 1
            where = self.disjunction()
        order: list[tuple[str, str, bool, bool]] = []
        if self.at("ORDER"):
            self.i += 1
            self.expect("BY")
            while True:
                fdef = self.field(self.next())
                desc = False
                if self.at("ASC", "DESC"):
                    desc = self.next().upper == "DESC"
                nulls_last = desc
                if self.at("NULLS"):
                    self.i += 1
                    nulls_last = self.next().upper == "LAST"
                order.append((fdef.name, fdef.type, desc, nulls_last))
                if self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                    self.i += 1
                    continue
                break
        limit = self.number_clause("LIMIT")
        offset = self.number_clause("OFFSET") or 0
        if self.peek() is not None:
            raise self.unexpected(self.peek())  # type: ignore[arg-type]
        return Query(self.entity, names, where, tuple(order), limit, offset, count_only)

    def number_clause(self, word: str) -> int | None:
        if not self.at(word):
            return None
        self.i += 1
        tok = self.next()
        if tok.kind != "num" or "." in tok.text or tok.text.startswith("-"):
            raise self.unexpected(tok)
        return int(tok.text)

    def field(self, tok: _Tok) -> _Field:
        if tok.kind != "ident" or "." in tok.text or ":" in tok.text:
            if tok.kind == "ident" and "." in tok.text:
                raise SoqlError("INVALID_FIELD", self.located(
                    tok, f"Didn't understand relationship '{tok.text.split('.')[0]}' in field path. "
                    "Relationship queries are not supported by this simulator."))
            raise self.unexpected(tok)
        fdef = self.fields.get(tok.text.lower())
        if fdef is None:
            raise SoqlError("INVALID_FIELD", self.located(
                tok, f"No such column '{tok.text}' on entity '{self.entity}'. If you are attempting "
                "to use a custom field, be sure to append the '__c' after the custom field name. "
                "Please reference your WSDL or the describe call for the appropriate names."))
        return fdef

    def disjunction(self) -> Callable[[dict[str, Any]], bool]:
        parts = [self.conjunction()]
        while self.at("OR"):
            self.i += 1
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else _Bool("OR", tuple(parts))

    def conjunction(self) -> Callable[[dict[str, Any]], bool]:
        parts = [self.factor()]
        while self.at("AND"):
            self.i += 1
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else _Bool("AND", tuple(parts))

    def factor(self) -> Callable[[dict[str, Any]], bool]:
        if self.at("NOT"):
            self.i += 1
            return _Bool("NOT", (self.factor(),))
        tok = self.peek()
        if tok is not None and tok.text == "(":
            self.i += 1
            inner = self.disjunction()
            self.expect(")")
            return inner
        return self.condition()

    def condition(self) -> _Cond:
        fdef = self.field(self.next())
        if self.at("NOT"):
            self.i += 1
            self.expect("IN")
            return _Cond(fdef.name, fdef.type, "NOTIN", self.value_list(fdef))
        if self.at("IN"):
            self.i += 1
            return _Cond(fdef.name, fdef.type, "IN", self.value_list(fdef))
        if self.at("LIKE"):
            self.i += 1
            tok = self.next()
            if tok.kind != "str":
                raise self.unexpected(tok)
            return _Cond(fdef.name, fdef.type, "LIKE", (_like(_unquote(tok.text)),))
        op = self.next()
        if op.kind != "op":
            raise self.unexpected(op)
        value = self.literal(fdef)
        opname = "!=" if op.text == "<>" else op.text
        if value is None and opname not in ("=", "!="):
            raise self.unexpected(op)
        return _Cond(fdef.name, fdef.type, opname, (value,))

    def value_list(self, fdef: _Field) -> tuple[Any, ...]:
        self.expect("(")
        values = [self.literal(fdef)]
        while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
            self.i += 1
            values.append(self.literal(fdef))
        self.expect(")")
        return tuple(values)

    def literal(self, fdef: _Field) -> Any:
        tok = self.next()
        if tok.kind == "ident" and tok.upper == "NULL":
            return None
        ftype = fdef.type
        wrong = SoqlError("INVALID_FIELD", self.located(
            tok, f"value of filter criterion for field '{fdef.name}' must be of type {ftype}"
            + (" and should be enclosed in quotes" if ftype in _STRINGY else
               " and should not be enclosed in quotes")))
        if ftype in _STRINGY:
            if tok.kind != "str":
                raise wrong
            return _norm(_unquote(tok.text), ftype)
        if ftype in ("double", "int"):
            if tok.kind != "num":
                raise wrong
            return float(tok.text)
        if ftype == "boolean":
            if tok.kind != "ident" or tok.upper not in ("TRUE", "FALSE"):
                raise wrong
            return tok.upper == "TRUE"
        if ftype == "datetime":
            if tok.kind != "dt":
                raise wrong
            return parse_datetime(tok.text)
        if ftype == "date":
            if tok.kind != "date":
                raise wrong
            return parse_date(tok.text)
        raise wrong


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text[1:-1])


def _like(pattern: str) -> re.Pattern[str]:
    out = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern.casefold())
    return re.compile(out, re.S)
