"""Test doubles that satisfy the real contracts of distill's external services."""
