"""Shared pieces of the HTTP functions: the error model and its exception handlers."""

from aisp.api.errors import PROBLEM_CONTENT_TYPE, not_implemented, problem_response, register_error_handlers

__all__ = ["PROBLEM_CONTENT_TYPE", "not_implemented", "problem_response", "register_error_handlers"]
