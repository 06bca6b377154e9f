"""metadata.yaml keys of real Modelbit folders: `return:<type>`, no mainFunctionArgs, dataframeModeColumns."""

from __future__ import annotations

import sys

import pytest
import yaml

from modelrepo.format import DeploymentError, read_metadata, validate_folder

PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def folder_with(tmp_path, info, source="def M(input_x):\n    return input_x\n"):
    folder = tmp_path / "M"
    folder.mkdir()
    (folder / "metadata.yaml").write_text(yaml.safe_dump(
        {"schemaVersion": 2, "runtimeInfo": {"mainFunction": "M", "pythonVersion": PY, **info}}))
    (folder / "source.py").write_text(source)
    return folder


def test_return_entry_is_the_return_type_not_an_argument(tmp_path):
    folder = folder_with(tmp_path, {"mainFunctionArgs": ["input_x:Any", "return:float"]})
    meta = read_metadata(folder)
    assert meta.args == [("input_x", "Any")] and meta.return_type == "float"
    assert validate_folder(folder) == []


def test_missing_main_function_args_means_no_arguments(tmp_path):
    folder = folder_with(tmp_path, {}, source="def M():\n    return 1\n")
    meta = read_metadata(folder)
    assert meta.args == [] and meta.return_type is None and meta.dataframe_columns is None
    assert validate_folder(folder) == []


def test_dataframe_mode_columns(tmp_path):
    folder = folder_with(tmp_path, {"mainFunctionArgs": ["input_x:DataFrame", "return:list"],
                                    "dataframeModeColumns": ["age", "income"]})
    assert read_metadata(folder).dataframe_columns == ["age", "income"]


@pytest.mark.parametrize("bad", ["age", [1, 2], {"age": 1}])
def test_dataframe_mode_columns_of_another_shape_is_refused_by_name(tmp_path, bad):
    folder = folder_with(tmp_path, {"mainFunctionArgs": ["input_x"], "dataframeModeColumns": bad})
    with pytest.raises(DeploymentError, match="runtimeInfo.dataframeModeColumns must be a list of column names"):
        read_metadata(folder)
