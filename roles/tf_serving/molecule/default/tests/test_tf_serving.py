"""TF Serving runs in Docker on the test host, serves the shipped versions and answers gRPC and REST."""

import hashlib
import json
import os
import pathlib

import grpc
import pytest
import requests
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

CONTAINER = "tf-serving"
MODEL_BASE = "/srv/tf-serving/models"
# The controller-side source the role shipped the versions from (1, 2 and 4
# are copies of the export; 3 and 5 are corrupted ones).
SOURCE = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "models/calculator"
# The scenario's CA and keys (tls_pki_dir); the client certificate is made below, once.
PKI = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "pki"


@pytest.fixture(scope="module")
def address(host):
    """The test host's address, where the role published the ports."""
    return next(addr for addr in host.interface("eth0").addresses if ":" not in addr)


@pytest.fixture(scope="module")
def client_pem():
    """A client certificate of the scenario's CA, issued here with its key (as tls_pki issues them)."""
    import subprocess

    if not (PKI / "test-client.crt").exists():
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "1", "-CA", "ca.crt", "-CAkey", "ca.key", "-keyout", "test-client.key",
             "-out", "test-client.crt", "-subj", "/CN=test-client", "-addext", "extendedKeyUsage=clientAuth"],
            cwd=PKI, check=True, capture_output=True,
        )  # fmt: skip
    return {name: (PKI / f"{name}").read_bytes() for name in ("ca.crt", "test-client.key", "test-client.crt")}


@pytest.fixture(scope="module")
def channel(address, client_pem):
    """gRPC over mutual TLS: the server's certificate names its address; the client presents its own."""
    credentials = grpc.ssl_channel_credentials(
        client_pem["ca.crt"], client_pem["test-client.key"], client_pem["test-client.crt"]
    )
    with grpc.secure_channel(f"{address}:8500", credentials) as grpc_channel:
        yield grpc_channel


def _model_status(channel) -> None:
    request = get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "calculator"})
    model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)


@pytest.fixture(scope="module")
def container(host):
    result = host.run(f"docker inspect {CONTAINER}")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)[0]


def _record(host, name: str) -> dict:
    """A record side_effect wrote; missing means side_effect did not run as the scenario says."""
    record = host.file(f"/root/{name}.json")
    assert record.exists, (
        f"/root/{name}.json missing: side_effect (update, failed rollout, pruning) did not run"
    )
    return json.loads(record.content_string)


@pytest.fixture(scope="module")
def updated(host):
    """The container as recorded by side_effect before and after it deployed version 2."""
    return {
        "before": _record(host, "tf-serving-before-update"),
        "after": _record(host, "tf-serving-after-update"),
    }


@pytest.fixture(scope="module")
def failed_rollout(host):
    """What the role reported when it rolled out the corrupted version 3."""
    return _record(host, "tf-serving-failed-rollout")


@pytest.fixture(scope="module")
def before_crash(host):
    """The container before side_effect stopped it for the start-up crash case."""
    return _record(host, "tf-serving-before-crash")


@pytest.fixture(scope="module")
def crash_at_start(host):
    """What the role reported when the server met the corrupted version 5 at start-up."""
    return _record(host, "tf-serving-crash-at-start")


@pytest.fixture(scope="module")
def before_prune(host):
    """The host after the failed rollout and the run after it, before the pruning run.

    ``versions``: version directories per model; ``quarantine``: every path
    under the quarantine with its SHA-256 ("" for directories); ``status``:
    calculator's REST status.
    """
    return _record(host, "tf-serving-before-prune")


def states(address, model: str, port: int = 8501) -> dict[str, str]:
    status = requests.get(f"http://{address}:{port}/v1/models/{model}", timeout=5).json()
    return {entry["version"]: entry["state"] for entry in status["model_version_status"]}


def float_tensor(values: list[float]) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(values))]
        ),
        float_val=values,
    )


def predict(channel, signature: str, a: list[float], b: list[float], version=None, label=None) -> list[float]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "calculator"
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["a"].CopyFrom(float_tensor(a))
    request.inputs["b"].CopyFrom(float_tensor(b))
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
    return list(response.outputs["result"].float_val)


