"""Helpers shared by the tests and the benchmarks: images, stores, registries, containers, leak checks.

Nothing here is collected as a test. The kits import the packages under test and each other, never a test module.
"""
