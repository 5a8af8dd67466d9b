"""Integrator: the shared core every service builds on.

Settings, message envelope and ids, broker topology, confirmed publishing, the consume-and-ack
loop, schema loading and subscription matching each live in one module here, once.
"""
