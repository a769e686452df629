"""Editable: a small renderer for a subset of Liquid (Shopify's template language).

The evaluator calls one function, `render(source, context) -> str`, for every template of its
corpus, many times over. The output must be identical to python-liquid's (the reference
engine); after that, faster is better. This version is written plainly, to be correct and easy
to read: every call lexes and parses the template again and walks the tree it built.

The subset: output `{{ expression | filter: arg, arg }}`; tags if/elsif/else, unless, case/when,
for (limit, offset, reversed, else, forloop.*), assign, capture, comment and raw; whitespace
control (`{{-`, `-}}`, `{%-`, `-%}`); the filters in FILTERS.
"""

from __future__ import annotations

import decimal
import html
import re
from typing import Any

MARKUP = re.compile(r"\{\{(-?)(.*?)(-?)\}\}|\{%(-?)\s*(\w+)(.*?)(-?)%\}", re.DOTALL)
BLOCK_END = {  # blocks whose content is not parsed: raw is kept as it is, comment dropped
    "raw": re.compile(r"\{%-?\s*endraw\s*(-?)%\}"),
    "comment": re.compile(r"\{%-?\s*endcomment\s*(-?)%\}"),
}
EXPR_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'[^']*'|"[^"]*")
      | (?P<number>-?\d+\.\d+|-?\d+)
      | (?P<op>==|!=|<>|<=|>=|<|>|\.\.)
      | (?P<word>[A-Za-z_][\w-]*\??)
      | (?P<punct>[.\[\]|:,()])
    )""",
    re.VERBOSE,
)
HTML_TAG = re.compile(r"<[^>]*>")


class Undefined:
    """A name the context does not have: renders as nothing, is falsy, has size 0."""

    def __str__(self) -> str:
        return ""


UNDEFINED = Undefined()


# Lexing: the source as text, output and tag tokens -------------------------------------------


def tokenize(source: str) -> list[tuple[str, str, str]]:
    """(kind, name, markup) tokens: kind is text, output or tag; whitespace control applied."""
    tokens: list[tuple[str, str, str]] = []
    pos, strip_next = 0, False
    while True:
        match = MARKUP.search(source, pos)
        text = source[pos : match.start() if match else len(source)]
        if strip_next:
            text = text.lstrip()
        if match and (match.group(1) or match.group(4)):
            text = text.rstrip()
        if text:
            tokens.append(("text", "", text))
        if match is None:
            return tokens
        if match.group(5) is None:
            tokens.append(("output", "", match.group(2).strip()))
            strip_next = bool(match.group(3))
            pos = match.end()
            continue
        name, markup = match.group(5), match.group(6).strip()
        strip_next = bool(match.group(7))
        pos = match.end()
        if name in BLOCK_END:
            end = BLOCK_END[name].search(source, pos)
            if end is None:
                raise SyntaxError(f"{name} without end{name}")
            if name == "raw":
                tokens.append(("text", "", source[pos : end.start()]))
            strip_next = bool(end.group(1))
            pos = end.end()
            continue
        tokens.append(("tag", name, markup))


# Expressions ---------------------------------------------------------------------------------


def lex_expression(markup: str) -> list[tuple[str, str]]:
    """(kind, text) tokens of an expression, e.g. [("word", "product"), ("punct", ".")...]."""
    tokens, pos = [], 0
    markup = markup.strip()
    while pos < len(markup):
        match = EXPR_TOKEN.match(markup, pos)
        if match is None:
            raise SyntaxError(f"unexpected {markup[pos:]!r} in {markup!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


class Parser:
    """Reads one expression's tokens: values, paths, ranges, filters and conditions."""

    def __init__(self, markup: str) -> None:
        self.tokens = lex_expression(markup)
        self.pos = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self, text: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "end" or (text is not None and token[1] != text):
            raise SyntaxError(f"expected {text or 'more'}, found {token[1] or 'the end'}")
        self.pos += 1
        return token

    def at_end(self) -> bool:
        return self.pos >= len(self.tokens)

    def value(self) -> Any:
        """A literal, a variable path or a range, as a tree: ("lit", v), ("path", ...)..."""
        kind, text = self.take()
        if kind == "string":
            return ("lit", text[1:-1])
        if kind == "number":
            return ("lit", float(text) if "." in text else int(text))
        if text == "(":
            start = self.value()
            self.take("..")
            stop = self.value()
            self.take(")")
            return ("range", start, stop)
        if kind != "word":
            raise SyntaxError(f"unexpected {text!r}")
        if text in ("true", "false"):
            return ("lit", text == "true")
        if text in ("nil", "null"):
            return ("lit", None)
        if text == "empty":
            return ("empty",)
        path: list[Any] = [("lit", text)]
        while self.peek()[1] in (".", "["):
            if self.take()[1] == ".":
                path.append(("lit", self.take()[1]))
            else:
                path.append(self.value())
                self.take("]")
        return ("path", path)

    def filtered(self) -> tuple[Any, list[tuple[str, list[Any]]]]:
        """`value | name: arg, arg | name`: the value and its filters."""
        value = self.value()
        filters = []
        while self.peek()[1] == "|":
            self.take("|")
            name = self.take()[1]
            args = []
            if self.peek()[1] == ":":
                self.take(":")
                args.append(self.value())
                while self.peek()[1] == ",":
                    self.take(",")
                    args.append(self.value())
            filters.append((name, args))
        if not self.at_end():
            raise SyntaxError(f"unexpected {self.peek()[1]!r}")
        return value, filters

    def condition(self) -> Any:
        """`a == b and c or d`: and/or have one precedence and group from the right."""
        left = self.value()
        kind, text = self.peek()
        if kind == "op" or text == "contains":
            self.take()
            left = ("compare", text, left, self.value())
        if self.peek()[1] in ("and", "or"):
            joiner = self.take()[1]
            return (joiner, left, self.condition())
        return left


