"""What the client's calls return: answers with who served them, model status, metadata, host health."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Answer:
    """Who answered a call and how long the whole call took (retries included)."""

    host: str
    elapsed_ms: float


@dataclass(frozen=True)
class Prediction(Answer):
    """A Predict result: the named output tensor, flattened."""

    values: list[float] = field(default_factory=list)
    model_version: int | None = None
    version_label: str | None = None


@dataclass(frozen=True)
class Classification(Answer):
    """A Classify result: for each example, its (label, score) classes."""

    results: list[list[tuple[str, float]]] = field(default_factory=list)
    model_version: int | None = None
    version_label: str | None = None


@dataclass(frozen=True)
class Regression(Answer):
    """A Regress result: one value per example."""

    values: list[float] = field(default_factory=list)
    model_version: int | None = None
    version_label: str | None = None


@dataclass(frozen=True)
class VersionStatus:
    """One model version as GetModelStatus reports it."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


@dataclass(frozen=True)
class HostStatus:
    """What one TF Serving host says about the model (``error`` is set when it did not answer)."""

    host: str
    versions: list[VersionStatus] = field(default_factory=list)
    error: str | None = None
    label: str = ""

    @property
    def available(self) -> bool:
        """True when the host serves at least one version of the model."""
        return any(v.state == "AVAILABLE" for v in self.versions)


@dataclass(frozen=True)
class TensorSpec:
    """A signature input or output."""

    dtype: str
    shape: list[int]


@dataclass(frozen=True)
class Signature:
    """One SignatureDef from GetModelMetadata."""

    name: str
    method: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


@dataclass(frozen=True)
class ModelMetadata(Answer):
    """GetModelMetadata: the model version and its signatures."""

    model_version: int | None = None
    signatures: dict[str, Signature] = field(default_factory=dict)


@dataclass(frozen=True)
class HostHealth:
    """The client's own view of one host: admitted or ejected, and its errors so far by kind."""

    host: str
    label: str
    ejected: bool
    consecutive_failures: int
    ejected_for_seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
