"""Benchmarks: each prints a Markdown table and never asserts a timing."""
