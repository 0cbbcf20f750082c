"""The converter table is the only record of what ports: a class registered twice is an error, and every
registered class is named in README's layer table and built by at least one parity test against Keras."""
import re
from pathlib import Path

import pytest

from torchport.porting.convert import Converter
from torchport.porting.layers import CONVERTERS, OPERATIONS
from torchport.porting.registry import converter

ROOT = Path(__file__).resolve().parents[1]
# what in a parity test makes Keras record a class that no test calls by name (keras.applications' own)
RECORDED_BY = {"CustomScaleLayer": '"InceptionResNetV2"'}


def test_registering_a_class_name_twice_raises():
    with pytest.raises(ValueError, match="'Dense' has two converters"):
        @converter("Dense")
        class Another(Converter):
            __module__ = "torchport.porting.layers.another"  # a built-in converter
    assert CONVERTERS["Dense"].__name__ == "Dense"  # the table is unchanged


def test_a_users_converters_go_to_their_own_table_and_clash_by_name():
    from torchport.porting.registry import USER

    @converter("MyLayerForTheRegistryTest")
    class Mine(Converter):
        pass
    assert USER.pop("MyLayerForTheRegistryTest") is Mine and "MyLayerForTheRegistryTest" not in CONVERTERS
    USER["Clash"] = Mine
    try:
        with pytest.raises(ValueError, match="'Clash' has two converters"):
            @converter("Clash")
            class Other(Converter):
                pass
    finally:
        USER.pop("Clash")


def test_every_registered_class_is_in_the_readme_layer_table():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("<!-- layers"):readme.index("<!-- /layers -->")]
    missing = [name for name in CONVERTERS if f"`{name}`" not in table]
    assert not missing, f"README's layer table does not name {missing}"


def test_every_converter_is_built_by_a_parity_test():
    sources = [*(ROOT / "parity_tests").glob("*.py"), ROOT / "torchport" / "originals" / "keras_zoo.py"]
    text = "".join(p.read_text() for p in sources)
    untested = [cls.keras_classes for cls in set(CONVERTERS.values())
                if not any(re.search(rf"\b{name}\(", text) or RECORDED_BY.get(name, "\0") in text
                           for name in cls.keras_classes)]
    assert not untested, f"no parity test builds {sorted(untested)}"


def test_every_registered_operation_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("<!-- operations"):readme.index("<!-- /operations -->")]
    missing = [name for name in OPERATIONS if f"`{name}`" not in block]
    assert not missing, f"README's list of operations does not name {missing}"