def evaluate(tree: Any, scope: Scope) -> Any:
    """The value of an expression tree in a scope."""
    kind = tree[0]
    if kind == "lit":
        return tree[1]
    if kind == "path":
        return scope.lookup([evaluate(part, scope) for part in tree[1]])
    if kind == "range":
        start, stop = to_integer(evaluate(tree[1], scope)), to_integer(evaluate(tree[2], scope))
        return range(start, stop + 1)
    if kind == "empty":
        return EMPTY
    if kind == "compare":
        return compare(tree[1], evaluate(tree[2], scope), evaluate(tree[3], scope))
    if kind == "and":
        return truthy(evaluate(tree[1], scope)) and truthy(evaluate(tree[2], scope))
    if kind == "or":
        return truthy(evaluate(tree[1], scope)) or truthy(evaluate(tree[2], scope))
    raise SyntaxError(f"unknown expression {tree!r}")


class Empty:
    """The `empty` keyword: equal to an empty string, list or mapping."""


EMPTY = Empty()


def truthy(value: Any) -> bool:
    """Liquid truth: only false and nil (and undefined) are false; 0 and "" are true."""
    return not (value is False or value is None or isinstance(value, Undefined))


def compare(op: str, left: Any, right: Any) -> bool:
    if isinstance(right, Empty):
        left, right = right, left
    if isinstance(left, Empty):
        return (right in ("", [], {})) == (op == "==") if op in ("==", "!=", "<>") else False
    if isinstance(left, Undefined):
        left = None
    if isinstance(right, Undefined):
        right = None
    if op == "==":
        return left == right
    if op in ("!=", "<>"):
        return left != right
    if op == "contains":
        if isinstance(left, str):
            return str(right) in left
        return isinstance(left, list | dict) and right in left
    try:
        if op == "<":
            return left < right
        if op == ">":
            return left > right
        if op == "<=":
            return left <= right
        return left >= right
    except TypeError:
        return False


# Values and filters --------------------------------------------------------------------------


def to_text(value: Any) -> str:
    """How a value is written out: nil as nothing, booleans in lower case, lists joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or isinstance(value, Undefined):
        return ""
    if isinstance(value, list):
        return "".join(to_text(item) for item in value)
    if isinstance(value, range):
        return f"{value.start}..{value.stop - 1}"
    return str(value)


def to_number(value: Any) -> int | float:
    """Numbers stay; numeric strings are read; anything else is 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return 0
    return 0


