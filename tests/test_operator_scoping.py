"""Query scope: a policy's PromQL reads only its own namespace (parsed, never regex-matched)."""

from __future__ import annotations

import promql_parser
import pytest

from foreseer.operator.scoping import OutOfScope, Unparsable, scoped


def selectors(query: str) -> list[str]:
    found: list[str] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(str(node))

    promql_parser.walk(promql_parser.parse(query), pre_visit=visit)
    return found


@pytest.mark.parametrize("query", [
    'sum(rate(http_requests_total{service="web"}[2m]))',
    "sum(a) / on(job) group_left sum(b offset 5m)",
    "max_over_time(workload_load[30m:1m])",
    '{__name__=~"workload_.*"}',
    'label_replace(up, "namespace", "bank", "", "")',
])
def test_every_vector_selector_gets_the_policys_namespace_where_it_has_none(query: str) -> None:
    result = scoped(query, "shop")
    assert selectors(result) and all('namespace="shop"' in s for s in selectors(result))


def test_a_query_already_in_the_policys_namespace_is_left_as_it_means() -> None:
    assert scoped('sum(x{namespace="shop", app="web"})', "shop") == \
        'sum(x{namespace="shop",app="web"})'


@pytest.mark.parametrize(("query", "says"), [
    ('sum(workload_load{namespace="bank",app="vault"})', "names the namespace 'bank'"),
    ('sum(x{namespace="shop"}) / sum(y{namespace="bank"})', "names the namespace 'bank'"),
    ('x{namespace=~"sh.*"}', "regex or negation"),
    ('x{namespace!="bank"}', "regex or negation"),
    ('x{namespace!~"bank"}', "regex or negation"),
])
def test_a_query_that_could_read_another_namespace_is_refused(query: str, says: str) -> None:
    with pytest.raises(OutOfScope, match=says):
        scoped(query, "shop")


def test_a_query_that_is_not_promql_is_unparsable_not_out_of_scope() -> None:
    with pytest.raises(Unparsable, match="parse error: unclosed left parenthesis"):
        scoped("sum(rate(x[5m]", "shop")
