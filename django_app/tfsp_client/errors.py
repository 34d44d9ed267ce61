"""Typed errors of the TF Serving client, each with a message fit to show a user.

The web tier maps them to HTTP statuses: ``UpstreamUnavailable`` (``UnknownVersionLabel`` included)
and ``UpstreamTimeout`` mean "try again later" (503); ``UpstreamRejected`` means TF Serving refused
the request as invalid (400); ``UpstreamError`` is anything else TF Serving answered with (503,
since the web tier cannot fix it).
"""

from __future__ import annotations


class ServingError(Exception):
    """Base class: ``user_message`` is one line safe to show; ``host`` is the last host tried."""

    user_message = "The model server returned an error."

    def __init__(self, detail: str = "", host: str | None = None) -> None:
        super().__init__(detail or self.user_message)
        self.detail = detail
        self.host = host


class UpstreamUnavailable(ServingError):
    """No TF Serving host answered (connection refused, DNS, all hosts down, a call cut by a server
    going away: UNAVAILABLE or CANCELLED)."""

    user_message = "The model server is unavailable right now. Please try again in a moment."

    def __init__(self, detail: str = "", host: str | None = None, *, sent: bool = True) -> None:
        super().__init__(detail, host)
        #: False when the call never left the client (no connection to the host could be made):
        #: the host spent nothing on it, so re-issuing it elsewhere spends no retry budget.
        self.sent = sent


class UnknownVersionLabel(UpstreamUnavailable):
    """The host answered that it knows no such version label: it is not (yet) set up for the release.

    For the call, the same as no answer (it moves on to the next host; when no host has the label,
    the user is told to try again later); for the host, not a failure: it answers for other labels,
    so it is never ejected for this.
    """

    #: How TF Serving words it (INVALID_ARGUMENT over gRPC, 400 over REST).
    marker = "Unrecognized servable version label"


class UpstreamTimeout(ServingError):
    """The call's deadline passed before TF Serving answered."""

    user_message = "The model server did not answer in time. Please try again in a moment."


class UpstreamRejected(ServingError):
    """TF Serving refused the request as invalid (INVALID_ARGUMENT, FAILED_PRECONDITION, ...)."""

    user_message = "The model server rejected the request."


class ModelNotFound(ServingError):
    """The model (or the requested version or signature) is not loaded on the host that answered."""

    user_message = "The model is not loaded on the model server yet. Please try again in a moment."


class UpstreamError(ServingError):
    """Any other error answered by TF Serving, or a response the client cannot read."""

    user_message = "The model server failed to process the request."