def to_integer(value: Any) -> int:
    return int(to_number(value))


def arithmetic(op: str, left: Any, right: Any) -> int | float:
    """Integers exactly; with a float, decimal arithmetic on the shortest decimal forms."""
    a, b = to_number(left), to_number(right)
    if isinstance(a, int) and isinstance(b, int):
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a // b
        return a % b
    if op == "/":
        return a / b
    x, y = decimal.Decimal(str(a)), decimal.Decimal(str(b))
    if op == "+":
        return float(x + y)
    if op == "-":
        return float(x - y)
    if op == "*":
        return float(x * y)
    return float(x % y)


def as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple | range):
        return list(value)
    if isinstance(value, Undefined) or value is None:
        return []
    return [value]


def item_of(value: Any, key: Any) -> Any:
    if isinstance(value, dict):
        return value.get(key)
    return None


def f_default(value: Any, fallback: Any = "") -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if value is None or value is False or isinstance(value, Undefined):
        return fallback
    if value in ("", [], {}):
        return fallback
    return value


def f_truncate(value: Any, length: Any = 50, end: Any = "...") -> str:
    text, n, end = to_text(value), to_integer(length), to_text(end)
    if len(text) < n:
        return text
    return text[: n - len(end)] + end


def f_truncatewords(value: Any, count: Any = 15, end: Any = "...") -> str:
    words, n = to_text(value).split(), max(1, to_integer(count))
    if len(words) < n:
        return " ".join(words)
    return " ".join(words[:n]) + to_text(end)


def f_split(value: Any, separator: Any) -> list[str]:
    text, sep = to_text(value), to_text(separator)
    if not sep:
        return list(text)
    if not text or text == sep:
        return []
    return text.split(None if sep == " " else sep)


def f_first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else None


def f_last(value: Any) -> Any:
    return value[-1] if isinstance(value, list) and value else None


def f_size(value: Any) -> int:
    return len(value) if isinstance(value, str | list | dict | range) else 0


def f_sort(value: Any, key: Any = None) -> list[Any]:
    if key:
        return sorted(as_list(value), key=lambda item: item_of(item, key))
    return sorted(as_list(value))


def f_round(value: Any, digits: Any = None) -> int | float:
    number = to_number(value)
    places = 0 if digits is None else to_integer(digits)
    if places < 0:
        return 0
    return round(number) if places == 0 else round(number, places)


FILTERS: dict[str, Any] = {
    "append": lambda v, a: to_text(v) + to_text(a),
    "prepend": lambda v, a: to_text(a) + to_text(v),
    "upcase": lambda v: to_text(v).upper(),
    "downcase": lambda v: to_text(v).lower(),
    "capitalize": lambda v: to_text(v).capitalize(),
    "strip": lambda v: to_text(v).strip(),
    "lstrip": lambda v: to_text(v).lstrip(),
    "rstrip": lambda v: to_text(v).rstrip(),
    "replace": lambda v, a, b="": to_text(v).replace(to_text(a), to_text(b)),
    "remove": lambda v, a: to_text(v).replace(to_text(a), ""),
    "escape": lambda v: html.escape(to_text(v)),
    "strip_html": lambda v: HTML_TAG.sub("", to_text(v)),
    "truncate": f_truncate,
    "truncatewords": f_truncatewords,
    "split": f_split,
    "join": lambda v, sep=" ": to_text(sep).join(to_text(x) for x in as_list(v)),
    "first": f_first,
    "last": f_last,
    "size": f_size,
    "reverse": lambda v: list(reversed(as_list(v))),
    "sort": f_sort,
    "map": lambda v, key: [item_of(x, key) for x in as_list(v)],
    "default": f_default,
    "plus": lambda v, a: arithmetic("+", v, a),
    "minus": lambda v, a: arithmetic("-", v, a),
    "times": lambda v, a: arithmetic("*", v, a),
    "divided_by": lambda v, a: arithmetic("/", v, a),
    "modulo": lambda v, a: arithmetic("%", v, a),
    "round": f_round,
}


