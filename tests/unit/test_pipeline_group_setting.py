"""The pipeline's consumer group is one setting: it moves the pipeline, the API's read-your-writes,
training's snapshots and the lag monitor together (it once moved the pipeline but not the API,
whose read-your-writes requests then waited for a group nobody committed and answered 504)."""

from __future__ import annotations

import inspect

import pytest

from serving.lag.monitor import LagMonitor
from serving.lag.settings import LagSettings
from serving.settings import ApiSettings
from streams.settings import PipelineSettings
from training.settings import TrainingSettings


@pytest.mark.parametrize("variable", ["STREAMRAG_PIPELINE_GROUP", "STREAMRAG_GROUP_ID"])
def test_one_variable_moves_every_reader_of_the_pipeline_group(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "blue-pipeline")
    assert PipelineSettings().group_id == "blue-pipeline"
    assert ApiSettings().pipeline_group == "blue-pipeline"
    assert TrainingSettings().pipeline_group == "blue-pipeline"
    lag = LagSettings()
    assert lag.pipeline_group == "blue-pipeline"
    monitor = LagMonitor(lag, freshness=False)
    try:
        assert "blue-pipeline" in monitor._fixed_groups
    finally:
        monitor.close()


def test_the_group_is_declared_once() -> None:
    from streamrag.config import CommonSettings

    declared = [
        cls.__name__
        for cls in (PipelineSettings, ApiSettings, TrainingSettings, LagSettings)
        if "pipeline_group" in inspect.get_annotations(cls)
    ]
    assert declared == []
    assert "pipeline_group" in CommonSettings.model_fields
    assert PipelineSettings(group_id="g1").group_id == "g1"  # the constructor keeps its old keyword
