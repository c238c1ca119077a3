"""The family contract (issue #11): every registered model declares a typed ``Family``, and the API
reads it instead of probing glue modules with hasattr/getattr."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from hidyn import models
from hidyn.families import Family, family
from hidyn.families._protocol import (
    all_shared_variables,
    comparison_default_tolerance,
    no_admissibility_check,
    same_spec,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("model", models.available())
def test_every_model_declares_its_family(model):
    fam = family(model)
    assert isinstance(fam, Family)
    # declared by the glue module itself, built once: the same object on every call
    assert fam is importlib.import_module(f"hidyn.families.{model}").FAMILY
    assert family(model) is fam
    assert fam.model == model and fam.spec_class is models.spec_class(model)
    assert fam.methods and all(isinstance(k, str) and callable(f) for k, f in fam.methods.items())
    spec = models.get(model)
    assert fam.auto_method(spec) in fam.methods
    assert isinstance(fam.theory_needs_init, bool)
    assert set(fam.own_times) <= set(fam.methods) and set(fam.default_times) <= set(fam.methods)
    assert "d" in fam.finite_d_fields
    assert isinstance(fam.theory_spec_for(spec), fam.spec_class)
    wanted = fam.default_variables(spec)
    assert wanted is None or all(isinstance(v, str) for v in wanted)
    check = fam.inadmissible(spec)
    assert check is None or callable(check)


def test_optional_members_have_explicit_defaults():
    spec = models.get("dln")
    fam = Family(model="dln", spec_class=models.spec_class("dln"), methods={"m": lambda s, t: ({}, {})},
                 auto_method=lambda s: "m")
    assert fam.theory_needs_init is False and fam.finite_d_fields == ("d",)
    assert dict(fam.own_times) == {} and dict(fam.default_times) == {}
    assert fam.theory_spec_for is same_spec and fam.theory_spec_for(spec) is spec
    assert fam.inadmissible is no_admissibility_check and fam.inadmissible(spec) is None
    assert fam.default_variables is all_shared_variables and fam.default_variables(spec) is None
    assert fam.default_tolerance is comparison_default_tolerance and fam.default_tolerance(spec, None) is None
    with pytest.raises(TypeError):  # frozen: members and method tables cannot be swapped after the fact
        fam.methods["other"] = lambda s, t: ({}, {})
    with pytest.raises(AttributeError):
        fam.model = "other"


@pytest.mark.parametrize("bad, match", [
    ({"methods": {}}, r"methods=\{\} is invalid"),
    ({"methods": {"m": 3}}, r"methods\['m'\]=3 is invalid"),
    ({"auto_method": "m"}, r"auto_method='m' is invalid"),
    ({"theory_needs_init": 1}, r"theory_needs_init=1 is invalid"),
    ({"own_times": {"x": "t = inf"}}, r"own_times keys \['x'\] are invalid"),
])
def test_family_rejects_a_malformed_declaration(bad, match):
    kwargs = {"model": "dln", "spec_class": models.spec_class("dln"), "methods": {"m": lambda s, t: ({}, {})},
              "auto_method": lambda s: "m", **bad}
    with pytest.raises(ValueError, match=match):
        Family(**kwargs)


def test_unknown_model_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match=r"model='nope' is invalid: must be one of .*'dln'"):
        family("nope")


@pytest.mark.parametrize("path", ["hidyn/api.py", "hidyn/escape.py", "hidyn/cli.py", "hidyn/checks.py",
                                  "validation/cases.py", "validation/scaling.py", "validation/compare.py"])
def test_no_probing_of_family_modules(path):
    text = (ROOT / path).read_text()
    probes = re.findall(r"(?:hasattr|getattr)\(\s*(?:fam\b|family\()", text)
    assert not probes, f"{path} probes a family with {probes}: use the Family's fields"
    # module-style upper-case members are gone from the callers: the Family has typed fields
    assert not re.search(r"\.(METHODS|THEORY_NEEDS_INIT|OWN_TIMES|DEFAULT_TIMES|FINITE_D_FIELDS)\b", text)
