"""IAM-style policy documents and their evaluation (pure).

A policy document is ``{"Statement": [{"Effect": "Allow"|"Deny"|"Audit", "Action": str|list,
"Resource": str|list (optional), "Condition": {...} (optional)}]}``.

Evaluation over every statement that matches the action (and resource, and condition):

* an explicit ``Deny`` wins,
* otherwise an ``Allow`` or ``Audit`` allows (``Audit`` also marks the decision),
* nothing matching is *not* an allow (``Outcome.NO_MATCH``).

:func:`authorize` is the one rule for the policies *attached* to the identities of a request
(IAM semantics): with none attached nothing restricts (``Outcome.UNRESTRICTED``, the link
alone decides); with some attached the request needs a matching Allow (or Audit), and a
matching Deny wins. The tool-call decision and ``check_identity_policy_permissions`` both
decide through it.

Actions and resources match with shell-style wildcards (``tool:*``, ``*``,
``aztp://example.org/workload/*``). Matching is case-sensitive, as AZTP IDs are.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import ValidationError

__all__ = [
    "Effect",
    "Evaluation",
    "Outcome",
    "PolicyDocument",
    "Statement",
    "authorize",
    "evaluate",
    "parse_document",
    "requested_actions",
]


class Effect(str, enum.Enum):
    ALLOW = "Allow"
    DENY = "Deny"
    AUDIT = "Audit"


class Outcome(str, enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    NO_MATCH = "no_match"
    #: No policy is attached at all: nothing restricts (only :func:`authorize` answers this).
    UNRESTRICTED = "unrestricted"


def _as_list(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


class Statement(BaseModel):
    """One statement of a policy document."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    effect: Effect = Field(alias="Effect")
    action: tuple[str, ...] = Field(alias="Action")
    resource: tuple[str, ...] = Field(default=(), alias="Resource")
    condition: dict[str, dict[str, Any]] = Field(default_factory=dict, alias="Condition")
    sid: str | None = Field(default=None, alias="Sid")

    @field_validator("action", "resource", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> tuple[str, ...]:
        items = _as_list(value)
        for item in items:
            if not isinstance(item, str) or not item:
                raise ValueError("Action and Resource entries must be non-empty strings")
        return items

    @field_validator("action")
    @classmethod
    def _need_action(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("a statement needs at least one Action")
        return value


class PolicyDocument(BaseModel):
    """A whole policy document (``{"Statement": [...]}``)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="allow")

    version: str | None = Field(default=None, alias="Version")
    statement: tuple[Statement, ...] = Field(alias="Statement")

    @field_validator("statement", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, Mapping) else value


def parse_document(document: Mapping[str, Any] | PolicyDocument) -> PolicyDocument:
    """Validate a policy document; raise :class:`ValidationError` saying what is wrong."""
    if isinstance(document, PolicyDocument):
        return document
    try:
        return PolicyDocument.model_validate(document)
    except Exception as exc:  # pydantic.ValidationError, TypeError
        raise ValidationError(
            f"invalid policy document: {exc}. Expected "
            '{"Statement": [{"Effect": "Allow"|"Deny"|"Audit", "Action": "tool:*"}]}'
        ) from None


@lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    )


def _matches(patterns: Iterable[str], value: str) -> bool:
    return any(p == "*" or p == value or _glob(p).fullmatch(value) is not None for p in patterns)


def _condition_holds(
    condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, Any]
) -> bool:
    """IAM-like operators on string context keys; an unknown operator never holds (fail closed)."""
    for operator, clauses in condition.items():
        for key, expected in clauses.items():
            actual = context.get(key)
            wanted = _as_list(expected) if not isinstance(expected, bool) else (expected,)
            if operator == "StringEquals":
                ok = actual is not None and str(actual) in {str(w) for w in wanted}
            elif operator == "StringNotEquals":
                ok = actual is None or str(actual) not in {str(w) for w in wanted}
            elif operator == "StringLike":
                ok = actual is not None and _matches([str(w) for w in wanted], str(actual))
            elif operator == "Bool":
                ok = str(actual).lower() == str(wanted[0]).lower()
            else:
                return False
            if not ok:
                return False
    return True


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The result of evaluating policies for one request."""

    outcome: Outcome
    audit: bool = False
    matched: tuple[Statement, ...] = field(default=())

    @property
    def allowed(self) -> bool:
        """A matching Allow or Audit (and no matching Deny)."""
        return self.outcome is Outcome.ALLOW

    @property
    def permitted(self) -> bool:
        """What :func:`authorize` answers: allowed, or no policy attached to restrict it."""
        return self.outcome is Outcome.ALLOW or self.outcome is Outcome.UNRESTRICTED


def evaluate(
    statements: Iterable[Statement],
    actions: str | Sequence[str],
    resource: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Evaluate ``statements`` for every action in ``actions`` on ``resource``.

    With several actions (say ``tool:invoke`` and ``tool:search``) a Deny matching any of
    them denies; otherwise an Allow/Audit matching any of them allows.
    """
    wanted = _as_list(actions)
    ctx = context or {}
    matched: list[Statement] = []
    for st in statements:
        if not any(_matches(st.action, a) for a in wanted):
            continue
        if st.resource and (resource is None or not _matches(st.resource, resource)):
            continue
        if st.condition and not _condition_holds(st.condition, ctx):
            continue
        if st.effect is Effect.DENY:
            return Evaluation(Outcome.DENY, False, (st,))
        matched.append(st)
    if not matched:
        return Evaluation(Outcome.NO_MATCH)
    return Evaluation(Outcome.ALLOW, any(s.effect is Effect.AUDIT for s in matched), tuple(matched))


_UNRESTRICTED = Evaluation(Outcome.UNRESTRICTED)


def authorize(
    statements: Sequence[Statement],
    actions: str | Sequence[str],
    resource: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> Evaluation:
    """The rule for the policies attached to a request's identities (IAM semantics).

    ``statements``: every statement of every policy attached. None attached: nothing
    restricts (``UNRESTRICTED``, :attr:`Evaluation.permitted`). Otherwise :func:`evaluate`:
    a matching Deny denies, a matching Allow/Audit permits, and nothing matching (``NO_MATCH``)
    does *not* permit, so an allow-list restricts.
    """
    if not statements:
        return _UNRESTRICTED
    return evaluate(statements, actions, resource, context)


def requested_actions(action: str) -> tuple[str, ...]:
    """What asking about ``action`` asks: ``tool:NAME`` is what a call of tool NAME asks for
    (``tool:invoke`` and ``tool:NAME``, as the tool-call decision asks); anything else is
    asked as it is."""
    if action.startswith("tool:") and action != "tool:invoke":
        return ("tool:invoke", action)
    return (action,)