def test_container_runs_healthy_with_init_and_restart_policy(container):
    assert container["State"]["Running"] is True
    assert container["State"]["Health"]["Status"] in ("healthy", "starting")
    assert container["HostConfig"]["Init"] is True
    assert container["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert container["HostConfig"]["Memory"] == 2 * 1024**3


def test_container_hardened(container):
    host_config = container["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"]
    assert not host_config["CapAdd"]
    assert host_config["SecurityOpt"] == ["no-new-privileges:true"]
    assert host_config["ReadonlyRootfs"] is True
    assert host_config["Tmpfs"] == {"/tmp": "rw,noexec,nosuid,nodev,size=64m"}
    assert host_config["PidsLimit"] == 4096
    # The role's default user, nobody, as on real hosts.
    assert container["Config"]["User"] == "65534:65534"


def test_server_runs_unprivileged_on_a_read_only_system(host):
    """Seen from inside the running container: no capabilities, nothing writable but /tmp."""
    inside = f"docker exec {CONTAINER}"
    server = host.run(f"{inside} sh -c 'grep -E \"^(Uid|CapEff|CapBnd|NoNewPrivs):\" /proc/1/status'")
    assert server.rc == 0, server.stderr
    fields = dict(line.split(":", 1) for line in server.stdout.splitlines())
    assert fields["Uid"].split() == ["65534"] * 4  # nobody (tf_serving_user's default)
    assert int(fields["CapEff"], 16) == 0
    assert int(fields["CapBnd"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    # Neither the server's user nor even root (uid 0, without capabilities) writes outside /tmp.
    for path in ("/probe", "/models/probe", "/etc/tf-serving/probe"):
        assert host.run(f"{inside} touch {path}").rc != 0, path
        assert host.run(f"docker exec -u 0 {CONTAINER} touch {path}").rc != 0, path
    assert host.run(f"{inside} sh -c 'touch /tmp/probe && rm /tmp/probe'").rc == 0


def test_ports_bound_to_the_configured_address_only(container, address):
    bindings = container["HostConfig"]["PortBindings"]
    assert bindings["8500/tcp"] == [{"HostIp": address, "HostPort": "8500"}]
    assert bindings["8501/tcp"] == [{"HostIp": address, "HostPort": "8501"}]


def test_server_reads_the_model_config_file_and_polls_it(container):
    args = container["Args"]
    assert "--model_config_file=/etc/tf-serving/models.config" in args
    assert "--model_config_file_poll_wait_seconds=2" in args
    assert "--monitoring_config_file=/etc/tf-serving/monitoring.config" in args


def test_model_config_lists_both_models_with_their_policies(host):
    config = host.file("/etc/tf-serving/models.config").content_string
    assert 'name: "calculator"' in config
    assert "latest { num_versions: 2 }" in config
    assert 'name: "calculator_pinned"' in config
    assert "versions: 1" in config


@pytest.mark.parametrize(
    ("model", "version"), [("calculator", 2), ("calculator", 4), ("calculator_pinned", 1)]
)
def test_shipped_version_matches_the_source(host, model, version):
    source = SOURCE / str(version)
    files = [path for path in source.rglob("*") if path.is_file()]
    assert files, source
    for path in files:
        remote = host.file(f"{MODEL_BASE}/{model}/{version}/{path.relative_to(source)}")
        assert remote.sha256sum == hashlib.sha256(path.read_bytes()).hexdigest(), path


def test_no_half_copied_versions_left(host):
    # Nor retired ones: pruning moves a version here, then deletes it.
    assert host.file(f"{MODEL_BASE}/.staging").listdir() == []


def test_rest_reports_every_model_available(address):
    assert states(address, "calculator").get("4") == "AVAILABLE"
    assert states(address, "calculator_pinned").get("1") == "AVAILABLE"


def test_rest_predict_returns_the_sum(address):
    response = requests.post(
        f"http://{address}:8501/v1/models/calculator:predict",
        json={"signature_name": "add", "inputs": {"a": [1.5, 2.0], "b": [2.5, -7.0]}},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"] == [4.0, -5.0]


def test_grpc_predict_returns_the_sum(channel):
    assert predict(channel, "add", [3.0, 10.0], [4.0, 0.5]) == [7.0, 10.5]


def test_grpc_predict_multiplies(channel):
    assert predict(channel, "multiply", [3.0], [-4.0]) == [-12.0]


def test_grpc_model_status_available(channel):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "calculator_pinned"
    response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    assert [(v.version, v.state) for v in response.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    ]


def test_prometheus_metrics_served(address):
    response = requests.get(f"http://{address}:8501/monitoring/prometheus/metrics", timeout=5)
    assert response.status_code == 200
    assert ":tensorflow:serving:" in response.text


def test_update_kept_the_same_container(updated):
    assert updated["after"]["id"] == updated["before"]["id"]
    assert updated["after"]["started_at"] == updated["before"]["started_at"]


def test_update_serves_version_2(channel, address, updated):
    status = requests.get(f"http://{address}:8501/v1/models/calculator", timeout=5).json()
    states = {entry["version"]: entry["state"] for entry in status["model_version_status"]}
    assert states.get("2") == "AVAILABLE", status
    assert predict(channel, "add", [20.0], [22.0], version=2) == [42.0]


def test_update_moved_the_stable_label(channel, address, updated):
    status = requests.get(f"http://{address}:8501/v1/models/calculator/labels/stable", timeout=5).json()
    assert status["model_version_status"][0]["version"] == "2", status
    assert predict(channel, "add", [1.0], [1.0], label="stable") == [2.0]


def test_update_shipped_version_2_completely(host, updated, before_prune):
    assert host.file(f"{MODEL_BASE}/calculator/2/saved_model.pb").exists
    # Version 1 stayed until the pruning run (keep 2 until then).
    assert "1" in before_prune["versions"]["calculator"]


def test_failed_rollout_fails_fast_with_the_servers_error(failed_rollout):
    assert "DATA_LOSS" in failed_rollout["msg"] or "Can't parse" in failed_rollout["msg"], failed_rollout
    # The server's END state, not the 180 s availability timeout, ended the
    # versions' wait: measured from the wait's start, not the run's (shipping
    # and the image check before it take what a loaded machine makes of them).
    assert failed_rollout["waited"] < 90, failed_rollout


def _assert_quarantined(host, record: dict, version: int) -> None:
    """The role's record names ``version`` alone, moved into the quarantine, its bytes kept."""
    [entry] = record["quarantine"]
    assert (entry["model"], entry["version"]) == ("calculator", version)
    assert entry["path"].startswith(f"{MODEL_BASE}/.quarantine/calculator-{version}-")
    assert entry["path"] in record["msg"]
    assert host.file(f"{entry['path']}/saved_model.pb").content_string == "not a SavedModel protocol buffer\n"


def test_failed_version_went_to_quarantine_and_is_reported(host, failed_rollout):
    _assert_quarantined(host, failed_rollout, 3)


def test_failed_version_is_not_where_the_server_looks(host, before_prune):
    assert not host.file(f"{MODEL_BASE}/calculator/3").exists
    # After the run with version 3 still newest on the controller.
    assert before_prune["versions"]["calculator"] == ["1", "2"]


def test_controller_export_of_the_failed_version_is_untouched():
    export = SOURCE / "3" / "saved_model.pb"
    assert export.read_text() == "not a SavedModel protocol buffer\n"


def test_restart_after_the_failed_rollout_serves_version_2(channel, updated, before_prune, before_crash):
    # Same container, started again by the side effect's restart (as it was
    # before the start-up crash case below stopped it).
    assert before_crash["id"] == updated["after"]["id"]
    assert before_crash["started_at"] != updated["after"]["started_at"]
    assert before_crash["restart_count"] == 0
    status = before_prune["status"]
    served = {entry["version"]: entry["state"] for entry in status["model_version_status"]}
    assert served == {"1": "AVAILABLE", "2": "AVAILABLE"}, status
    assert predict(channel, "add", [2.0], [3.0], label="stable") == [5.0]


def test_prune_removed_the_oldest_version_beyond_keep(host, before_prune):
    # Version 4 shipped with keep 1: version 1 was there and must be gone.
    assert before_prune["versions"]["calculator"] == ["1", "2"]
    assert sorted(host.file(f"{MODEL_BASE}/calculator").listdir()) == ["2", "4"]


def test_prune_left_the_newest_version_serving(channel, address):
    served = states(address, "calculator")
    assert served.get("4") == "AVAILABLE", served
    assert served.get("1") != "AVAILABLE", served
    assert predict(channel, "add", [40.0], [2.0], version=4) == [42.0]
    assert predict(channel, "add", [1.0], [2.0]) == [3.0]


def test_prune_kept_the_labelled_version_beyond_keep(host, channel, address):
    # Version 2 is older than the one version kept, but stable points at it.
    assert host.file(f"{MODEL_BASE}/calculator/2/saved_model.pb").exists
    status = requests.get(f"http://{address}:8501/v1/models/calculator/labels/stable", timeout=5).json()
    assert [(e["version"], e["state"]) for e in status["model_version_status"]] == [("2", "AVAILABLE")], (
        status
    )
    assert predict(channel, "add", [2.0], [2.0], label="stable") == [4.0]


def test_prune_left_the_quarantine_alone(host, before_prune):
    assert any(path.startswith("calculator-3-") for path in before_prune["quarantine"]), before_prune
    quarantine = f"{MODEL_BASE}/.quarantine"
    directories = host.check_output(f"cd {quarantine} && find . -mindepth 1 -type d -printf '%P\\n'")
    files = host.check_output(f"cd {quarantine} && find . -type f -exec sha256sum {{}} +")
    now = {path: "" for path in directories.split()}
    for line in files.splitlines():
        checksum, path = line.split(maxsplit=1)
        now[path.removeprefix("./")] = checksum
    # What the pruning run found is still there, unchanged (the start-up crash
    # case below adds its own entry afterwards).
    assert {path: now.get(path) for path in before_prune["quarantine"]} == before_prune["quarantine"]


def test_prune_left_the_other_model_alone(host, before_prune):
    # Version 1 of another model is not version 1 of calculator.
    assert before_prune["versions"]["calculator_pinned"] == ["1"]
    assert host.file(f"{MODEL_BASE}/calculator_pinned").listdir() == ["1"]


def test_neither_later_run_restarted_the_server(host, before_crash):
    # The run after the restart and the pruning run, up to the start-up crash case.
    restarted = _record(host, "tf-serving-after-restart")
    assert (before_crash["id"], before_crash["started_at"]) == (restarted["id"], restarted["started_at"])


def test_crash_at_start_up_fails_fast_with_the_servers_error(crash_at_start):
    assert "DATA_LOSS" in crash_at_start["msg"] or "Can't parse" in crash_at_start["msg"], crash_at_start
    # The container's restarts, not tf_serving_available_timeout (180 s here),
    # ended the module's wait, which starts when the role starts the container.
    assert crash_at_start["server"]["crashed"] is True, crash_at_start
    assert crash_at_start["server"]["waited"] < 90, crash_at_start


def test_crash_at_start_up_quarantined_the_version_named_in_the_log(host, crash_at_start):
    _assert_quarantined(host, crash_at_start, 5)
    assert not host.file(f"{MODEL_BASE}/calculator/5").exists


def test_after_the_crash_at_start_up_docker_restarted_it_into_version_4(container, before_crash, address):
    # Same container: Docker's restarts, not a new container, brought it back.
    assert container["Id"] == before_crash["id"]
    assert container["State"]["Running"] is True
    assert container["RestartCount"] >= 1
    served = states(address, "calculator")
    assert served.get("4") == "AVAILABLE", served
    assert "5" not in served, served


def test_server_offers_the_grpc_health_service_and_drains_on_stop(container):
    assert "--enable_grpc_healthcheck_service=true" in container["Args"]
    # The web tier's keepalive pings are welcome (role default, tf_serving_grpc_channel_arguments).
    assert (
        "--grpc_channel_arguments=grpc.keepalive_permit_without_calls=1,"
        "grpc.http2.min_ping_interval_without_data_ms=4000"
    ) in container["Args"]
    assert container["Config"]["StopTimeout"] == 30


def test_grpc_serves_only_clients_with_a_certificate_of_the_ca(address, channel, client_pem):
    _model_status(channel)  # with the certificate: served
    without = grpc.ssl_channel_credentials(client_pem["ca.crt"])
    for refused in (
        grpc.secure_channel(f"{address}:8500", without),
        grpc.insecure_channel(f"{address}:8500"),
    ):
        with refused, pytest.raises(grpc.RpcError) as error:
            _model_status(refused)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE


def test_server_reads_the_ssl_config_that_only_root_and_its_group_can(host, container):
    assert "--ssl_config_file=/etc/tf-serving/ssl.config" in container["Args"]
    ssl_config = host.file("/etc/tf-serving/ssl.config")
    # The default user 65534:65534: root writes it, the server's group (nogroup) reads it
    # (README, "Mutual TLS").
    assert (ssl_config.user, ssl_config.group, ssl_config.mode) == ("root", "nogroup", 0o640)
    assert "client_verify: true" in ssl_config.content_string
    assert "PRIVATE KEY" in ssl_config.content_string


def test_controller_keys_are_the_controller_users_only():
    keys = [PKI / "ca.key", *sorted((PKI / "hosts").glob("*.key"))]
    assert any(key.name.endswith(".server.key") for key in keys), keys
    for key in keys:
        assert key.stat().st_mode & 0o777 == 0o600, key
    assert PKI.stat().st_mode & 0o777 == 0o700


@pytest.fixture(scope="module")
def per_gpu(host):
    """The containers of side_effect's last run, one per GPU with the GPU count set to 2 (CPU host)."""
    instances = _record(host, "tf-serving-per-gpu")["instances"]
    inspected = host.run("docker inspect " + " ".join(instance["name"] for instance in instances))
    assert inspected.rc == 0, inspected.stderr
    return instances, {container["Name"].lstrip("/"): container for container in json.loads(inspected.stdout)}


def test_one_per_gpu_runs_a_container_per_gpu_each_on_its_own_ports(per_gpu, address, container):
    instances, containers = per_gpu
    assert [(i["name"], i["grpc_port"], i["rest_port"]) for i in instances] == [
        ("tf-serving", 8500, 8501),
        ("tf-serving-1", 8502, 8503),
    ]
    for instance in instances:
        running = containers[instance["name"]]
        assert running["State"]["Running"] is True
        bindings = running["HostConfig"]["PortBindings"]
        assert bindings["8500/tcp"] == [{"HostIp": address, "HostPort": str(instance["grpc_port"])}]
        assert bindings["8501/tcp"] == [{"HostIp": address, "HostPort": str(instance["rest_port"])}]
        # The GPU memory fraction in each command; no GPU requested on a CPU host.
        assert "--per_process_gpu_memory_fraction=0.5" in running["Args"]
        assert not running["HostConfig"]["DeviceRequests"]
        assert running["HostConfig"]["Init"] is True
    # The first container is the one that ran before: switching the setting on left it alone.
    assert containers["tf-serving"]["Id"] == container["Id"]


def test_one_per_gpu_lowering_the_count_removed_the_extra_container(host):
    record = _record(host, "tf-serving-per-gpu")
    assert record["before"] == ["tf-serving", "tf-serving-1", "tf-serving-2"]
    assert record["after"] == ["tf-serving", "tf-serving-1"]
    assert host.run("docker inspect tf-serving-2").rc != 0


def test_one_per_gpu_every_container_serves_every_version_and_label(per_gpu, address, client_pem):
    instances, _ = per_gpu
    credentials = grpc.ssl_channel_credentials(
        client_pem["ca.crt"], client_pem["test-client.key"], client_pem["test-client.crt"]
    )
    for instance in instances:
        served = states(address, "calculator", instance["rest_port"])
        assert (served.get("4"), served.get("2")) == ("AVAILABLE", "AVAILABLE"), (instance["name"], served)
        labelled = requests.get(
            f"http://{address}:{instance['rest_port']}/v1/models/calculator/labels/stable", timeout=5
        ).json()
        assert labelled["model_version_status"][0]["version"] == "2", (instance["name"], labelled)
        with grpc.secure_channel(f"{address}:{instance['grpc_port']}", credentials) as instance_channel:
            assert predict(instance_channel, "add", [3.0], [4.0]) == [7.0], instance["name"]
            assert predict(instance_channel, "multiply", [3.0], [4.0], label="stable") == [12.0], instance[
                "name"
            ]
