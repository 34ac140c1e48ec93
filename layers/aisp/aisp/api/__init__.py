"""Shared pieces of the HTTP functions: the error model, its exception handlers, the caller's identity and the
connected PSU's context."""

from aisp.api.auth import Caller, current_caller, current_user
from aisp.api.errors import PROBLEM_CONTENT_TYPE, not_implemented, problem_response, register_error_handlers
from aisp.api.psu import psu_from_event

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "Caller",
    "current_caller",
    "current_user",
    "not_implemented",
    "problem_response",
    "psu_from_event",
    "register_error_handlers",
]