def apply_filters(value: Any, filters: list[tuple[str, list[Any]]], scope: Scope) -> Any:
    for name, args in filters:
        if name not in FILTERS:
            raise SyntaxError(f"unknown filter {name!r}")
        value = FILTERS[name](value, *[evaluate(arg, scope) for arg in args])
    return value


# Scope ---------------------------------------------------------------------------------------


class Scope:
    """Variables: the loop frames (innermost first) over the assigned names and the context."""

    def __init__(self, context: dict[str, Any]) -> None:
        self.frames: list[dict[str, Any]] = [{}, context]  # [assigned, context]

    def push(self, frame: dict[str, Any]) -> None:
        self.frames.insert(0, frame)

    def pop(self) -> None:
        self.frames.pop(0)

    def assign(self, name: str, value: Any) -> None:
        self.frames[-2][name] = value

    def lookup(self, path: list[Any]) -> Any:
        name = path[0]
        for frame in self.frames:
            if name in frame:
                value = frame[name]
                break
        else:
            return UNDEFINED
        for key in path[1:]:
            value = self.step(value, key)
            if isinstance(value, Undefined):
                return value
        return value

    @staticmethod
    def step(value: Any, key: Any) -> Any:
        """One step along a path: a key, an index, or size/first/last."""
        if isinstance(value, dict):
            if key in value:
                return value[key]
            if key == "size":
                return len(value)
            return UNDEFINED
        if isinstance(value, list | str | range):
            if isinstance(key, int):
                try:
                    return value[key]
                except IndexError:
                    return UNDEFINED
            if key == "size":
                return len(value)
            if key == "first" and not isinstance(value, str):
                return value[0] if value else UNDEFINED
            if key == "last" and not isinstance(value, str):
                return value[-1] if value else UNDEFINED
        return UNDEFINED


# The tree ------------------------------------------------------------------------------------


def parse(tokens: list[tuple[str, str, str]]) -> list[Any]:
    """The template's nodes; a block tag's node holds its branches."""
    nodes, pos, stop = parse_block(tokens, 0, ())
    if stop is not None:
        raise SyntaxError(f"unexpected {stop}")
    return nodes


def parse_block(
    tokens: list[tuple[str, str, str]], pos: int, stops: tuple[str, ...]
) -> tuple[list[Any], int, str | None]:
    """Nodes up to one of the `stops` tags: (nodes, position after it, which stop or None)."""
    nodes: list[Any] = []
    while pos < len(tokens):
        kind, name, markup = tokens[pos]
        pos += 1
        if kind == "text":
            nodes.append(("text", markup))
        elif kind == "output":
            nodes.append(("output", Parser(markup).filtered()))
        elif name in stops:
            return nodes, pos, name + (" " + markup if markup else "")
        elif name in ("if", "unless"):
            node, pos = parse_if(tokens, pos, name, markup)
            nodes.append(node)
        elif name == "for":
            node, pos = parse_for(tokens, pos, markup)
            nodes.append(node)
        elif name == "case":
            node, pos = parse_case(tokens, pos, markup)
            nodes.append(node)
        elif name == "assign":
            target, expression = markup.split("=", 1)
            nodes.append(("assign", target.strip(), Parser(expression).filtered()))
        elif name == "capture":
            body, pos, _ = parse_block(tokens, pos, ("endcapture",))
            nodes.append(("capture", markup, body))
        else:
            raise SyntaxError(f"unknown tag {name!r}")
    if stops:
        raise SyntaxError(f"missing {stops[-1]}")
    return nodes, pos, None


def parse_if(
    tokens: list[tuple[str, str, str]], pos: int, name: str, markup: str
) -> tuple[Any, int]:
    """if/unless with elsif and else: a list of (condition or None, nodes) branches."""
    branches = []
    condition = Parser(markup).condition()
    if name == "unless":
        condition = ("not", condition)
    end = "end" + name
    while True:
        body, pos, stop = parse_block(tokens, pos, ("elsif", "else", end))
        branches.append((condition, body))
        assert stop is not None
        if stop.startswith("elsif"):
            condition = Parser(stop[len("elsif") :]).condition()
        elif stop == "else":
            condition = None
        else:
            return ("if", branches), pos


