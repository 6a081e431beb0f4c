"""Recommendations API: ranked products for a customer."""
