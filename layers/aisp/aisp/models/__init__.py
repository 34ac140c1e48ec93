"""Pydantic models: API request/response shapes (``api``) and domain models."""
