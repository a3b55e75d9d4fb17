"""Query scope: a policy reads only its own namespace's metrics.

One operator serves every team of a cluster, so a policy's PromQL is untrusted input. As
prom-label-proxy enforces a label, `scoped` makes every vector selector of a query match
``namespace="<the policy's namespace>"``: it adds the matcher where it is absent, and
refuses a query that names another namespace or matches ``namespace`` any other way
(regex, negation), since such a query could read another tenant's series. The query is
parsed with a real PromQL parser (promql-parser), never with regular expressions.
"""

from __future__ import annotations

from enum import StrEnum

import promql_parser


class QueryScope(StrEnum):
    """How far a policy's queries may reach."""

    NAMESPACE = "namespace"
    """Only the policy's own namespace (the default; as the custom-metrics API serves)."""
    CLUSTER = "cluster"
    """Any series: the explicit opt-out for a single-tenant cluster."""


class OutOfScope(ValueError):
    """A query that would read outside the policy's namespace, or that cannot be scoped."""


class Unparsable(ValueError):
    """A query that is not PromQL (Prometheus would refuse it too)."""


LABEL = "namespace"


def scoped(query: str, namespace: str) -> str:
    """``query`` with every vector selector restricted to ``namespace``; raises OutOfScope
    when it names another namespace or matches the label by regex or negation, and
    Unparsable when it is not PromQL."""
    try:
        expr = promql_parser.parse(query)
    except ValueError as exc:
        raise Unparsable(f"the query is not PromQL (parse error: {exc})") from exc
    refusal: list[str] = []

    def restrict(node: promql_parser.Expr) -> promql_parser.Expr | None:
        if not isinstance(node, promql_parser.VectorSelector):
            return None
        matchers = node.matchers
        if matchers.or_matchers:
            refusal.append(f"{node}: 'or' between matchers cannot be scoped to a namespace")
            return None
        own = [m for m in matchers.matchers if m.name == LABEL]
        for matcher in own:
            if matcher.op != promql_parser.MatchOp.Equal:
                refusal.append(f"{node} matches {LABEL} by regex or negation, which may "
                               f"reach other namespaces; use {LABEL}=\"{namespace}\"")
            elif matcher.value != namespace:
                refusal.append(f"{node} names the namespace {matcher.value!r}; a policy in "
                               f"{namespace!r} may read only its own namespace's series")
        if own:
            return None
        node.matchers = promql_parser.Matchers(
            [*matchers.matchers, promql_parser.Matcher(promql_parser.MatchOp.Equal, LABEL,
                                                       namespace)])
        # transform() takes a replacement only as a new node, so re-parse the changed one.
        return promql_parser.parse(str(node))

    result = promql_parser.transform(expr, pre_visit=restrict)
    if refusal:
        raise OutOfScope("; ".join(refusal))
    return str(result)
