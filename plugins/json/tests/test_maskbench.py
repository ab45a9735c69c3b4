"""MaskBench (dev split) on SmolLM2's tokenizer: a deterministic subset of 60 schemas.

Every 9th schema of the 571 (ids 0, 9, 18, ...: 64 schemas, the first 60 kept) is
compiled with llguidance. For each schema that compiles, every valid instance
(``json.dumps(data, ensure_ascii=False)``) must be accepted token by token, each token
inside the mask computed before it, and end in an accepting state; every invalid instance
must be rejected; a schema that fails to compile must raise ConstraintError before any
generation. The full run is ``benchmarks/constrained.py --maskbench`` (figures in
docs/constraints.md).
"""

from __future__ import annotations

import pytest
from decodekit_json import compile_constraint, maskbench

from decodekit.errors import ConstraintError

#: Valid instances the llguidance backend rejects in the full dev split, with the reason:
#: llguidance generates object properties in schema order (o61348, o61349, sp_163: the
#: instance lists them in another order) and reads ``{"type": "string", "$ref": ...}``
#: as the intersection of both (o14421: draft-04 ignores ``$ref`` siblings).
KNOWN_ORDER_MISMATCHES = {
    "Github_medium---o14421",
    "Github_medium---o61348",
    "Github_medium---o61349",
    "Snowplow---sp_163_Normalized",
}


@pytest.fixture(scope="module")
def subset(maskbench_entries):
    return maskbench_entries[::9][:60]


def test_maskbench_subset_llguidance(subset, smollm2_tokenizer):
    results = list(maskbench.run(subset, smollm2_tokenizer, backend="llguidance"))
    counts = maskbench.summary(results)
    assert counts["schemas"] == 60
    # the full split compiles 516/571 (90.4%); this subset must stay in that range
    assert counts["compiled"] >= 50, counts
    assert counts["valid"] > 60 and counts["invalid"] > 100, counts
    assert counts["invalid_rejected"] == counts["invalid"], counts
    wrong = {r.id for r in results for i in r.instances if i.valid and not i.accepted}
    assert wrong <= KNOWN_ORDER_MISMATCHES, wrong
    assert counts["valid_accepted"] >= counts["valid"] - len(wrong)
    for result in results:
        if not result.compiled:
            assert result.error.startswith("json_schema constraint: llguidance cannot compile"), (
                result.error
            )


def test_maskbench_subset_xgrammar(subset, smollm2_tokenizer):
    """xgrammar on the first 20 subset schemas: every valid instance is accepted.

    xgrammar compiles schemas with keywords it does not enforce (it logs a warning and
    ignores them, e.g. ``format`` next to ``minLength``), so it accepts some invalid
    instances: 4 of 33 here with xgrammar 0.2.8 (documented in docs/constraints.md).
    """
    results = list(maskbench.run(subset[:20], smollm2_tokenizer, backend="xgrammar"))
    counts = maskbench.summary(results)
    assert counts["compiled"] == 20, counts
    assert counts["valid_accepted"] == counts["valid"] == 26, counts
    assert counts["invalid"] == 33 and counts["invalid_rejected"] >= 29, counts


def test_failing_schema_raises_before_generation(maskbench_entries, smollm2_tokenizer):
    """A schema llguidance cannot compile raises ConstraintError naming the feature."""
    failing = next(
        e for e in maskbench_entries
        if "uniqueItems" in str(e["schema"]) and "oneOf" not in str(e["schema"])
        and not maskbench.check_schema(e, smollm2_tokenizer, masks=False).compiled
    )
    with pytest.raises(ConstraintError, match="cannot compile it: "):
        compile_constraint({"type": "json_schema", "schema": failing["schema"]},
                           smollm2_tokenizer)