def parse_for(tokens: list[tuple[str, str, str]], pos: int, markup: str) -> tuple[Any, int]:
    name, rest = markup.split(" in ", 1)
    parser = Parser(rest)
    collection = parser.value()
    options: dict[str, Any] = {}
    while not parser.at_end():
        word = parser.take()[1]
        if word == "reversed":
            options["reversed"] = True
        else:
            parser.take(":")
            options[word] = parser.value()
    body, pos, stop = parse_block(tokens, pos, ("else", "endfor"))
    empty: list[Any] = []
    if stop == "else":
        empty, pos, _ = parse_block(tokens, pos, ("endfor",))
    return ("for", name.strip(), collection, options, body, empty), pos


def parse_case(tokens: list[tuple[str, str, str]], pos: int, markup: str) -> tuple[Any, int]:
    """case/when/else: the subject and a list of (values or None, nodes)."""
    subject = Parser(markup).value()
    _, pos, stop = parse_block(tokens, pos, ("when", "else", "endcase"))  # text before: dropped
    branches = []
    while stop != "endcase":
        assert stop is not None
        values = None
        if stop.startswith("when"):
            parser = Parser(stop[len("when") :].replace(" or ", " , "))
            values = [parser.value()]
            while not parser.at_end():
                parser.take(",")
                values.append(parser.value())
        body, pos, stop = parse_block(tokens, pos, ("when", "else", "endcase"))
        branches.append((values, body))
    return ("case", subject, branches), pos


# Rendering -----------------------------------------------------------------------------------


def render_nodes(nodes: list[Any], scope: Scope, out: list[str]) -> None:
    for node in nodes:
        kind = node[0]
        if kind == "text":
            out.append(node[1])
        elif kind == "output":
            value, filters = node[1]
            out.append(to_text(apply_filters(evaluate(value, scope), filters, scope)))
        elif kind == "if":
            for condition, body in node[1]:
                if condition is None or holds(condition, scope):
                    render_nodes(body, scope, out)
                    break
        elif kind == "for":
            render_for(node, scope, out)
        elif kind == "case":
            render_case(node, scope, out)
        elif kind == "assign":
            value, filters = node[2]
            scope.assign(node[1], apply_filters(evaluate(value, scope), filters, scope))
        elif kind == "capture":
            captured: list[str] = []
            render_nodes(node[2], scope, captured)
            scope.assign(node[1], "".join(captured))


def holds(condition: Any, scope: Scope) -> bool:
    if condition[0] == "not":
        return not holds(condition[1], scope)
    return truthy(evaluate(condition, scope))


def render_for(node: Any, scope: Scope, out: list[str]) -> None:
    _, name, collection, options, body, empty = node
    items = as_list(evaluate(collection, scope))
    offset = to_integer(evaluate(options["offset"], scope)) if "offset" in options else 0
    items = items[offset:]
    if "limit" in options:
        items = items[: to_integer(evaluate(options["limit"], scope))]
    if options.get("reversed"):
        items.reverse()
    if not items:
        render_nodes(empty, scope, out)
        return
    length = len(items)
    for index, item in enumerate(items):
        forloop = {
            "index": index + 1,
            "index0": index,
            "rindex": length - index,
            "rindex0": length - index - 1,
            "first": index == 0,
            "last": index == length - 1,
            "length": length,
        }
        scope.push({name: item, "forloop": forloop})
        render_nodes(body, scope, out)
        scope.pop()


def render_case(node: Any, scope: Scope, out: list[str]) -> None:
    _, subject, branches = node
    value = evaluate(subject, scope)
    matched = False
    for values, body in branches:
        if values is None:
            if not matched:
                render_nodes(body, scope, out)
            return
        if any(compare("==", value, evaluate(v, scope)) for v in values):
            matched = True
            render_nodes(body, scope, out)


def render(source: str, context: dict[str, Any]) -> str:
    """The template `source` rendered with the variables in `context`."""
    nodes = parse(tokenize(source))
    out: list[str] = []
    render_nodes(nodes, Scope(context), out)
    return "".join(out)
