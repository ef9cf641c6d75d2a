"""Parse the FHIRPath subset used by SearchParameter expressions into a small tuple AST.

Nodes: ``("member", left|None, name)``, ``("call", left|None, name, args)``, ``("as"|"is", left,
type)``, ``("union", a, b)``, ``("bin", op, a, b)`` for ``= != and or``, ``("index", left, n)``,
``("lit", value)``. Arithmetic, variables (``%resource``) and other operators raise ``Unsupported``.
"""

from __future__ import annotations

import re
from typing import Any


class Unsupported(Exception):
    """The expression uses FHIRPath outside the compiled subset."""


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)"
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_]*|`[^`]*`)|(?P<var>%[A-Za-z_][A-Za-z0-9_]*|%`[^`]*`)"
    r"|(?P<op>!=|<=|>=|!~|[.()\[\]|,=<>~+\-*/&]))"
)


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens, pos, text = [], 0, text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise Unsupported(f"cannot tokenize at {text[pos:]!r}")
        pos = m.end()
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        elif kind == "num":
            value = float(value) if "." in value else int(value)
        elif kind == "id" and value.startswith("`"):
            value = value[1:-1]
        tokens.append((kind, value))
    tokens.append(("end", None))
    return tokens


class _Parser:
    """Precedence climbing over the FHIRPath grammar subset (AST as small tuples)."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, Any]:
        return self.tokens[self.i]

    def take(self, value: Any = None) -> tuple[str, Any]:
        tok = self.tokens[self.i]
        if value is not None and tok[1] != value:
            raise Unsupported(f"expected {value!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def is_word(self, *words: str) -> bool:
        kind, value = self.peek()
        return kind == "id" and value in words

    def parse(self) -> tuple:
        node = self.or_expr()
        if self.peek()[0] != "end":
            raise Unsupported(f"unexpected {self.peek()[1]!r}")
        return node

    def or_expr(self) -> tuple:
        node = self.and_expr()
        while self.is_word("or"):
            self.take()
            node = ("bin", "or", node, self.and_expr())
        return node

    def and_expr(self) -> tuple:
        node = self.eq_expr()
        while self.is_word("and"):
            self.take()
            node = ("bin", "and", node, self.eq_expr())
        return node

    def eq_expr(self) -> tuple:
        node = self.union_expr()
        while self.peek() in (("op", "="), ("op", "!=")):
            op = self.take()[1]
            node = ("bin", op, node, self.union_expr())
        return node

    def union_expr(self) -> tuple:
        node = self.type_expr()
        while self.peek() == ("op", "|"):
            self.take()
            node = ("union", node, self.type_expr())
        return node

    def type_expr(self) -> tuple:
        node = self.postfix()
        while self.is_word("as", "is"):
            op = self.take()[1]
            node = (op, node, self.type_name())
        return node

    def type_name(self) -> str:
        name = self.take()[1]
        while self.peek() == ("op", "."):
            self.take()
            name = self.take()[1]
        return name

    def postfix(self) -> tuple:
        node = self.term()
        while True:
            if self.peek() == ("op", "."):
                self.take()
                node = self.invocation(node)
            elif self.peek() == ("op", "["):
                self.take()
                index = self.or_expr()
                self.take("]")
                node = ("index", node, index)
            else:
                return node

    def term(self) -> tuple:
        kind, value = self.peek()
        if kind in ("str", "num"):
            self.take()
            return ("lit", value)
        if kind == "id" and value in ("true", "false"):
            self.take()
            return ("lit", value == "true")
        if kind == "var":
            raise Unsupported(f"variable {value}")
        if (kind, value) == ("op", "("):
            self.take()
            node = self.or_expr()
            self.take(")")
            return node
        if kind == "id":
            return self.invocation(None)
        raise Unsupported(f"unexpected {value!r}")

    def invocation(self, left: tuple | None) -> tuple:
        kind, name = self.take()
        if kind != "id":
            raise Unsupported(f"expected a name, got {name!r}")
        if self.peek() != ("op", "("):
            return ("member", left, name)
        self.take()
        args = []
        if self.peek() != ("op", ")"):
            args.append(self.or_expr())
            while self.peek() == ("op", ","):
                self.take()
                args.append(self.or_expr())
        self.take(")")
        return ("call", left, name, args)


def parse(expression: str) -> tuple:
    return _Parser(expression).parse()


def split_union(expression: str) -> list[str]:
    """The top-level ``|`` branches of an expression, as text (parentheses respected)."""
    parts, depth, quote, start = [], 0, False, 0
    for i, ch in enumerate(expression):
        if ch == "'" and (i == 0 or expression[i - 1] != "\\"):
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        elif not quote and depth == 0 and ch == "|":
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]
