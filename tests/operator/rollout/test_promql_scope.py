"""confine: every selector of a query reads only the model's namespace, or it is refused."""

from __future__ import annotations

import promql_parser as promql
import pytest
from kinfer_operator.rollout.promql_scope import ScopeError, confine

NS = "ml"


def _selectors(query: str) -> list[promql.VectorSelector]:
    found: list[promql.VectorSelector] = []

    def visit(node: promql.Expr) -> None:
        if isinstance(node, promql.VectorSelector):
            found.append(node)

    promql.walk(promql.parse(query), pre_visit=visit)
    return found


def _namespaces(selector: promql.VectorSelector) -> list[str]:
    return [f"{m.op}:{m.value}" for m in selector.matchers.matchers if m.name == "namespace"]


def _assert_confined(query: str, selectors: int) -> str:
    out = confine(query, NS)
    found = _selectors(out)
    assert len(found) == selectors, out
    for selector in found:
        assert _namespaces(selector) == [f"{promql.MatchOp.Equal}:{NS}"], out
    return out


@pytest.mark.parametrize(
    ("query", "selectors"),
    [
        ("up", 1),
        ('rate(kinfer_requests_total{code!~"2.."}[5m])', 1),
        ('sum by (le) (rate(b{x="1"}[30s]))', 1),
        ("sum without (namespace) (up)", 1),
        ("sum by (namespace) (up)", 1),
        ("count(up) by (namespace)", 1),
        ("abs(-foo) + clamp_max(bar, 1)", 2),
        ("a / on (pod) group_left b", 2),
        ("a and b or c unless d", 4),
        ("max_over_time((rate(x[1m]) > 1)[10m:1m])", 1),
        ("max_over_time(x[10m:1m] offset 5m)", 1),
        ("x offset 1h", 1),
        ("rate(x[5m] offset 1m)", 1),
        ("x @ start()", 1),
        ('{__name__="kinfer_requests_total"}', 1),
        ('{__name__=~".+"}', 1),
        (
            'histogram_quantile(0.99, sum by (le) (rate(h_bucket[1m]))) / scalar(sum(up{job="a"}))',
            2,
        ),
        ("topk(3, foo)", 1),
        ('count_values("v", foo)', 1),
        ("quantile(0.5, foo)", 1),
        ('label_replace(up, "namespace", "other", "", "")', 1),
        ('absent(nope{job="x"})', 1),
        ("vector(1)", 0),
        ("time() - 1", 0),
    ],
)
def test_every_selector_reads_only_the_model_namespace(query: str, selectors: int) -> None:
    _assert_confined(query, selectors)


@pytest.mark.parametrize(
    "matcher",
    [
        'namespace="other"',
        'namespace=~".*"',
        'namespace=~"ml|other"',
        'namespace!="ml"',
        'namespace!~"ml"',
        'namespace="ml",namespace=~".*"',
    ],
)
def test_a_namespace_matcher_naming_others_is_replaced(matcher: str) -> None:
    out = _assert_confined(f'sum(rate(x{{{matcher},a="b"}}[1m]))', 1)
    assert "other" not in out and ".*" not in out and 'a="b"' in out


def test_aggregating_over_namespaces_sees_only_one() -> None:
    out = _assert_confined('sum by (namespace) (x{namespace=~".+"}) / count(y)', 2)
    assert out.count(f'namespace="{NS}"') == 2


def test_offsets_ranges_and_subqueries_survive_the_rewrite() -> None:
    out = confine("max_over_time(rate(x[5m] offset 1m)[30m:1m] offset 2m)", NS)
    assert "[5m] offset 1m" in out and "[30m:1m] offset 2m" in out


def test_built_in_queries_keep_their_meaning() -> None:
    query = (
        '(sum(rate(kinfer_requests_total{namespace="ml",model="m",code!~"2.."}[30s]))'
        ' or vector(0)) / sum(rate(kinfer_requests_total{namespace="ml",model="m"}[30s]))'
    )
    out = _assert_confined(query, 2)
    assert 'model="m"' in out and 'code!~"2.."' in out and "vector(0)" in out


def test_a_query_that_does_not_parse_is_refused_with_the_parser_error() -> None:
    with pytest.raises(ScopeError, match="does not parse") as caught:
        confine("rate(x[5m]", NS)
    assert len(str(caught.value)) <= 240


def test_the_parser_error_is_bounded_even_for_a_huge_query() -> None:
    with pytest.raises(ScopeError) as caught:
        confine("sum(" + "x + " * 1000, NS)
    assert len(str(caught.value)) <= 240


def test_or_matcher_groups_are_refused() -> None:
    with pytest.raises(ScopeError, match="or"):
        confine('x{namespace="ml" or namespace="other"}', NS)


def test_a_value_crafted_to_break_out_of_its_selector_stays_a_value() -> None:
    # The parser's printer does not escape quotes: confine does, so the value stays one.
    out = _assert_confined('x{a="\\"} or other{b=\\""}', 1)
    (selector,) = _selectors(out)
    values = {m.name: m.value for m in selector.matchers.matchers}
    assert values["a"] == '"} or other{b="'


@pytest.mark.parametrize(
    ("query", "value"),
    [
        ('x{code=~"5\\\\d\\\\d"}', "5\\d\\d"),
        ('x{path="a\\\\b"}', "a\\b"),
        ('x{a="q\\"uote"}', 'q"uote'),
        ('x{a="line\\nbreak\\ttab"}', "line\nbreak\ttab"),
        ('x{a="\\x01"}', "\x01"),
        ('x{a="\u00e9\u4e2d"}', "\u00e9\u4e2d"),
        ("x{a='single'}", "single"),
    ],
)
def test_escaped_label_values_keep_their_meaning(query: str, value: str) -> None:
    out = _assert_confined(query, 1)
    (selector,) = _selectors(out)
    others = [m.value for m in selector.matchers.matchers if m.name != "namespace"]
    assert others == [value]


def test_scoping_is_idempotent() -> None:
    once = confine('sum(rate(x{namespace="other"}[1m]))', NS)
    assert confine(once, NS) == once
