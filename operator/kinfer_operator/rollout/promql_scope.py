"""Confine a PromQL query to one namespace, the way prom-label-proxy does.

Custom checks are tenant input that runs on the platform's Prometheus. Every vector selector
(matrix selectors and subqueries contain vector selectors) loses whatever namespace matchers
it had and gains `namespace="<ns>"`; matchers are ANDed, so the query can read nothing
outside that namespace. The rewritten text is parsed again and checked (every selector
confined, every other matcher unchanged), so a quirk of the parser's printer can never widen
or silently change what a query reads: a query that does not survive the round trip is
refused rather than run.
"""

from __future__ import annotations

import promql_parser as promql

__all__ = ["NAMESPACE_LABEL", "ScopeError", "confine"]

NAMESPACE_LABEL = "namespace"
MAX_ERROR_CHARS = 200
"""Parser errors quote the query: keep what goes into status short."""


class ScopeError(ValueError):
    """The query cannot be confined: it does not parse, or it uses a form that is refused."""


def _bounded(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_ERROR_CHARS else flat[: MAX_ERROR_CHARS - 3] + "..."


def _parse(query: str) -> promql.Expr:
    try:
        return promql.parse(query)
    except Exception as err:  # the bindings raise plain ValueError/RuntimeError
        raise ScopeError(f"query does not parse: {_bounded(str(err))}") from err


def _quoted(value: str) -> str:
    """`value` as the inside of a PromQL double-quoted string. The printer writes label
    values between quotes without escaping them."""
    out = []
    for char in value:
        if char in '\\"':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def _scoped(selector: promql.VectorSelector, namespace: str) -> promql.Expr:
    if selector.matchers.or_matchers:
        raise ScopeError("selectors with `or` matcher groups are not supported in checks")
    # Escaped twice: parsing this selector's text removes one level, and printing the
    # whole query later writes the other level verbatim, which the final parse removes.
    try:
        kept = [
            promql.Matcher(m.op, m.name, _quoted(_quoted(m.value)))
            for m in selector.matchers.matchers
            if m.name != NAMESPACE_LABEL
        ]
    except Exception as err:  # a regex matcher the escaped text does not compile for
        raise ScopeError(f"query cannot be confined: {_bounded(str(err))}") from err
    own = promql.Matcher(promql.MatchOp.Equal, NAMESPACE_LABEL, namespace)
    selector.matchers = promql.Matchers([*kept, own])
    # A fresh node: transform() keeps a returned node only when it is a new object.
    return _parse(str(selector))


def _others(expr: promql.Expr) -> list[list[tuple[str, str, str]]]:
    """Every selector's matchers other than namespace, in query order."""
    found: list[list[tuple[str, str, str]]] = []

    def visit(node: promql.Expr) -> None:
        if isinstance(node, promql.VectorSelector):
            found.append(
                [
                    (m.name, str(m.op), m.value)
                    for m in node.matchers.matchers
                    if m.name != NAMESPACE_LABEL
                ]
            )

    promql.walk(expr, pre_visit=visit)
    return found


def _confined_to(expr: promql.Expr, namespace: str) -> bool:
    """Whether every selector in `expr` carries namespace="<namespace>" and nothing wider."""
    ok = True

    def check(node: promql.Expr) -> bool:
        nonlocal ok
        if isinstance(node, promql.VectorSelector):
            own = [
                m
                for m in node.matchers.matchers
                if m.name == NAMESPACE_LABEL
                and m.op == promql.MatchOp.Equal
                and m.value == namespace
            ]
            ok = ok and bool(own) and not node.matchers.or_matchers
        return ok

    promql.walk(expr, pre_visit=check)
    return ok


def confine(query: str, namespace: str) -> str:
    """`query` rewritten so that every selector reads only `namespace`; ScopeError if it
    does not parse or cannot be confined."""
    expr = _parse(query)

    def rewrite(node: promql.Expr) -> promql.Expr | None:
        if isinstance(node, promql.VectorSelector):
            return _scoped(node, namespace)
        return None

    out = str(promql.transform(expr, post_visit=rewrite))
    try:
        again = promql.parse(out)
    except Exception as err:
        raise ScopeError(
            f"query cannot be confined to its namespace: {_bounded(str(err))}"
        ) from err
    if not _confined_to(again, namespace):
        raise ScopeError("query cannot be confined to its namespace")
    if _others(again) != _others(_parse(query)):
        raise ScopeError("query cannot be confined without changing its label matchers")
    return out
