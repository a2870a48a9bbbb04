"""The registry: names, records, wildcards, and one-line errors."""

import pytest

import cnnzoo
from cnnzoo.errors import ConfigError, UnknownModelError

FOUNDATION_MODELS = [
    "lenet5", "alexnet", "alexnet_paper", "zfnet",
    "vgg11", "vgg11_lrn", "vgg13", "vgg16_c", "vgg16", "vgg19",
    "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "nin", "nin_cifar",
]  # fmt: skip


def test_foundation_models_are_registered():
    assert set(FOUNDATION_MODELS) <= set(cnnzoo.list_models())


def test_list_models_takes_shell_wildcards_and_family():
    assert cnnzoo.list_models("vgg1?") == ["vgg11", "vgg13", "vgg16", "vgg19"]
    assert cnnzoo.list_models("*_bn") == sorted(n for n in cnnzoo.list_models() if n.endswith("_bn"))
    assert cnnzoo.list_models("nin*") == ["nin", "nin_cifar"]
    assert cnnzoo.list_models(family="alexnet") == ["alexnet", "alexnet_paper"]
    assert cnnzoo.list_models("no_such_*") == []


def test_model_info_records_paper_and_input():
    info = cnnzoo.model_info("alexnet_paper")
    assert info.family == "alexnet"
    assert info.paper.year == 2012 and info.year == 2012
    assert "Krizhevsky" in info.paper.authors
    assert info.input_size == (3, 227, 227)
    assert info.fixed_size and info.num_classes == 1000
    lenet = cnnzoo.model_info("lenet5")
    assert lenet.input_size == (1, 32, 32) and lenet.num_classes == 10 and lenet.paper.year == 1998


def test_unknown_model_suggests_closest_names():
    with pytest.raises(UnknownModelError) as caught:
        cnnzoo.create_model("vgg61")
    message = str(caught.value)
    assert "unknown model 'vgg61'" in message and "vgg16" in message
    assert "\n" not in message


def test_create_model_defaults_and_options():
    model = cnnzoo.create_model("vgg11")
    assert model.num_classes == 1000 and model.in_chans == 3
    assert cnnzoo.create_model("lenet5").num_classes == 10
    assert cnnzoo.create_model("zfnet", conv345_widths=(384, 384, 256)).features[8].out_channels == 384


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": -1}, "num_classes must be an integer >= 0"),
        ({"num_classes": 2.5}, "num_classes must be an integer >= 0"),
        ({"in_chans": 0}, "in_chans must be an integer >= 1"),
        ({"in_chans": "3"}, "in_chans must be an integer >= 1"),
        ({"no_such_option": 1}, "unexpected keyword argument 'no_such_option'"),
    ],
)
def test_bad_options_are_one_line_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match) as caught:
        cnnzoo.create_model("lenet5", **kwargs)
    assert "\n" not in str(caught.value)


def test_importing_the_package_and_registry_does_not_import_torch():
    """Building a model imports torch; importing cnnzoo, its registry or its CLI does not."""
    import subprocess
    import sys

    code = (
        "import sys, cnnzoo, cnnzoo.registry, cnnzoo.cli, cnnzoo.errors, cnnzoo.model_index, cnnzoo.conv_arithmetic\n"
        "assert callable(cnnzoo.create_model) and callable(cnnzoo.summary) and callable(cnnzoo.register_model)\n"
        "assert cnnzoo.list_models('lenet5*', from_index=True) == ['lenet5', 'lenet5_caffe']\n"
        "assert cnnzoo.model_info('lenet5', from_index=True).input_size == (1, 32, 32)\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"
