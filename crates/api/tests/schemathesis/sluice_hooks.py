"""schemathesis hooks for crates/api/tests/schemathesis.rs (SCHEMATHESIS_HOOKS=sluice_hooks).

The contract has one rule JSON Schema cannot write: an integer is written without a point.
JSON Schema's "integer" takes 299.0; pydantic's StrictInt (the contract, see
../../../../shared/baselines/collect_fastapi.py) and sluice refuse it, as the FastAPI oracle
test pins. So the generator writes whole-number floats as integers. Number fields take both
forms, so nothing else changes; 1.5 stays 1.5.
"""

import schemathesis


def _whole_floats_as_ints(value):
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, list):
        return [_whole_floats_as_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_floats_as_ints(v) for k, v in value.items()}
    return value


@schemathesis.hook
def map_body(context, body):
    return _whole_floats_as_ints(body)
