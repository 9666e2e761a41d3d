"""schemathesis hooks for deploy/api-check (named in deploy/schemathesis.toml).

An `Idempotency-Key` promises more than its schema can say: a client sends a
fresh key for each new request and the same key only when it retries that
request. Generated values repeat ("0", "!"), so two different requests would
share a key and get the 422 `idempotency_key_reused` that such a client bug
deserves. A schema-valid case gets a fresh key, as a correct client would
send; an invalid one keeps its generated value, so the header's own
validation is still tested.
"""

import uuid

import schemathesis
from hypothesis.internal import lambda_sources

# CPython 3.11's `ast.parse` can fail with "SystemError: AST constructor
# recursion depth mismatch" when threads parse at once (CPython issue 106905;
# schemathesis runs two workers). Hypothesis parses source only to describe
# a filter's lambda in a strategy's repr, so a failure there costs nothing
# but that description, and must not abort the operation's tests.
_describe_lambda = lambda_sources.lambda_description


def _lambda_description(f):
    try:
        return _describe_lambda(f)
    except SystemError:
        return "lambda: <source unavailable>"


lambda_sources.lambda_description = _lambda_description


@schemathesis.hook
def before_call(context, case, **kwargs):
    headers = case.headers or {}
    meta = case.meta
    positive = meta is not None and meta.generation.mode.is_positive
    for name in list(headers):
        if name.lower() == "idempotency-key" and positive:
            headers[name] = str(uuid.uuid4())
