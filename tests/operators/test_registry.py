import pytest
from torch import nn

from sciflow.operators import OPERATORS, build_operator, get_operator_class
from sciflow.operators.fno import FNO

SIZES = dict(in_channels=3, out_channels=2, n_dims=2, cond_dim=1)


def test_registry_keys():
    assert set(OPERATORS) == {"fno", "unet", "factformer", "ifactformer"}


def test_build_from_key_dotted_path_and_missing_init_args():
    a = build_operator({"class_path": "fno", "init_args": {"width": 4, "modes": 4}}, **SIZES)
    assert isinstance(a, FNO) and a.in_channels == 3 and a.cond_dim == 1
    b = build_operator({"class_path": "sciflow.operators.fno.FNO"}, **SIZES)
    c = build_operator({"class_path": "sciflow.operators.fno:FNO", "init_args": None}, **SIZES)
    d = build_operator("FNO", **SIZES)
    assert all(isinstance(m, FNO) for m in (b, c, d))


def test_unknown_key_lists_known_names():
    with pytest.raises(ValueError, match="known operators: factformer, fno, ifactformer, unet"):
        build_operator({"class_path": "transformer"}, **SIZES)


def test_unknown_init_arg_is_named():
    with pytest.raises(ValueError, match=r"\['widht'\]"):
        build_operator({"class_path": "fno", "init_args": {"widht": 8}}, **SIZES)


def test_injected_sizes_rejected_in_init_args():
    with pytest.raises(ValueError, match="in_channels"):
        build_operator({"class_path": "fno", "init_args": {"in_channels": 8}}, **SIZES)


@pytest.mark.parametrize(
    "spec,match",
    [
        ({"init_args": {}}, "class_path"),
        ({"class_path": "fno", "init_arg": {}}, "init_arg"),
        ({"class_path": "sciflow.operators.nothere.Net"}, "nothere"),
        ({"class_path": "sciflow.operators.fno.Nope"}, "Nope"),
        ({"class_path": "sciflow.operators.fno.check_cond"}, "Module subclass"),
        (["fno"], "mapping"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        build_operator(spec, **SIZES)


def test_resolve_accepts_any_module_subclass():
    assert get_operator_class("torch.nn.Identity") is nn.Identity
