"""Shared pieces of the HTTP functions: the error model, its exception handlers and the caller's identity."""

from aisp.api.auth import current_user
from aisp.api.errors import PROBLEM_CONTENT_TYPE, not_implemented, problem_response, register_error_handlers

__all__ = ["PROBLEM_CONTENT_TYPE", "current_user", "not_implemented", "problem_response", "register_error_handlers"]
