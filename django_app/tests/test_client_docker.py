"""The client module alone (no Django) against a real stand-in."""

from __future__ import annotations

import pytest
from tfsp_client import ClientConfig, ModelNotFound, ServingError, TFServingClient

pytestmark = pytest.mark.docker


@pytest.fixture
def make_client(running_standins):
    clients = []

    def make(**overrides) -> TFServingClient:
        standin = running_standins[0]
        config = {
            "targets": (standin.grpc_target,),
            "rest_targets": (standin.rest_target,),
            "model_name": "calculator",
            **overrides,
        }
        clients.append(TFServingClient(ClientConfig(**config)))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_metadata_lists_the_signatures(make_client, protocol):
    metadata = make_client(protocol=protocol).metadata()
    assert metadata.model_version == 1
    add = metadata.signatures["add"]
    assert add.method == "tensorflow/serving/predict"
    assert add.inputs["a"].dtype == "DT_FLOAT"
    assert add.outputs["result"].shape == [-1]
    assert metadata.signatures["classify"].method == "tensorflow/serving/classify"
    assert metadata.signatures["regress"].method == "tensorflow/serving/regress"


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_unknown_model_is_model_not_found(make_client, protocol):
    with pytest.raises(ModelNotFound):
        make_client(protocol=protocol, model_name="no_such_model").predict("add", {"a": [1.0], "b": [1.0]})


def test_message_size_limit_applies(make_client):
    values = [1.0] * 4096  # 16 KiB per input
    assert len(make_client().predict("add", {"a": values, "b": values}).values) == 4096
    with pytest.raises(ServingError):
        make_client(max_message_bytes=8 * 1024).predict("add", {"a": values, "b": values})
