"""Trace-driven closed-loop simulation using the same decide() and predictors as the operator."""
