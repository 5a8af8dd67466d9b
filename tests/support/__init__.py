"""Helpers the tests share: real service processes and a real broker, isolated per test by prefix."""
