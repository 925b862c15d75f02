"""A KFP v2beta1 REST test server for exercising the real ``kfp.Client`` over HTTP on 127.0.0.1."""

from .common import RecordedRequest
from .faults import Fault, FaultInjector
from .fixture import running_kfp_server
from .runs import RunScript
from .server import AuthCheck, KfpTestServer, bearer_token, session_cookie
from .state import ServerState

__all__ = [
    "AuthCheck",
    "Fault",
    "FaultInjector",
    "KfpTestServer",
    "RecordedRequest",
    "RunScript",
    "ServerState",
    "bearer_token",
    "running_kfp_server",
    "session_cookie",
]
